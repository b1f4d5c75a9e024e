"""Tables of the run store (SQLAlchemy 2 typed declarative) and the plain records it returns.

The ORM classes never leave store/db.py: every query converts rows into the pydantic records
at the bottom of this file, so callers hold plain values and no session.

Keys. Proofs, verifications and meta-verifications are keyed by (run_id, id): the id is
chosen by the caller (usually the LLM call key), and scoping it by run means two runs can
never clash even when a caller reuses ids (say, a call key from another namespace).
Problems get an integer id, unique per (run_id, sha256 of the text).
llm_calls and call_failures keep the model layer's epoch-second timestamps (float), so a
CallRecord comes back exactly as it went in; the other tables use UTC datetimes.

    >>> sorted(Base.metadata.tables)[:3]
    ['call_failures', 'grades', 'llm_calls']
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (JSON, DateTime, Float, ForeignKey, ForeignKeyConstraint, Index, Integer,
                        String, Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The schema's version. Alembic revisions (store/migrations/) change the schema on both back ends;
# SQLite files also keep this number in PRAGMA user_version, so that a proofloop from before
# Alembic refuses a file a newer one changed: a revision that changes tables bumps it.
SCHEMA_VERSION = 6  # 4: work_items (Alembic revision 0004); 5: records by time (0005); 6: llm_calls.endpoint (0006)
LEGACY_VERSION = 3  # the last version made by MIGRATIONS below; Alembic's baseline (0003) equals it

# Store.run_usage sums these per (namespace, tag). With them all in one index SQLite answers
# from the index alone instead of walking every call row and its text: 217 -> 53 ms on a
# paper-size search (bench/serve/RESULTS.md), which the viewer's run page pays on every view.
USAGE_INDEX = "ix_llm_calls_usage"
USAGE_COLUMNS = ("namespace", "tag", "prompt_tokens", "completion_tokens", "cached_prompt_tokens", "latency_s",
                 "cost_usd")
# A run's records in the order they were stored: what a run's event stream (api/events.py) reads
# each time it looks for news. Without them each look sorts every record of the run: 60-80 ms
# on a paper-size search, four times a second per open stream (bench/serve/RESULTS.md).
TIME_INDEXES = {"proofs": "ix_proofs_time", "verifications": "ix_verifications_time",
                "meta_verifications": "ix_meta_verifications_time", "grades": "ix_grades_time"}

# Files from before Alembic (SQLite only): what turns a file of version v-1 into version v. They
# run before the Alembic baseline (store/migrate.py), which then creates the tables such a file
# lacks. SQLite's ALTER TABLE can only add columns, so these only ever add columns with defaults.
MIGRATIONS: dict[int, list[str]] = {
    2: [  # run leases; one failure row per request; rows whose text lives in their call
        "ALTER TABLE runs ADD COLUMN owner VARCHAR(200)",
        "ALTER TABLE runs ADD COLUMN expires_at FLOAT",
        "ALTER TABLE call_failures ADD COLUMN keys JSON",
        "ALTER TABLE call_failures ADD COLUMN n_keys INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE proofs ADD COLUMN from_call BOOLEAN NOT NULL DEFAULT 0",
        "ALTER TABLE verifications ADD COLUMN from_call BOOLEAN NOT NULL DEFAULT 0",
        "ALTER TABLE meta_verifications ADD COLUMN from_call BOOLEAN NOT NULL DEFAULT 0",
    ],
    3: [  # a covering index for a run's usage totals (see CallRow)
        f"CREATE INDEX IF NOT EXISTS {USAGE_INDEX} ON llm_calls ({', '.join(USAGE_COLUMNS)})",
    ],
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class RunStatus(str, Enum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


def Key(length: int) -> String:  # noqa: N802 - reads as a column type
    """A short string (ids, names, statuses). On PostgreSQL it compares byte by byte (collation
    "C"), as SQLite's strings do, so records come back in the same order on both back ends."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    # Timestamps are UTC; PostgreSQL keeps their zone (SQLite stores them naive either way).
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: DateTime(timezone=True)}


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(Key(40), primary_key=True)
    kind: Mapped[str] = mapped_column(Key(40))
    status: Mapped[str] = mapped_column(Key(20), default=RunStatus.RUNNING.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # all that resume needs
    summary: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    # The lease (v2): who runs it now and until when (epoch seconds); both None when nobody does.
    owner: Mapped[str | None] = mapped_column(Key(200))
    expires_at: Mapped[float | None] = mapped_column(Float)


class ProblemRow(Base):
    __tablename__ = "problems"
    __table_args__ = (UniqueConstraint("run_id", "text_sha"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    text_sha: Mapped[str] = mapped_column(Key(64))
    name: Mapped[str | None] = mapped_column(Key(200))  # the caller's id, e.g. "imo2025-p1"
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProofRow(Base):
    __tablename__ = "proofs"
    __table_args__ = (Index("ix_proofs_problem", "run_id", "problem_id"),
                      Index(TIME_INDEXES["proofs"], "run_id", "created_at"))

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(Key(200), primary_key=True)
    problem_id: Mapped[int] = mapped_column(ForeignKey("problems.id", ondelete="CASCADE"))
    raw: Mapped[str] = mapped_column(Text)
    reasoning: Mapped[str | None] = mapped_column(Text)
    solution: Mapped[str | None] = mapped_column(Text)
    self_evaluation: Mapped[str | None] = mapped_column(Text)
    self_score: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(Key(40))
    cause: Mapped[str | None] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(Key(40))
    round: Mapped[int | None]
    thread: Mapped[int | None]
    attempt: Mapped[int | None]
    # v2: True when the text fields live in the llm_calls row whose key is this id: raw is ""
    # and the parsed text fields are NULL here, re-derived from the call text on every query.
    from_call: Mapped[bool] = mapped_column(default=False, server_default="0")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LineageRow(Base):
    """proof_id was refined from parent_proof_id (a refinement prompt may hold several)."""

    __tablename__ = "proof_lineage"
    __table_args__ = (
        ForeignKeyConstraint(["run_id", "proof_id"], ["proofs.run_id", "proofs.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["run_id", "parent_proof_id"], ["proofs.run_id", "proofs.id"], ondelete="CASCADE"),
    )

    run_id: Mapped[str] = mapped_column(Key(40), primary_key=True)
    proof_id: Mapped[str] = mapped_column(Key(200), primary_key=True)
    parent_proof_id: Mapped[str] = mapped_column(Key(200), primary_key=True)


class RefinedFromRow(Base):
    """proof_id was refined from a prompt that showed the analysis verification_id."""

    __tablename__ = "proof_refined_from_analyses"
    __table_args__ = (
        ForeignKeyConstraint(["run_id", "proof_id"], ["proofs.run_id", "proofs.id"], ondelete="CASCADE"),
        ForeignKeyConstraint(["run_id", "verification_id"], ["verifications.run_id", "verifications.id"],
                             ondelete="CASCADE"),
    )

    run_id: Mapped[str] = mapped_column(Key(40), primary_key=True)
    proof_id: Mapped[str] = mapped_column(Key(200), primary_key=True)
    verification_id: Mapped[str] = mapped_column(Key(200), primary_key=True)


class VerificationRow(Base):
    __tablename__ = "verifications"
    __table_args__ = (
        ForeignKeyConstraint(["run_id", "proof_id"], ["proofs.run_id", "proofs.id"], ondelete="CASCADE"),
        Index("ix_verifications_proof", "run_id", "proof_id"),
        Index(TIME_INDEXES["verifications"], "run_id", "created_at"),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(Key(200), primary_key=True)
    proof_id: Mapped[str] = mapped_column(Key(200))
    raw: Mapped[str] = mapped_column(Text)
    reasoning: Mapped[str | None] = mapped_column(Text)
    analysis: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)  # None unless status is ok
    status: Mapped[str] = mapped_column(Key(40))
    cause: Mapped[str | None] = mapped_column(Text)
    issues: Mapped[list[str]] = mapped_column(default=list)
    # v2: True when the text fields live in the llm_calls row whose key is this id: raw is ""
    # and the parsed text fields are NULL here, re-derived from the call text on every query.
    from_call: Mapped[bool] = mapped_column(default=False, server_default="0")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetaVerificationRow(Base):
    __tablename__ = "meta_verifications"
    __table_args__ = (
        ForeignKeyConstraint(["run_id", "verification_id"], ["verifications.run_id", "verifications.id"],
                             ondelete="CASCADE"),
        Index("ix_meta_verifications_verification", "run_id", "verification_id"),
        Index(TIME_INDEXES["meta_verifications"], "run_id", "created_at"),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(Key(200), primary_key=True)
    verification_id: Mapped[str] = mapped_column(Key(200))
    raw: Mapped[str] = mapped_column(Text)
    reasoning: Mapped[str | None] = mapped_column(Text)
    analysis: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(Key(40))
    cause: Mapped[str | None] = mapped_column(Text)
    # v2: True when the text fields live in the llm_calls row whose key is this id: raw is ""
    # and the parsed text fields are NULL here, re-derived from the call text on every query.
    from_call: Mapped[bool] = mapped_column(default=False, server_default="0")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GradeRow(Base):
    """A grade a grader gave a proof: an automatic grader (the mean of n verifier analyses, or
    one reference-guided autograder sample) or an imported human grade. Added in the same v1
    schema: a new table is additive, create_all adds it to older files and older code ignores it."""

    __tablename__ = "grades"
    __table_args__ = (
        ForeignKeyConstraint(["run_id", "proof_id"], ["proofs.run_id", "proofs.id"], ondelete="CASCADE"),
        Index("ix_grades_proof", "run_id", "proof_id"),
        Index(TIME_INDEXES["grades"], "run_id", "created_at"),
    )

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(Key(200), primary_key=True)
    proof_id: Mapped[str] = mapped_column(Key(200))
    grader: Mapped[str] = mapped_column(Key(40))  # "verifier", "autograder", "human", ...
    raw: Mapped[str | None] = mapped_column(Text)  # the judge's text (or the imported value)
    grade: Mapped[float | None] = mapped_column(Float)  # on the grader's scale; None unless status ok
    max_grade: Mapped[float] = mapped_column(Float)  # top of that scale (1 for the verifier, 7 ...)
    normalised: Mapped[float | None] = mapped_column(Float)  # grade / max_grade, in [0, 1]
    status: Mapped[str] = mapped_column(Key(40))
    cause: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PromptRow(Base):
    """One distinct message list. 64 samples of one prompt share one row."""

    __tablename__ = "prompts"

    sha: Mapped[str] = mapped_column(Key(64), primary_key=True)
    messages: Mapped[list[dict[str, str]]] = mapped_column(JSON)


class CallRow(Base):
    """A successful LLM call (one sample). Run-agnostic: `namespace` says who first made it."""

    __tablename__ = "llm_calls"
    __table_args__ = (Index(USAGE_INDEX, *USAGE_COLUMNS),)

    key: Mapped[str] = mapped_column(Key(200), primary_key=True)
    namespace: Mapped[str] = mapped_column(Key(200), index=True)
    model: Mapped[str] = mapped_column(Key(200))
    provider: Mapped[str] = mapped_column(Key(40))
    sampling: Mapped[dict[str, Any]]
    prompt_sha: Mapped[str] = mapped_column(ForeignKey("prompts.sha"))
    sample_index: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    reasoning: Mapped[str | None] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(Key(40))
    # The sample's own token count (Completion.completion_tokens) can differ from the share of
    # the request's usage attributed to this record, so both are kept.
    sample_tokens: Mapped[int | None]
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cached_prompt_tokens: Mapped[int] = mapped_column(default=0)
    latency_s: Mapped[float | None] = mapped_column(Float)
    tag: Mapped[str | None] = mapped_column(Key(200))
    cost_usd: Mapped[float | None] = mapped_column(Float)  # None: price unknown, not free
    attempt: Mapped[int] = mapped_column(default=1)  # which attempt of its request succeeded
    request_size: Mapped[int] = mapped_column(default=1)  # samples its request asked for
    created_at: Mapped[float] = mapped_column(Float)  # epoch seconds
    # v6: the server (replica base URL) that answered; NULL for calls stored before v6.
    endpoint: Mapped[str | None] = mapped_column(Key(500))


class FailureRow(Base):
    """One failed attempt of one LLM request (append-only: each retry is its own row). A
    request for n samples fails all n keys at once: one row, `keys` lists them (v2; rows
    written by v1 have keys NULL and one row per key), `key` is the first of them."""

    __tablename__ = "call_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(Key(200), index=True)
    namespace: Mapped[str] = mapped_column(Key(200), index=True)
    model: Mapped[str | None] = mapped_column(Key(200))
    tag: Mapped[str | None] = mapped_column(Key(200))
    keys: Mapped[list[str] | None] = mapped_column(JSON)
    n_keys: Mapped[int] = mapped_column(default=1, server_default="1")
    attempt: Mapped[int]
    kind: Mapped[str] = mapped_column(Key(40))
    status: Mapped[int | None]
    message: Mapped[str] = mapped_column(Text)
    retryable: Mapped[bool | None]
    retry_after: Mapped[float | None] = mapped_column(Float)
    latency_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)  # epoch seconds


class WorkRow(Base):
    """One unit of a run's work (say, one problem of a benchmark) that worker processes claim
    (v4). A claim is a lease: `owner` holds it until `expires_at` (epoch seconds) unless it
    renews it; an expired claim can be taken by another worker. `done_by` is who finished it."""

    __tablename__ = "work_items"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    item: Mapped[str] = mapped_column(Key(200), primary_key=True)
    owner: Mapped[str | None] = mapped_column(Key(200))
    expires_at: Mapped[float | None] = mapped_column(Float)
    claims: Mapped[int] = mapped_column(default=0, server_default="0")  # how many times it was claimed
    done_by: Mapped[str | None] = mapped_column(Key(200))


# ---- plain records handed to callers --------------------------------------------------------


class Run(BaseModel):
    id: str
    kind: str
    status: RunStatus
    created_at: datetime
    updated_at: datetime
    config: dict[str, Any]
    summary: dict[str, Any] | None = None
    error: str | None = None
    # The lease: the owner running it now and until when. `status` is computed: a run stored
    # as running whose lease has expired (its process died without releasing) reads as
    # interrupted. Not part of `runs export`.
    owner: str | None = None
    lease_expires_at: datetime | None = None


class Problem(BaseModel):
    id: int
    run_id: str
    name: str | None
    text: str
    meta: dict[str, Any]


class Proof(BaseModel):
    id: str
    run_id: str
    problem_id: int
    raw: str
    reasoning: str | None
    solution: str | None
    self_evaluation: str | None
    self_score: float | None
    status: str
    cause: str | None
    finish_reason: str | None
    round: int | None
    thread: int | None
    attempt: int | None
    meta: dict[str, Any]
    created_at: datetime
    parents: list[str] = Field(default_factory=list)  # proofs this one was refined from
    refined_from_analyses: list[str] = Field(default_factory=list)  # verification ids shown


class Verification(BaseModel):
    id: str
    run_id: str
    proof_id: str
    raw: str
    reasoning: str | None
    analysis: str | None
    score: float | None
    status: str
    cause: str | None
    issues: list[str]
    meta: dict[str, Any]
    created_at: datetime


class MetaVerification(BaseModel):
    id: str
    run_id: str
    verification_id: str
    raw: str
    reasoning: str | None
    analysis: str | None
    rating: float | None
    status: str
    cause: str | None
    meta: dict[str, Any]
    created_at: datetime


class Grade(BaseModel):
    id: str
    run_id: str
    proof_id: str
    grader: str
    raw: str | None
    grade: float | None
    max_grade: float
    normalised: float | None
    status: str
    cause: str | None
    meta: dict[str, Any]
    created_at: datetime


class Failure(BaseModel):
    """One failed request attempt; `keys` are the samples it asked for, `key` the first."""

    id: int
    key: str
    keys: list[str] = Field(default_factory=list)
    n_keys: int = 1
    namespace: str
    model: str | None
    tag: str | None
    attempt: int
    kind: str
    status: int | None
    message: str
    retryable: bool | None
    retry_after: float | None
    latency_s: float | None
    created_at: datetime


class WorkItem(BaseModel):
    """One work item of a split run (WorkRow): who holds it until when (epoch seconds; the
    claim is live while expires_at is in the future), how many holders claimed it, who did it."""

    item: str
    owner: str | None
    expires_at: float | None
    claims: int
    done_by: str | None


class UsageTotals(BaseModel):
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    latency_s: float = 0.0  # summed over calls (not wall time: calls overlap)
    cost_usd: float = 0.0  # over the calls with a known price
    unpriced_calls: int = 0  # calls whose price is unknown (their cost is not in cost_usd)
    failures: int = 0  # failed request attempts (v1 files: one per failed sample)


class RunUsage(UsageTotals):
    """Totals over calls and failures whose namespace is the run id, and the same per tag."""

    by_tag: dict[str, UsageTotals] = Field(default_factory=dict)

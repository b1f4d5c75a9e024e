"""What every search strategy shares: the context it runs in, where it records what it makes,
and the result it returns for one problem.

A strategy is anything with a `name` and `async solve(problem, ctx) -> ProblemResult`.
Strategies never touch the store directly: they hand every record to `ctx.recorder` as soon
as it exists (the CLI passes a recorder that writes to the run store; tests may pass
`MemoryRecorder`). Replaying a strategy over the call cache re-records the same ids, and the
store makes that a no-op, which is how `resume` works.

Memory: a long search holds thousands of analyses. When the context has `analysis_texts`
(a lookup of recorded analysis texts: the runner reads them from the run store), a pool-style
search keeps only what it decides on (ids, scores, statuses, issues) once a record is
recorded, and reads the texts back when a refinement prompt shows them; without it, records
stay whole in memory (library use, MemoryRecorder).

Evidence: when the context has `evidence` (a domain pack's executable evidence, such as the
code pack's test run: the runner builds it), the verifier and meta-verifier of each proof see
the problem as `ctx.verifier_problem(problem, proof)` returns it, the evidence appended;
without it (mathematics) they see the problem as it is, the same prompt byte for byte.

    >>> texts = MemoryRecorder().analysis_texts   # what a runner provides, here from memory
    >>> texts("p1", ["a1"])
    {}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from collections.abc import Callable
from typing import Any, Protocol

from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.protocol import Templates
from proofloop.protocol.types import ParseStatus
from proofloop.roles.records import AnalysisRecord, MetaRecord, ProblemView, ProofRecord, Verification


class StopReason(str, Enum):
    """Why a strategy stopped on a problem (ProblemResult.stop_reason holds the value).

    accepted            a proof passed every verification (pool, adaptive, release), or a
                        sequential thread's proof graded itself 1
    round_limit         every refinement round ran and no proof passed
    attempts_exhausted  sequential: every thread used all its attempts, none self-graded 1
    completed           single: the k proofs were made (it has no stopping rule)
    nothing_scored      calls came back but no usable proof got a score (proofs truncated or
                        unparsable, or every analysis unparsable / truncated)
    all_calls_failed    every generation call failed, or every verification call did
    budget_tokens       a token budget (the problem's or the run's) ran out
    budget_cost         a cost budget ran out (or cannot be kept: unknown price)
    budget_wall         a wall-time budget ran out
    """

    ACCEPTED = "accepted"
    ROUND_LIMIT = "round_limit"
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    COMPLETED = "completed"
    NOTHING_SCORED = "nothing_scored"
    ALL_CALLS_FAILED = "all_calls_failed"
    BUDGET_TOKENS = "budget_tokens"
    BUDGET_COST = "budget_cost"
    BUDGET_WALL = "budget_wall"


def usable(proof: ProofRecord, keep_truncated: bool = False) -> bool:
    """May the search use this proof (verify it, refine from it, choose it)? It needs a
    solution, and one cut at the token limit is not used unless `keep_truncated` (the
    released script drops such proofs; their half-written argument is not a proof)."""
    return proof.verifiable and (keep_truncated or proof.status is not ParseStatus.TRUNCATED)


def all_failed(records) -> bool:
    """True when there is at least one record and every one is a failed call."""
    records = list(records)
    return bool(records) and all(r.status is ParseStatus.CALL_ERROR for r in records)


# (proof id, analysis ids of that proof) -> {analysis id: its text as a refinement prompt shows
# it (the analysis, else the raw output)}; an id whose record has no text may be left out.
AnalysisTexts = Callable[[str, list[str]], dict[str, str]]


def shown_text(record: AnalysisRecord) -> str:
    """What a prompt shows of an analysis: its parsed analysis, else its raw output."""
    return record.analysis or record.raw or ""


def slim(record: Any) -> Any:
    """A record without its texts (raw output, reasoning, parsed analysis), for a search's
    working state once the record is recorded. A proof keeps its solution and self evaluation
    (verification and refinement prompts show the solution; the result shows both)."""
    drop = {"raw": None, "reasoning": None}
    if isinstance(record, (AnalysisRecord, MetaRecord)):
        drop["analysis"] = None
    return record.model_copy(update=drop)


class Recorder(Protocol):
    def proof(self, problem: str, record: ProofRecord, **where: Any) -> None: ...
    def analysis(self, problem: str, record: AnalysisRecord) -> None: ...
    def meta(self, problem: str, record: MetaRecord) -> None: ...


@dataclass
class MemoryRecorder:
    """Keeps records in lists: for tests and library use without a store."""

    proofs: list[tuple[ProofRecord, dict]] = field(default_factory=list)
    analyses: list[AnalysisRecord] = field(default_factory=list)
    metas: list[MetaRecord] = field(default_factory=list)

    def proof(self, problem, record, **where):
        self.proofs.append((record, where))

    def analysis(self, problem, record):
        self.analyses.append(record)

    def meta(self, problem, record):
        self.metas.append(record)

    def analysis_texts(self, proof_id: str, ids: list[str]) -> dict[str, str]:
        """An AnalysisTexts lookup over the analyses recorded here."""
        wanted = set(ids)
        return {a.id: shown_text(a) for a in self.analyses if a.id in wanted and shown_text(a).strip()}


@dataclass
class SearchContext:
    """Models, sampling per role, templates and the recorder a strategy runs with."""

    generator: Model
    verifier: Model | None = None  # defaults to the generator (one model plays every role)
    gen_sampling: Sampling = field(default_factory=lambda: Sampling(max_tokens=8192))
    verify_sampling: Sampling = field(default_factory=lambda: Sampling(max_tokens=8192))
    meta_sampling: Sampling = field(default_factory=lambda: Sampling(max_tokens=8192))
    templates: Templates | None = None
    recorder: Recorder = field(default_factory=MemoryRecorder)
    seed: int = 0
    budget: Any = None  # a search.budget.Budget shared by every problem of a run (None: no run budget)
    # Where recorded analysis texts can be read back (see the module docstring). Given, a
    # search drops texts from its working state once recorded; None: it keeps whole records.
    analysis_texts: AnalysisTexts | None = None
    evidence: ProblemView | None = None  # None: every verifier sees the problem as it is

    def __post_init__(self):
        if self.verifier is None:
            self.verifier = self.generator

    async def verifier_problem(self, problem: str, proof: ProofRecord) -> str:
        """The problem as the verifier (and meta-verifier) of `proof` sees it."""
        return problem if self.evidence is None else await self.evidence(problem, proof)


@dataclass
class ProblemResult:
    """The outcome of a search on one problem: the chosen proof and the evidence behind it."""

    problem: str
    strategy: str
    best: ProofRecord | None
    score: float | None             # the score the choice was made on
    score_kind: str                 # "self" (self evaluation) or "verification" (mean verifier score)
    # Out of the repr: asyncio formats a finished task's result, and a repr with every record's
    # text made a string of hundreds of MB at the end of a paper-sized search.
    proofs: list[ProofRecord] = field(default_factory=list, repr=False)
    verifications: dict[str, Verification] = field(default_factory=dict, repr=False)
    stop_reason: str = StopReason.COMPLETED.value  # a StopReason value
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    stop_detail: str | None = None  # e.g. which budget ran out and how much was spent

    def summary(self) -> dict[str, Any]:
        best = self.best
        v = self.verifications.get(best.id) if best else None
        return {
            "strategy": self.strategy,
            "best_proof_id": best.id if best else None,
            "score": self.score,
            "score_kind": self.score_kind,
            "self_score": best.self_score if best else None,
            "best_status": best.status.value if best else None,
            "best_cause": best.cause if best else None,
            "verification_scores": [a.score for a in v.analyses] if v else None,
            "issues": v.issues if v else [],
            "parents": best.parents if best else [],
            "analyses_used": best.analyses_used if best else [],
            "proofs": len(self.proofs),
            "failed_proofs": sum(1 for p in self.proofs if not p.verifiable),
            "truncated_proofs": sum(1 for p in self.proofs if p.status is ParseStatus.TRUNCATED),
            "stop_reason": self.stop_reason,
            "stop_detail": self.stop_detail,
            **self.meta,
        }


def best_by_self_score(proofs: list[ProofRecord], keep_truncated: bool = False) -> ProofRecord | None:
    """The usable proof with the highest self score; the earliest wins a tie; unscored proofs last."""
    kept = [p for p in proofs if usable(p, keep_truncated)]
    if not kept:
        return None
    return max(enumerate(kept), key=lambda ip: (ip[1].self_score if ip[1].self_score is not None else -1.0,
                                                -ip[0]))[1]

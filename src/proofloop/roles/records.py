"""Typed records the roles return. Each keeps the raw model text next to what was parsed
from it, and the id of the LLM call that produced it (the call-cache key), so a record can be
traced to its request and re-derived on resume. What every record of a call has (id, status,
cause, raw text, reasoning, finish reason, tokens, the sample's usage) lives on `RoleRecord`.

    >>> a = AnalysisRecord(id="k1", proof_id="p", status="ok", score=1.0)
    >>> b = AnalysisRecord(id="k2", proof_id="p", status="call_error", cause="timeout: ...")
    >>> Verification(proof_id="p", analyses=[a, b]).mean_score   # failures are left out, not zeros
    1.0
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel, Field

from proofloop.models.base import Usage
from proofloop.protocol.types import ParseStatus


class RoleRecord(BaseModel):
    """What every record of one model sample has. `id` is the call key of its sample (or a
    text id for text the user gave); a failed call has status CALL_ERROR, its `cause`, and no
    text. `usage` is the sample's share of its request (models.wrapper.Sample.usage; None for
    a record not made by a call)."""

    id: str
    status: ParseStatus
    cause: str | None = None
    raw: str | None = None
    reasoning: str | None = None
    finish_reason: str | None = None
    completion_tokens: int | None = None
    usage: Usage | None = None

    @property
    def ok(self) -> bool:
        return self.status is ParseStatus.OK


class ProofRecord(RoleRecord):
    """A generator (or refinement) output: proof plus self evaluation."""

    problem: str
    solution: str | None = None
    self_evaluation: str | None = None
    self_score: float | None = None
    parents: list[str] = Field(default_factory=list)        # proofs this one was refined from
    analyses_used: list[str] = Field(default_factory=list)  # analyses shown to the refiner

    @property
    def verifiable(self) -> bool:
        """A proof can be verified when it has a solution, even if its self score is unparsable."""
        return bool(self.solution and self.solution.strip())


class AnalysisRecord(RoleRecord):
    """One verifier analysis of one proof."""

    proof_id: str
    analysis: str | None = None
    score: float | None = None
    issues: list[str] = Field(default_factory=list)


class Verification(BaseModel):
    """n analyses of one proof. The mean covers only analyses with a valid score."""

    proof_id: str
    analyses: list[AnalysisRecord]

    @property
    def valid(self) -> list[AnalysisRecord]:
        return [a for a in self.analyses if a.ok]

    @property
    def mean_score(self) -> float | None:
        scores = [a.score for a in self.valid]
        return sum(scores) / len(scores) if scores else None

    @property
    def issues(self) -> list[str]:
        seen: dict[str, None] = {}
        for a in self.valid:
            for issue in a.issues:
                seen.setdefault(issue)
        return list(seen)


class MetaRecord(RoleRecord):
    """One meta-verifier rating of one analysis (1: its claimed issues are real)."""

    analysis_id: str
    analysis: str | None = None
    rating: float | None = None


# (problem, proof) -> the problem as that proof's verifier and meta-verifier see it: a domain
# pack's executable evidence appended (runs/evidence.py builds one per run of such a pack;
# searches and labelling take it; None there: the problem as it is).
ProblemView = Callable[[str, ProofRecord], Awaitable[str]]

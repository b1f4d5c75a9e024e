"""Typed records the roles return. Each keeps the raw model text next to what was parsed
from it, and the id of the LLM call that produced it (the call-cache key), so a record can be
traced to its request and re-derived on resume.

    >>> a = AnalysisRecord(id="k1", proof_id="p", status="ok", score=1.0)
    >>> b = AnalysisRecord(id="k2", proof_id="p", status="call_error", cause="timeout: ...")
    >>> Verification(proof_id="p", analyses=[a, b]).mean_score   # failures are left out, not zeros
    1.0
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from proofloop.protocol.types import ParseStatus


class ProofRecord(BaseModel):
    """A generator (or refinement) output: proof plus self evaluation."""

    id: str
    problem: str
    status: ParseStatus
    cause: str | None = None
    raw: str | None = None
    reasoning: str | None = None
    solution: str | None = None
    self_evaluation: str | None = None
    self_score: float | None = None
    finish_reason: str | None = None
    parents: list[str] = Field(default_factory=list)        # proofs this one was refined from
    analyses_used: list[str] = Field(default_factory=list)  # analyses shown to the refiner
    completion_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is ParseStatus.OK

    @property
    def verifiable(self) -> bool:
        """A proof can be verified when it has a solution, even if its self score is unparsable."""
        return bool(self.solution and self.solution.strip())


class AnalysisRecord(BaseModel):
    """One verifier analysis of one proof."""

    id: str
    proof_id: str
    status: ParseStatus
    cause: str | None = None
    raw: str | None = None
    reasoning: str | None = None
    analysis: str | None = None
    score: float | None = None
    issues: list[str] = Field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is ParseStatus.OK


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


class MetaRecord(BaseModel):
    """One meta-verifier rating of one analysis (1: its claimed issues are real)."""

    id: str
    analysis_id: str
    status: ParseStatus
    cause: str | None = None
    raw: str | None = None
    reasoning: str | None = None
    analysis: str | None = None
    rating: float | None = None
    finish_reason: str | None = None
    completion_tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.status is ParseStatus.OK

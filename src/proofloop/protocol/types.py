"""Typed results of parsing model output. Pure: no I/O.

Every parse yields a status. Only `ParseStatus.OK` carries a score; every other status says
why there is none, so a failure is never mistaken for a score of 0.

    >>> ParsedScore(status=ParseStatus.NO_BOXED_SCORE, cause="no \\\\boxed{} after the phrase").ok
    False
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel

SCORES = (0.0, 0.5, 1.0)  # the rubric's three scores, shared by all three roles
Message = dict[str, str]  # one chat message: {"role": "system"|"user"|"assistant", "content": "..."}


class ParseStatus(str, Enum):
    OK = "ok"
    EMPTY = "empty"                      # no text at all after the reasoning
    TRUNCATED = "truncated"              # finish_reason == "length": the answer was cut off
    NO_SOLUTION = "no_solution"          # generator output without a solution section
    NO_SELF_EVALUATION = "no_self_evaluation"  # generator output without a self evaluation
    NO_FINAL_PHRASE = "no_final_phrase"  # the final-score phrase is missing
    NO_BOXED_SCORE = "no_boxed_score"    # the phrase is there, no \boxed{} after it
    INVALID_SCORE = "invalid_score"      # a boxed value not in {0, 0.5, 1}
    CALL_ERROR = "call_error"            # the model call itself failed (cause = the error)


class ParsedScore(BaseModel):
    """A score read from the `\\boxed{}` that follows a final-score phrase."""

    status: ParseStatus
    score: float | None = None
    cause: str | None = None
    raw_value: str | None = None  # the text inside \boxed{}, when one was found

    @property
    def ok(self) -> bool:
        return self.status is ParseStatus.OK


class SplitReasoning(BaseModel):
    """Reasoning separated from the final answer."""

    reasoning: str | None
    answer: str


class ParsedProof(BaseModel):
    """A generator output: solution, self evaluation and self score."""

    status: ParseStatus
    cause: str | None = None
    reasoning: str | None = None
    solution: str | None = None
    self_evaluation: str | None = None
    self_score: float | None = None


class ParsedAnalysis(BaseModel):
    """A verifier output (analysis of a proof) or a meta-verifier output (analysis of an
    analysis): the text, the score/rating and the issues it names."""

    status: ParseStatus
    cause: str | None = None
    reasoning: str | None = None
    analysis: str | None = None
    score: float | None = None
    issues: list[str] = []

"""Request bodies of the /v1 API (pydantic: their limits are in the OpenAPI schema, and a body
that breaks one is a 422 naming the field). Unknown fields are refused, not ignored.

    >>> ProveRequest(problem="Show that 2 + 2 = 4.").strategy
    'sequential'
    >>> VerifyRequest(pairs=[{"problem": "P", "proof": "Q"}], n=2).pairs[0].proof
    'Q'
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TEXT = 200_000  # characters in one problem, proof or reference solution
MAX_PAIRS = 1000  # (problem, proof) pairs in one call
Text = Field(min_length=1, max_length=MAX_TEXT, pattern=r"\S")  # not blank


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingIn(Strict):
    """Per-run sampling; unset fields keep the server's (its --temperature, --max-tokens, ...)."""

    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=1_048_576, description="max tokens per proof")
    verify_max_tokens: int | None = Field(None, ge=1, le=1_048_576, description="per (meta-)verification")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)


class Budgets(Strict):
    """What the whole run may spend; it stops (keeping all it found) once one is spent."""

    tokens: int | None = Field(None, ge=1, le=10**12)
    cost_usd: float | None = Field(None, gt=0.0, le=10**6)
    wall_s: float | None = Field(None, gt=0.0, le=10**7)


class ProveRequest(Strict):
    problem: str = Text
    strategy: Literal["single", "sequential", "pool", "adaptive", "tree"] = "sequential"
    options: dict[str, Any] = Field(default_factory=dict, max_length=64,
                                    description="strategy options, as `proofloop prove -o key=value`")
    budgets: Budgets | None = None
    sampling: SamplingIn | None = None


class Pair(Strict):
    problem: str = Text
    proof: str = Text
    id: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[\w.:-]+$",
                           description="your name for the pair (default pair-<index>)")
    reference_solution: str | None = Field(None, min_length=1, max_length=MAX_TEXT,
                                           description="needed by the autograder")
    guidelines: str | None = Field(None, max_length=MAX_TEXT)


class VerifyRequest(Strict):
    pairs: list[Pair] = Field(min_length=1, max_length=MAX_PAIRS)
    n: int = Field(4, ge=1, le=64, description="verifier analyses per proof")
    sampling: SamplingIn | None = None
    wait: bool | None = Field(None, description="answer with the results (true) or at once with the run (false); "
                                                "default: wait for small batches only")


class GradeRequest(VerifyRequest):
    grader: Literal["verifier", "autograder"] = "verifier"

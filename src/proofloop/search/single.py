"""`single`: k independent proofs, the one with the highest self score wins (Best@k).

Proofs cut at the token limit are recorded but never chosen (`keep_truncated=True` keeps them).
"""

from __future__ import annotations

from dataclasses import dataclass

from proofloop.roles import generate
from proofloop.search.base import ProblemResult, SearchContext, StopReason, all_failed, best_by_self_score


def self_scored_stop(proofs, best, done: StopReason) -> StopReason:
    """The stop reason of a strategy that chooses by self score: `done` when it chose a
    self-scored proof, else why it could not."""
    if all_failed(proofs):
        return StopReason.ALL_CALLS_FAILED
    if best is None or best.self_score is None:
        return StopReason.NOTHING_SCORED
    return done


@dataclass
class Single:
    k: int = 4
    keep_truncated: bool = False
    name: str = "single"

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")

    async def solve(self, problem: str, ctx: SearchContext) -> ProblemResult:
        proofs = await generate(ctx.generator, problem, sampling=ctx.gen_sampling, n=self.k,
                                templates=ctx.templates)
        for i, p in enumerate(proofs):
            ctx.recorder.proof(problem, p, thread=i, attempt=0, round=0)
        best = best_by_self_score(proofs, self.keep_truncated)
        stop = self_scored_stop(proofs, best, StopReason.COMPLETED)
        return ProblemResult(problem, self.name, best, best.self_score if best else None, "self", proofs,
                             stop_reason=stop.value)

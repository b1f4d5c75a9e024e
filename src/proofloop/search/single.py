"""`single`: k independent proofs, the one with the highest self score wins (Best@k)."""

from __future__ import annotations

from dataclasses import dataclass

from proofloop.roles import generate
from proofloop.search.base import ProblemResult, SearchContext, best_by_self_score


@dataclass
class Single:
    k: int = 4
    name: str = "single"

    async def solve(self, problem: str, ctx: SearchContext) -> ProblemResult:
        proofs = await generate(ctx.generator, problem, sampling=ctx.gen_sampling, n=self.k,
                                templates=ctx.templates)
        for i, p in enumerate(proofs):
            ctx.recorder.proof(problem, p, thread=i, attempt=0, round=0)
        best = best_by_self_score(proofs)
        return ProblemResult(problem, self.name, best, best.self_score if best else None, "self", proofs)

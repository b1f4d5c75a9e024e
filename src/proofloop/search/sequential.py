"""`sequential`: the paper's sequential refinement with self verification (§3.3.2).

Each of `threads` threads generates a proof with its self evaluation; while the self score is
below 1 and fewer than `attempts` proofs were made, it re-prompts with its latest proof and
the self evaluation's findings to get a better one. Threads run concurrently (the model
wrapper caps concurrency). Best@k: the thread's final proof with the highest self score.

Sample indices: attempt a of thread t uses index t + a * threads, so every (thread, attempt)
is a distinct call-cache key even when two threads send the same prompt; a resumed run
therefore finds each finished call again and repeats none of them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from proofloop.protocol.types import ParseStatus
from proofloop.roles import AnalysisRecord, ProofRecord, generate, refine
from proofloop.search.base import ProblemResult, SearchContext, best_by_self_score


@dataclass
class Sequential:
    attempts: int = 8
    threads: int = 4
    name: str = "sequential"

    async def _thread(self, problem: str, ctx: SearchContext, t: int) -> list[ProofRecord]:
        history: list[ProofRecord] = []
        latest: ProofRecord | None = None  # the latest proof that has a solution to improve on
        for attempt in range(self.attempts):
            index = t + attempt * self.threads
            if latest is None:
                record = (await generate(ctx.generator, problem, sampling=ctx.gen_sampling,
                                         start=index, templates=ctx.templates))[0]
            else:
                # The self evaluation plays the verifier analysis: it names the issues to fix.
                # A proof without one (the model skipped it) is refined from the proof alone.
                reviews = [AnalysisRecord(id=latest.id, proof_id=latest.id, status=ParseStatus.OK,
                                          analysis=latest.self_evaluation)] if (latest.self_evaluation or "").strip() else []
                record = (await refine(ctx.generator, problem, [(latest, reviews)],
                                       sampling=ctx.gen_sampling, start=index, templates=ctx.templates))[0]
                record.analyses_used = []  # the self evaluation is part of the parent, not an analysis
            ctx.recorder.proof(problem, record, thread=t, attempt=attempt, round=attempt)
            history.append(record)
            if record.verifiable:
                latest = record
            if record.ok and record.self_score == 1.0:
                break
        return history

    async def solve(self, problem: str, ctx: SearchContext) -> ProblemResult:
        histories = await asyncio.gather(*(self._thread(problem, ctx, t) for t in range(self.threads)))
        finals = [next((p for p in reversed(h) if p.verifiable), None) for h in histories]
        best = best_by_self_score([p for p in finals if p is not None])
        proofs = [p for h in histories for p in h]
        return ProblemResult(problem, self.name, best, best.self_score if best else None, "self", proofs,
                             meta={"attempts_per_thread": [len(h) for h in histories]})

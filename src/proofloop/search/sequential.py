"""`sequential`: the paper's sequential refinement with self verification (§3.3.2).

Each of `threads` threads generates a proof with its self evaluation; while the self score is
below 1 and fewer than `attempts` proofs were made, it re-prompts with its latest proof and
the self evaluation's findings to get a better one. Threads run concurrently (the model
wrapper caps concurrency). Best@k: the thread's final proof with the highest self score.

A truncated attempt (output cut at the token limit) is recorded and counts as an attempt, but
it is treated like a failed call: its self evaluation is cut short, so there is nothing
reliable to refine from. The next attempt refines the thread's last usable proof again (or
generates afresh when there is none), and a truncated proof is never a thread's final proof.
`keep_truncated=True` restores the old behaviour (a truncated proof with a solution is
refined from and may be chosen).

Sample indices: attempt a of thread t uses index t + a * threads, so every (thread, attempt)
is a distinct call-cache key even when two threads send the same prompt; a resumed run
therefore finds each finished call again and repeats none of them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from proofloop.protocol.types import ParseStatus
from proofloop.roles import AnalysisRecord, ProofRecord, generate, refine
from proofloop.search.base import ProblemResult, SearchContext, StopReason, best_by_self_score, usable
from proofloop.search.single import self_scored_stop


@dataclass
class Sequential:
    attempts: int = 8
    threads: int = 4
    keep_truncated: bool = False
    name: str = "sequential"

    def __post_init__(self):
        if self.attempts < 1 or self.threads < 1:
            raise ValueError(f"attempts and threads must be at least 1, got {self.attempts} and {self.threads}")

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
            if usable(record, self.keep_truncated):
                latest = record
            if record.ok and record.self_score == 1.0:
                break
        return history

    async def solve(self, problem: str, ctx: SearchContext) -> ProblemResult:
        histories = await asyncio.gather(*(self._thread(problem, ctx, t) for t in range(self.threads)))
        finals = [next((p for p in reversed(h) if usable(p, self.keep_truncated)), None) for h in histories]
        best = best_by_self_score([p for p in finals if p is not None], self.keep_truncated)
        proofs = [p for h in histories for p in h]
        done = StopReason.ACCEPTED if best is not None and best.ok and best.self_score == 1.0 \
            else StopReason.ATTEMPTS_EXHAUSTED
        return ProblemResult(problem, self.name, best, best.self_score if best else None, "self", proofs,
                             stop_reason=self_scored_stop(proofs, best, done).value,
                             meta={"attempts_per_thread": [len(h) for h in histories]})

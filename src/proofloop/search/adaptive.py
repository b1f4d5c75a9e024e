"""`adaptive`: the pool search with verification spent only where it decides something.

Same proofs, prompts, selection and stopping rules as `pool` (decisions.py), but a proof is
verified in stages (by default 4, then 16, 32, 64 analyses; the sample indices are pool's, so
the first 4 analyses of a proof are exactly pool's first 4) and goes on to the next stage only
while that can change a decision:

1. Acceptance ("stop when a proof passes every verification"). After a round, the proofs of
   that round whose analyses so far all say 1 are the only ones that may still pass. Pool
   accepts, among the passing proofs of the earliest round, the best by (self score, slot)
   (all have mean 1). Adaptive walks those candidates in exactly that order and verifies the
   first `window` unresolved ones a stage further; a candidate is resolved by its first score
   below 1 (it can never pass) or by reaching all `verifications`. The first candidate in the
   order that passes, with every candidate before it resolved as failing, is the proof pool
   would accept from the same outputs: exact, no statistics. The candidates after it are
   never verified further.
2. Top-K membership (the next round's parents). For each proof, bounds [lo, hi] on the mean
   it would have after all `verifications`: exact hard bounds (the missing analyses all 0 or
   all 1) intersected with a normal interval of `z` standard errors, the standard error
   taken from a Laplace-smoothed Bernoulli variance (p(1-p) is the largest variance a score
   in [0, 1] with mean p can have, so it is conservative for {0, 0.5, 1} scores) with the
   finite-population factor sqrt((n-j)/(n j)) that goes to 0 as j -> n. A proof is *in* when
   fewer than K other proofs could beat it (hi_other >= its lo), *out* when at least K proofs
   certainly beat it (their lo > its hi). Out proofs stop (their bound only rises as the
   pool grows: the K-th best mean never falls when proofs are added); ambiguous proofs go a
   stage further until they are in, out, or their interval is narrower than `tolerance`
   (then the point estimate decides: a difference that small is within verifier noise);
   proofs that are in get at least `refine_min` analyses so their refinement prompt has
   analyses to choose from. The next round starts the moment this set is settled.
3. The final choice (no proof accepted): the same rule with K = 1.

At most K proofs can be *in* (the one with the lowest lo among K+1 of them would have K
others above it), so the selection is well defined. Every escalation decision is a function
of the outputs seen so far, in a fixed order of steps, so adaptive is as replayable and
resumable as pool. What it gives up: the top-K and final choice agree with pool's only with
high probability (interval misses), and a parent's refinement prompt draws its analyses from
fewer samples.

    >>> full_mean_bounds((1.0, 1.0, 1.0, 1.0), done=4, n=64, z=2.5)[1]
    1.0
    >>> full_mean_bounds((0.0,) * 64, done=64, n=64, z=2.5)
    (0.0, 0.0)
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from proofloop.search.decisions import Candidate, passes, rank_key
from proofloop.search.base import StopReason
from proofloop.search.pool import Pool, round_end
from proofloop.search.scheduler import ProblemSearch


# ---- pure decisions -----------------------------------------------------------------------


def stage_plan(stages: Sequence[int], n: int) -> list[int]:
    """Cumulative analysis counts per stage, increasing, capped at n and ending at n."""
    out = sorted({min(int(s), n) for s in stages if int(s) > 0} | {n})
    return out


def next_stage(plan: Sequence[int], done: int, at_least: int = 0) -> int:
    """The first stage above `done` (and at least `at_least`, when a stage reaches it)."""
    for s in plan:
        if s > done and s >= min(at_least, plan[-1]):
            return s
    return plan[-1]


def full_mean_bounds(scores: Sequence[float], done: int, n: int, z: float) -> tuple[float, float]:
    """Bounds on the mean over all n verifications, from the scores of the `done` so far
    (done - len(scores) failed or were rejected; they will not count in the mean either)."""
    j = len(scores)
    if j == 0:
        return (0.0, 1.0)
    total = max(n - (done - j), j)  # scored analyses once all n are in
    s = sum(scores)
    m = s / j
    if j >= total:
        return (m, m)
    p = (s + 1) / (j + 2)
    w = z * math.sqrt(p * (1 - p)) * math.sqrt((total - j) / (total * j))
    return (max(s / total, m - w), min((s + total - j) / total, m + w))


@dataclass(frozen=True)
class View:
    """A proof as adaptive sees it: the pool's Candidate plus how many verifications are done."""

    cand: Candidate
    done: int

    def could_pass(self, n: int, min_valid: int) -> bool:
        """Not yet resolved: every score so far is 1, and enough verifications are left to
        reach `min_valid` scored ones."""
        c = self.cand
        return (not c.complete and all(s == 1.0 for s in c.scores)
                and len(c.scores) + (n - self.done) >= min_valid)


def acceptance_step(views: Sequence[View], n: int, min_valid: int,
                    window: int) -> tuple[Candidate | None, list[str]]:
    """One step of settling acceptance among one round's proofs: (the accepted proof, or None
    and the proofs to verify a stage further). Both empty: no proof of the round can pass."""
    live = [v for v in views if passes(v.cand, min_valid) or v.could_pass(n, min_valid)]
    live.sort(key=lambda v: (-(v.cand.self_score if v.cand.self_score is not None else -1.0), v.cand.slot))
    if live and passes(live[0].cand, min_valid):
        return live[0].cand, []
    return None, [v.cand.id for v in live if v.could_pass(n, min_valid)][:window]


@dataclass
class TopK:
    selected: list[Candidate] | None  # None while escalations are pending
    escalate: dict[str, int] = field(default_factory=dict)  # proof id -> verifications wanted


def topk_step(views: Sequence[View], k: int, *, n: int, plan: Sequence[int], z: float, tolerance: float,
              refine_min: int = 0) -> TopK:
    """One step of settling the top-K set (see the module docstring for the rule)."""
    live = [v for v in views if v.cand.scores or not v.cand.complete]
    bounds = {v.cand.id: full_mean_bounds(v.cand.scores, v.done, n, z) for v in live}
    his = sorted(hi for _, hi in bounds.values())
    los = sorted(lo for lo, _ in bounds.values())
    ins, ambiguous, escalate = [], [], {}
    for v in live:
        lo, hi = bounds[v.cand.id]
        could_beat = len(his) - bisect.bisect_left(his, lo) - 1  # others with hi >= my lo
        sure_above = len(los) - bisect.bisect_right(los, hi)  # proofs with lo > my hi
        if could_beat < k:
            ins.append(v)
            if v.done < refine_min and not v.cand.complete:
                escalate[v.cand.id] = next_stage(plan, v.done, refine_min)
        elif sure_above >= k:
            continue
        else:
            ambiguous.append(v)
            if not v.cand.complete and hi - lo > tolerance:
                escalate[v.cand.id] = next_stage(plan, v.done)
    if escalate:
        return TopK(None, escalate)
    rest = sorted((v.cand for v in ambiguous if v.cand.scores), key=rank_key)
    chosen = sorted((v.cand for v in ins if v.cand.scores), key=rank_key)
    return TopK(sorted(chosen + rest[:max(0, k - len(chosen))], key=rank_key))


# ---- the strategy -------------------------------------------------------------------------


@dataclass
class Adaptive(Pool):
    """Pool's options plus: `stages` (cumulative analyses per stage), `z` (interval width in
    standard errors), `tolerance` (an ambiguous proof whose interval is narrower stops),
    `refine_min` (analyses a parent gets at least), `window` (acceptance candidates verified
    at once; None: max(1, min(top_k, initial) // 8)), and pool's `priority`.

    The window buys latency (several candidates settle at once) and costs tokens: a
    candidate verified to the end after an earlier one already passed is waste, up to
    (window - 1) full verifications per round. The default keeps that below 1/8 of what
    pool spends verifying one round (min(top_k, initial) <= the proofs of a round), so small
    pools settle one candidate at a time (8 proofs, top 2: window 1; the paper's 64: 8).

    The defaults suit small pools (8 proofs, top 2). For the paper's pool (64 proofs, top 64
    of a pool that grows to 1,088) `-o stages=4,8,16,32,64 -o refine_min=8 -o tolerance=0.35`
    spends about 0.27 x pool's verification tokens at the same selected quality where the
    default spends 0.51 (bench/search/README.md, regime `advanced`): with K = 64 many proofs
    sit near the K-th mean, and settling each to 0.2 takes all 64 analyses, while a parent
    ranked 60th instead of 70th changes little; 8 analyses fill a refinement prompt."""

    stages: list[int] = field(default_factory=lambda: [4, 16, 32, 64])
    z: float = 2.5
    tolerance: float = 0.2
    refine_min: int = 16
    window: int | None = None
    name: str = "adaptive"

    def __post_init__(self):
        super().__post_init__()
        self.plan = stage_plan(self.stages, self.params.verifications)
        if self.window is None:
            self.window = max(1, min(self.params.top_k, self.params.initial) // 8)
        if self.window < 1:
            raise ValueError("window must be at least 1")

    def _views(self, search: ProblemSearch, round_: int | None = None) -> list[View]:
        return [View(e.candidate(self.params), e.finished) for e in search.scored_entries()
                if round_ is None or e.round == round_]

    async def _escalate(self, search: ProblemSearch, targets: dict[str, int]) -> None:
        async with asyncio.TaskGroup() as tg:
            for pid, upto in targets.items():
                entry = search.entry(pid)
                tg.create_task(search.verify(entry, upto, self._priority(search, entry.round, generation=False)))

    async def _settle_acceptance(self, search: ProblemSearch, round_: int) -> Candidate | None:
        while True:
            acc, more = acceptance_step(self._views(search, round_), self.params.verifications,
                                        self.params.min_valid, self.window)
            if acc is not None or not more:
                return acc
            await self._escalate(search, {pid: next_stage(self.plan, search.entry(pid).finished) for pid in more})

    async def _settle_topk(self, search: ProblemSearch, k: int, refine_min: int) -> list[Candidate]:
        while True:
            step = topk_step(self._views(search), k, n=self.params.verifications, plan=self.plan, z=self.z,
                             tolerance=self.tolerance, refine_min=refine_min)
            if step.selected is not None:
                return step.selected
            await self._escalate(search, step.escalate)

    async def _staged(self, search: ProblemSearch, make, round_: int = 0) -> None:
        entries = await make
        prio = self._priority(search, round_, generation=False)
        async with asyncio.TaskGroup() as tg:
            for e in entries:
                if search.usable(e):
                    tg.create_task(search.verify(e, self.plan[0], prio))

    async def _search(self, search: ProblemSearch) -> str:
        p = self.params
        step = self.request_n or p.initial
        async with asyncio.TaskGroup() as tg:
            for lo in range(0, p.initial, step):
                tg.create_task(self._staged(search, search.generate_initial(
                    lo, min(p.initial, lo + step), self._priority(search, 0, generation=True))))
        for round_ in range(0, p.rounds + 1):
            if await self._settle_acceptance(search, round_) is not None:
                return StopReason.ACCEPTED.value
            if round_ == p.rounds:
                break
            chosen = await self._settle_topk(search, p.top_k, self.refine_min)
            if not chosen:
                return search.nothing_stop()
            async with asyncio.TaskGroup() as tg:
                for j, c in enumerate(chosen):
                    parent = search.entry(c.id)
                    analyses = search.prompt_analyses(round_ + 1, parent)
                    tg.create_task(self._staged(search, search.refine(
                        round_ + 1, j, parent, analyses, priority=self._priority(search, round_ + 1, generation=True)),
                        round_ + 1))
        await self._settle_topk(search, 1, 0)
        return round_end(search)

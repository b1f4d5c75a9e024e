"""The released script's way of executing the pool search, re-created as the baseline.

DESIGN.md §2: every stage runs to completion, for all problems, before the next starts:
generation of round 0 for every problem, then verification of every new proof, then (once
verification finished for every problem) the refinement prompts of round 1 are built, and
so on. A stage writes each prompt n times (n samples = n identical requests of one sample
each), cuts the list into batches of 160, and 40 (generation) or 320 (verification) workers
each send a whole batch at once, wait for all of it, then take the next batch. No
meta-verification; a problem leaves the loop once one of its proofs passes every
verification. The script has no final selection (its output is the pool); here the same
final selection as `pool`'s is computed too, so the two can be compared.

Sample indices are those of the streaming `pool` (request i of a prompt written n times is
sample start + i), so the call keys are identical and one run's outputs replayed through the
call cache give the other the very same decisions.

Decisions compared with `pool` and with the released script itself. Run with the same
PoolParams, `pool` and this scheme take identical decisions (both call decisions.py); the
release preset (`selection="release"`, `rounds=15`) is what makes the decisions the script's:

- analysis selection: the script's loop, decisions.release_analyses (one distinct score: up
  to 8; two: 4 + 4; three: up to 12, because its `break` ends only the inner loop); `pool`
  with the paper preset uses decisions.choose_analyses (at most 8, issue-finding first).
- rounds: the script's `max_rounds 16` is the initial round plus 15 refinement rounds, so the
  preset says rounds=15 (PoolParams.rounds counts refinement rounds; the paper preset's 16).
- truncated outputs: the script drops proofs (and analyses) whose finish_reason is not
  "stop"; here too (decisions see no truncated proof unless `keep_truncated`).
- ties: the script shuffles the pool (unseeded numpy) and sorts by (mean, self score), so
  the rest of a tie is random; here, as in `pool`, the earlier slot wins (deterministic, so
  replayed outputs give the same decisions). An unparsable self score: 0 in the script, last
  here.
- duplicate proof texts: the script keys proofs by their text, so identical texts of a round
  share one pool entry whose ratings are pooled, and a text already in the pool from an
  earlier round is skipped (its new ratings are lost). Neither `pool` nor this scheme
  dedupes: every slot is its own proof with its own verifications.
- which boxed numbers count: the script's score is float() of the last \boxed{} of the
  analysis, any number (0.75, 2, -1 ...), and an analysis without one is dropped; here, as
  in `pool`, protocol.parsers.parse_score reads the \boxed{} right after the last
  final-score phrase and accepts only 0, 0.5 and 1 (others are INVALID_SCORE, not counted).
- acceptance: the script stops a problem when some proof's mean over its parsed ratings is
  above 0.99999 (one parsed rating of 1 suffices); here `pool`'s rule (all verifications
  back, at least pass_min_valid scored, all 1).

Deviations, on purpose: the Model wrapper's retries stay on (pass a Model with
`RetryPolicy(max_attempts=1)` for the script's no-retry behaviour), and its per-endpoint
concurrency cap applies (give the Model a cap of at least workers x batch size to leave only
the script's own limits).

    >>> import asyncio
    >>> from proofloop.models.base import Sampling
    >>> from proofloop.models.wrapper import Model
    >>> from proofloop.search.base import SearchContext
    >>> from proofloop.sim.provider import SimProvider
    >>> long = Sampling(seed=0, max_tokens=200_000)   # the simulator's outputs are never cut off
    >>> ctx = SearchContext(Model(SimProvider(seed=1)), gen_sampling=long, verify_sampling=long)
    >>> problems = ["Prove that 1 + 1 = 2."]
    >>> results = asyncio.run(run_release(problems, ctx, PoolParams(initial=4, verifications=4, top_k=2, rounds=1)))
    >>> [r.strategy for r in results]
    ['release']
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from proofloop.search.base import ProblemResult, SearchContext, StopReason
from proofloop.search.decisions import PoolParams, accepted, final_choice, top_k
from proofloop.search.pool import round_end
from proofloop.search.report import problem_result
from proofloop.search.scheduler import Entry, ProblemSearch

BATCH = 160
GEN_WORKERS = 40
VERIFY_WORKERS = 320

Request = Callable[[], Awaitable[Any]]


async def run_stage(requests: list[Request], workers: int, batch: int = BATCH) -> None:
    """The script's stage: batches of `batch` requests, `workers` workers, each sending a whole
    batch at once and waiting for all of it before it takes the next."""
    batches = [requests[i:i + batch] for i in range(0, len(requests), batch)]
    queue: asyncio.Queue = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def worker() -> None:
        while not queue.empty():
            b = queue.get_nowait()
            await asyncio.gather(*(r() for r in b))

    await asyncio.gather(*(worker() for _ in range(min(workers, len(batches)))))


def _verify_requests(search: ProblemSearch, entries: list[Entry]) -> list[Request]:
    n = search.params.verifications
    out: list[Request] = []
    for e in sorted(entries, key=lambda e: e.slot):  # the stage's order: by problem, then by slot
        if search.usable(e):  # a truncated proof is never verified (the script drops it)
            e.requested = n
            out.extend(lambda e=e, j=j: search.verify_range(e, j, j + 1) for j in range(n))
    return out


async def run_release(problems: list[str], ctx: SearchContext, params: PoolParams, *, batch: int = BATCH,
                      gen_workers: int = GEN_WORKERS, verify_workers: int = VERIFY_WORKERS,
                      stage_log: list[dict[str, Any]] | None = None,
                      clock: Callable[[], float] | None = None) -> list[ProblemResult]:
    """Run the search on every problem, stage by stage; one ProblemResult per problem, in order.
    `stage_log` (if given) gets one dict per stage: its name, round, requests and seconds,
    read from `clock` (default: the event loop's time; against a simulated server pass
    `clock=server.now` for simulated seconds; on the benchmark's virtual-clock loop, where
    the server runs at time_scale 1, the default already gives them). No request carries a
    scheduling priority: the released script sends none, and its server serves them first
    come, first served."""
    if params.meta:
        raise ValueError("the released execution scheme has no meta-verification in the loop (meta=0)")
    searches = [ProblemSearch(p, ctx, params) for p in problems]
    stops: dict[int, str] = {}
    now = clock or asyncio.get_running_loop().time

    async def stage(name: str, round_: int, requests: list[Request], workers: int) -> None:
        t0 = now()
        await run_stage(requests, workers, batch)
        if stage_log is not None:
            stage_log.append({"stage": name, "round": round_, "requests": len(requests), "seconds": now() - t0})

    new: dict[int, list[Entry]] = {i: [] for i in range(len(searches))}

    def keep(i: int, make: Callable[[], Awaitable[list[Entry]]]) -> Request:
        async def request() -> None:
            new[i].extend(await make())
        return request

    gen = [keep(i, lambda s=s, k=k: s.generate_initial(k, k + 1))
           for i, s in enumerate(searches) for k in range(params.initial)]
    await stage("generate", 0, gen, gen_workers)
    await stage("verify", 0, [r for i, s in enumerate(searches) for r in _verify_requests(s, new[i])],
                verify_workers)
    for round_ in range(1, params.rounds + 1):
        new = {i: [] for i in range(len(searches))}
        gen = []
        for i, s in enumerate(searches):
            if i in stops:
                continue
            if accepted(s.candidates(), params.min_valid) is not None:
                stops[i] = StopReason.ACCEPTED.value
                continue
            chosen = top_k(s.candidates(), params.top_k)
            if not chosen:
                stops[i] = s.nothing_stop()
                continue
            for j, c in enumerate(chosen):
                parent = s.entry(c.id)
                analyses = s.prompt_analyses(round_, parent)
                gen.extend(keep(i, lambda s=s, j=j, parent=parent, analyses=analyses, k=k:
                                s.refine(round_, j, parent, analyses, k, k + 1))
                           for k in range(params.samples_per_prompt))
        if not gen:
            break
        await stage("generate", round_, gen, gen_workers)
        await stage("verify", round_, [r for i, s in enumerate(searches) for r in _verify_requests(s, new[i])],
                    verify_workers)
    results = []
    for i, s in enumerate(searches):
        stop = stops.get(i) or round_end(s)
        chosen, how = final_choice(s.candidates(), params.min_valid)
        results.append(problem_result(s, "release", chosen, how, stop, options=dataclasses.asdict(params)))
    return results

"""`pool`: the paper's high-compute search (§3.3.3), executed as a stream per problem.

Round 0 generates `initial` proofs; each proof is verified `verifications` times the moment
it exists. Each later round takes the `top_k` proofs of the whole pool by mean verification
score (ties: self score, then slot), pairs each with up to `analyses_per_prompt` of its
analyses (issue-finding first, at most `max_per_score` per distinct score) and samples
`samples_per_prompt` refined proofs per pair, which are verified as they arrive. The search
stops after `rounds` refinement rounds, or once a proof passes every verification. All
decisions are the pure functions of decisions.py, so streaming changes when things happen,
never what is decided: release.py re-creates the released script's staged execution and
takes the same decisions from the same model outputs.

The only barrier is the one the algorithm needs: round r+1's prompts depend on the top-K
selection over all of round r's verified proofs. Across problems nothing waits, but on a
loaded server the problems compete for its slots: with `priority` on (by default for the simulator) every
request carries a scheduling priority (vLLM's `priority` field, see scheduler.call_priority)
that puts the critical path first: later rounds, then a round's refinements, then the
problems whose proofs grade themselves worst (the ones likely to need another round). The
priority is not part of the call key and never feeds a decision: it changes timing only.

`rounds` counts refinement rounds: the paper preset's `rounds=16` is round 0 plus 16
refinement rounds ("up to 16 refinement iterations"); the release preset's `rounds=15` is the
script's `max_rounds 16` (initial round + 15 refinements). Proofs cut at the token limit are
recorded but never verified, refined from or chosen (`keep_truncated=True`: they are).

Where `pool` decides differently from `release` (the released script; release.py lists how
its re-creation follows each point):

- ties: pool ranks by mean verification score, then self score (an unparsable one last),
  then the earlier slot, deterministic; the script sorts by (mean, self score) after a random
  shuffle, so its remaining ties fall at random, and an unparsable self score counts as 0.
- duplicate proof texts: pool keeps every proof in its own slot with its own verifications,
  identical texts included (no dedupe); the script dedupes by text (see release.py).
- scores: pool reads a score only as protocol.parsers.parse_score does: the \boxed{} right
  after the last final-score phrase, and only 0, 0.5 or 1 (anything else is INVALID_SCORE
  and not counted); the script takes the last \boxed{} anywhere and accepts any number.
- acceptance: pool needs all verifications back, at least `pass_min_valid` scored and all 1;
  the script stops on any proof whose mean over its parsed ratings exceeds 0.99999.
- analysis selection: pool's `selection="paper"` (decisions.choose_analyses: at most 8,
  issue-finding first); the release preset uses the script's loop (release_analyses: up to
  12, see its docstring).

    >>> import asyncio
    >>> from proofloop.models.wrapper import Model
    >>> from proofloop.models.base import Sampling
    >>> from proofloop.sim.provider import SimProvider
    >>> from proofloop.search.base import SearchContext
    >>> ctx = SearchContext(Model(SimProvider(seed=1)), gen_sampling=Sampling(seed=0, max_tokens=200_000),
    ...                     verify_sampling=Sampling(seed=0, max_tokens=200_000))
    >>> pool = Pool(initial=4, verifications=4, top_k=2, samples_per_prompt=1, rounds=1)
    >>> result = asyncio.run(pool.solve("Prove that 1 + 1 = 2.", ctx))
    >>> result.stop_reason in ("accepted", "round_limit"), result.score_kind
    (True, 'verification')
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from proofloop.errors import UserInputError
from proofloop.search.base import ProblemResult, SearchContext, StopReason
from proofloop.search.budget import Budget
from proofloop.search.decisions import PoolParams, accepted, final_choice, params_from, passes, top_k
from proofloop.search.report import problem_result
from proofloop.search.scheduler import Entry, Priority, ProblemSearch, call_priority, run_scoped


@dataclass
class Pool:
    """Options (all settable with `-o key=value`): a preset (`paper`, `release`) and any of
    its fields to override; `meta` > 0 turns on meta-verification in the loop; `request_n`
    cuts the initial generation into requests of that many samples (None: one request);
    `max_inflight` caps this problem's concurrent calls; `priority` sends each request a
    server scheduling priority (scheduler.call_priority) in the body field `priority`;
    default (None) sends it only to providers that declare `accepts_priority` (the
    simulator); `-o priority=true` for a vLLM started with `--scheduling-policy priority` or an
    SGLang with `--enable-priority-scheduling`, `-o priority=false` to never send it (vLLM
    answers a non-zero priority with an error unless started with that policy; hosted APIs may refuse unknown
    fields); `client_priority` (default True) also releases calls to the endpoint in that
    order whenever its caps (--max-concurrency, --max-sequences) hold some back, which is how
    a FIFO server gets the same order (models/limiter.py); `stop_early` cancels, inside a
    round, the verifications that can no longer change which proof is accepted once one
    passes (RoundWatch: same decision, fewer verifications, but the proofs it cuts short keep
    no verification record); budgets per problem;
    `keep_truncated` (default False) verifies, refines from and may choose proofs cut at the
    token limit (by default they are recorded, never used). search.options lists every key
    with its type (`validate_options`, `options_help`)."""

    preset: str | None = "paper"
    initial: int | None = None
    verifications: int | None = None
    top_k: int | None = None
    analyses_per_prompt: int | None = None
    max_per_score: int | None = None
    samples_per_prompt: int | None = None
    rounds: int | None = None
    pass_min_valid: int | None = None
    meta: int | None = None
    selection: str | None = None
    keep_truncated: bool | None = None
    accept: bool | None = None
    request_n: int | None = None
    max_inflight: int | None = 64
    priority: bool | None = None
    client_priority: bool = True
    stop_early: bool = False
    budget_tokens: int | None = None
    budget_cost: float | None = None
    budget_wall_s: float | None = None
    name: str = "pool"

    def __post_init__(self):
        self.params = params_from(self.preset, **{f: getattr(self, f) for f in PoolParams.__dataclass_fields__})
        if self.request_n is not None and self.request_n < 1:
            raise ValueError("request_n must be at least 1")
        if self.max_inflight is not None and self.max_inflight < 1:
            raise ValueError("max_inflight must be at least 1 (or None: no per-problem cap)")

    def new_search(self, problem: str, ctx: SearchContext) -> ProblemSearch:
        budget = Budget(tokens=self.budget_tokens, cost_usd=self.budget_cost, wall_s=self.budget_wall_s)
        return ProblemSearch(problem, ctx, self.params, max_inflight=self.max_inflight, budget=budget)

    async def solve(self, problem: str, ctx: SearchContext) -> ProblemResult:
        if self.budget_cost is not None and any(getattr(m, "price", None) is None for m in (ctx.generator, ctx.verifier)):
            raise UserInputError(f"a cost budget needs the model's price, and {ctx.generator.model!r} has none "
                                 "(pass Model(..., pricing=...))")
        search = self.new_search(problem, ctx)
        _, stop, detail = await run_scoped(search.budget, lambda tg: self._search(search))
        return self.result(search, stop, detail)

    def result(self, search: ProblemSearch, stop: str, detail: str | None = None) -> ProblemResult:
        chosen, how = final_choice(search.candidates(), self.params.min_valid)
        return problem_result(search, self.name, chosen, how, stop, detail=detail,
                              options=dataclasses.asdict(self.params))

    # -- the search --

    def _priority(self, search: ProblemSearch, round_: int, *, generation: bool) -> Priority | None:
        """The scheduling priority of a call of `round_` (scheduler.call_priority): sent to the
        server unless `priority=False`, and (`client_priority`) the order in which the client
        releases calls to the endpoint; None when neither."""
        send = self.priority
        if send is None:  # auto: only where the server is known to accept the field
            send = all(getattr(m.provider, "accepts_priority", False) for m in (search.ctx.generator, search.ctx.verifier))
        if not send and not self.client_priority:
            return None
        return Priority(call_priority(round_, generation=generation, self_scores=search.self_scores(round_),
                                      round_size=self.params.initial if round_ == 0 else self.params.round_size),
                        send=send)

    async def _verified(self, search: ProblemSearch, make, round_: int = 0, watch: "RoundWatch | None" = None) -> None:
        """Make some proofs, then verify each fully, all at once; with a `watch`, skip or
        cancel the verifications that can no longer change which proof is accepted."""
        entries: list[Entry] = await make
        prio = self._priority(search, round_, generation=False)

        async def verify(e: Entry) -> None:
            await search.verify(e, self.params.verifications, prio)
            if watch is not None and passes(e.candidate(self.params), self.params.min_valid):
                watch.passed(e)

        async with asyncio.TaskGroup() as tg:
            for e in entries:
                if search.usable(e) and not (watch is not None and watch.outranked(e)):
                    task = tg.create_task(verify(e))
                    if watch is not None:
                        watch.track(e, task)

    async def _search(self, search: ProblemSearch) -> str:
        p = self.params
        step = self.request_n or p.initial
        async with asyncio.TaskGroup() as tg:
            watch = RoundWatch() if self.stop_early else None
            for lo in range(0, p.initial, step):
                tg.create_task(self._verified(search, search.generate_initial(
                    lo, min(p.initial, lo + step), self._priority(search, 0, generation=True)), 0, watch))
        for round_ in range(1, p.rounds + 1):
            if accepted(search.candidates(), p.min_valid) is not None:
                return StopReason.ACCEPTED.value
            chosen = top_k(search.candidates(), p.top_k)
            if not chosen:
                return search.nothing_stop()
            async with asyncio.TaskGroup() as tg:
                watch = RoundWatch() if self.stop_early else None
                for j, c in enumerate(chosen):
                    parent = search.entry(c.id)
                    analyses = search.prompt_analyses(round_, parent)
                    tg.create_task(self._verified(search, search.refine(
                        round_, j, parent, analyses, priority=self._priority(search, round_, generation=True)),
                        round_, watch))
        return round_end(search)


def round_end(search: ProblemSearch) -> str:
    """The stop reason once the round loop has ended without an earlier stop."""
    if accepted(search.candidates(), search.params.min_valid) is not None:
        return StopReason.ACCEPTED.value
    return StopReason.ROUND_LIMIT.value if search.candidates() else search.nothing_stop()


class RoundWatch:
    """Stop-when-accepted inside a round, without changing the decision.

    Every proof that passes has mean score 1, so among the passing proofs of a round the
    accepted one is the best by (self score, slot) (decisions.accepted). Once some proof of the
    round passes, a proof that ranks below it on that key can no longer be accepted, whatever
    its verifications say: its outstanding verification is cancelled (or never started), and
    only the proofs that could still outrank the passing one are verified to the end."""

    def __init__(self) -> None:
        self.best: tuple[float, int] | None = None  # key of the best passing proof so far
        self.tasks: dict[int, tuple[tuple[float, int], asyncio.Task]] = {}
        self.cancelled = 0

    @staticmethod
    def key(e: Entry) -> tuple[float, int]:
        return (-(e.proof.self_score if e.proof.self_score is not None else -1.0), e.slot)

    def outranked(self, e: Entry) -> bool:
        return self.best is not None and self.key(e) > self.best

    def track(self, e: Entry, task: asyncio.Task) -> None:
        self.tasks[e.slot] = (self.key(e), task)

    def passed(self, e: Entry) -> None:
        key = self.key(e)
        if self.best is not None and key >= self.best:
            return
        self.best = key
        for other_key, task in self.tasks.values():
            if other_key > key and not task.done():
                task.cancel()
                self.cancelled += 1


async def solve_all(strategy, problems: list[str], ctx: SearchContext) -> list[ProblemResult]:
    """Every problem at once (each its own stream; the Model's endpoint cap is shared)."""
    return list(await asyncio.gather(*(strategy.solve(p, ctx) for p in problems)))

"""Streaming execution for one problem: its proofs, the calls that grow them, and the scope
that caps, meters and cancels those calls.

`ProblemSearch` holds one problem's pool (an `Entry` per proof slot) and makes its calls
through `ProblemModel`, a view of the shared Model that adds a per-problem concurrency cap,
a per-problem budget check before each call and a per-problem token/cost meter after it. The
endpoint's own cap stays in the Model wrapper. `run_scoped` runs a search body inside one
TaskGroup with a budget watcher: a budget running out, or a body raising `StopSearch`,
cancels every outstanding task of that problem and becomes the result's `stop_reason`
(base.StopReason: budget_tokens / budget_cost / budget_wall, with the budget's message as
the detail).

    >>> import asyncio
    >>> from proofloop.models.wrapper import Model
    >>> from proofloop.sim.provider import SimProvider
    >>> from proofloop.search.base import SearchContext
    >>> from proofloop.search.decisions import PoolParams
    >>> search = ProblemSearch("Prove that 1 + 1 = 2.", SearchContext(Model(SimProvider(seed=1))),
    ...                        PoolParams(initial=2, verifications=2))
    >>> async def body(tg):
    ...     entries = await search.generate_initial(0, 2)
    ...     await asyncio.gather(*(search.verify(e, 2) for e in entries if search.usable(e)))
    ...     return "completed"
    >>> asyncio.run(run_scoped(search.budget, body))[1]
    'completed'
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from proofloop.errors import BudgetExceeded
from proofloop.models.base import FREE, Sampling, Usage
from proofloop.roles import generate, meta_verify, refine, verify
from proofloop.roles.records import AnalysisRecord, MetaRecord, ProofRecord, Verification
from proofloop.search.base import SearchContext, StopReason, all_failed, shown_text, slim, usable
from proofloop.search.budget import Budget
from proofloop.search.decisions import (Candidate, Judged, PoolParams, analysis_rng, finds_issues, meta_index,
                                        meta_rejected, prompt_choice, slot_of, verify_index)

T = TypeVar("T")


@dataclass(frozen=True)
class Priority:
    """A call's scheduling priority (lower first): always the order in which the client
    releases it to the endpoint (Sampling.client_priority), and with `send` also the
    server's hint (vLLM's per-request `priority`, which a FIFO-policy vLLM refuses)."""

    value: int
    send: bool = True


def with_priority(sampling: Sampling, priority: Priority | int | None) -> Sampling:
    """`sampling` carrying `priority` (an int: sent to the server too; None: unchanged). Not
    part of the call key (Sampling.as_key), so it changes when a call runs, never which
    samples it returns.

    >>> with_priority(Sampling(), Priority(7, send=False)).extra, with_priority(Sampling(), 7).extra
    ({}, {'priority': 7})
    """
    if priority is None:
        return sampling
    if not isinstance(priority, Priority):
        priority = Priority(int(priority))
    extra = {**sampling.extra, "priority": priority.value} if priority.send else sampling.extra
    return dataclasses.replace(sampling, extra=extra, client_priority=priority.value)


ROUND_STEP = 10_000  # priority distance between roles/rounds; the self-score term stays below it


def call_priority(round_: int, *, generation: bool, self_scores: Sequence[float | None], round_size: int) -> int:
    """The server scheduling priority (lower first) of one call of a pool-style search: its
    place on the critical path of the whole run, from what the search knows when it sends it.

    1. Later rounds first. A problem has round-r work only while no proof stopped it, so that
       work lies on the chain of the problems that will finish last; round 0 is the bulk.
    2. In a round, refinements before verifications: a refinement gates the verification of
       all its samples.
    3. In a (round, role), the problem whose proofs of that round grade themselves lowest
       first: the sum of their self scores over the proofs the round makes (`round_size`;
       proofs not made yet count 0, so a problem's first proofs are not ranked by one lucky
       self score). A problem whose own proofs claim no full marks rarely has one that passes
       every verification, so it likely needs another round and its verifications gate it;
       a problem that will stop can finish any time before the last one does.

    A pure function of the round and the outputs seen: no clock, no completion order. It
    only orders work at the server, never a decision.

    >>> call_priority(0, generation=False, self_scores=[1.0, 0.0], round_size=8)  # round-0 verification
    125
    >>> [call_priority(1, generation=g, self_scores=[], round_size=8) for g in (True, False)]
    [-30000, -20000]
    """
    term = int(1000 * sum(s or 0.0 for s in self_scores) / max(1, round_size, len(self_scores)))
    return -(2 * round_ + (1 if generation else 0)) * ROUND_STEP + term


class StopSearch(Exception):
    """Raised inside a search body to end the problem's search now (e.g. a proof was accepted);
    `reason` is a base.StopReason value."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


# ---- metering -----------------------------------------------------------------------------


@dataclass
class TagUsage:
    """What one role tag of one problem spent: samples (replayed ones from the call cache and
    failed ones included) and the sum of their `Sample.usage`."""

    samples: int = 0
    replayed: int = 0
    failed: int = 0
    usage: Usage = FREE

    def __add__(self, other: "TagUsage") -> "TagUsage":
        return TagUsage(self.samples + other.samples, self.replayed + other.replayed, self.failed + other.failed,
                        self.usage + other.usage)

    def as_dict(self) -> dict[str, Any]:
        u = self.usage
        return {"samples": self.samples, "replayed": self.replayed, "failed": self.failed,
                "prompt_tokens": u.prompt_tokens, "cached_prompt_tokens": u.cached_prompt_tokens,
                "completion_tokens": u.completion_tokens, "cost_usd": u.cost_usd}


@dataclass
class Meter:
    """Tokens and cost one problem spent, per role tag: the sum of its samples' `usage` (the
    wrapper's priced share of each request). Samples replayed from the call cache count too
    (they were spent, by an earlier process of the same run), so a resumed run reports and
    budgets the same totals as an uninterrupted one."""

    by_tag: dict[str, TagUsage] = field(default_factory=dict)

    def add(self, tag: str, samples: Sequence[Any]) -> Usage:
        """Meter `samples` (models.wrapper.Sample) under `tag`; returns what they spent."""
        spent = sum((s.usage for s in samples), FREE)
        self.by_tag[tag] = self.by_tag.get(tag, TagUsage()) + TagUsage(
            len(samples), sum(1 for s in samples if s.cached), sum(1 for s in samples if not s.ok), spent)
        return spent

    def total(self) -> TagUsage:
        return sum(self.by_tag.values(), TagUsage())

    def as_dict(self) -> dict[str, Any]:
        """The report's `usage`: per role and in total."""
        return {"by_role": {tag: t.as_dict() for tag, t in self.by_tag.items()}, "total": self.total().as_dict()}


class ProblemModel:
    """The shared Model as one problem sees it (roles only call `sample`)."""

    def __init__(self, model, limiter: asyncio.Semaphore | None, budget: Budget, meter: Meter):
        self._model, self._limiter, self._budget, self._meter = model, limiter, budget, meter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    async def sample(self, messages, sampling, n: int = 1, *, start: int = 0, tag: str = ""):
        self._budget.check()  # no new call once a budget is spent
        if self._limiter is None:
            samples = await self._model.sample(messages, sampling, n, start=start, tag=tag)
        else:
            async with self._limiter:
                samples = await self._model.sample(messages, sampling, n, start=start, tag=tag)
        self._budget.charge(self._meter.add(tag, samples))
        return samples


# ---- the pool -----------------------------------------------------------------------------


@dataclass
class Entry:
    """One proof slot: the proof, its analyses by verification number, their meta ratings."""

    proof: ProofRecord
    slot: int
    round: int
    analyses: dict[int, AnalysisRecord] = field(default_factory=dict)
    ratings: dict[str, list[MetaRecord]] = field(default_factory=dict)
    requested: int = 0  # verifications asked for
    finished: int = 0  # verifications returned (scored or failed), their meta ratings included
    texted: set[str] = field(default_factory=set)  # analyses with a text a refinement prompt can show

    def rejected(self) -> set[str]:
        return {aid for aid, rs in self.ratings.items() if meta_rejected([r.rating if r.ok else None for r in rs])}

    def usable(self) -> list[tuple[int, AnalysisRecord]]:
        """Scored analyses the meta-verifier did not reject, in verification order."""
        rejected = self.rejected()
        return [(j, a) for j, a in sorted(self.analyses.items())
                if a.ok and a.score is not None and a.id not in rejected]

    def candidate(self, params: PoolParams) -> Candidate:
        return Candidate(id=self.proof.id, slot=self.slot, round=self.round, self_score=self.proof.self_score,
                         scores=tuple(a.score for _, a in self.usable()),
                         complete=self.finished >= params.verifications)

    def judged(self) -> list[Judged]:
        """Analyses that can be shown in a refinement prompt (scored, not rejected, with text)."""
        return [Judged(a.id, j, a.score) for j, a in self.usable() if a.id in self.texted]

    def verification(self) -> Verification:
        return Verification(proof_id=self.proof.id, analyses=[a for _, a in sorted(self.analyses.items())])


class ProblemSearch:
    """One problem's pool and the calls that grow it. Every call's sample index comes from the
    proof's slot (decisions.slot_of / verify_index / meta_index), so the same search always
    sends the same call keys however its calls are grouped into requests."""

    def __init__(self, problem: str, ctx: SearchContext, params: PoolParams, *, max_inflight: int | None = None,
                 budget: Budget | None = None):
        self.problem, self.ctx, self.params = problem, ctx, params
        self.budget = budget or Budget()
        if self.budget.parent is None:
            self.budget.parent = ctx.budget  # the run's budget, shared with the other problems
        self.meter = Meter()
        limiter = asyncio.Semaphore(max_inflight) if max_inflight else None
        self.gen = ProblemModel(ctx.generator, limiter, self.budget, self.meter)
        self.ver = ProblemModel(ctx.verifier, limiter, self.budget, self.meter)
        self.entries: dict[int, Entry] = {}

    # -- proofs --

    def _kept(self, record: T) -> T:
        """What the working state keeps of a recorded record: all of it, or (when the context
        can read texts back) the record without its texts (base.slim)."""
        return record if self.ctx.analysis_texts is None else slim(record)

    def _add(self, records: list[ProofRecord], round_: int, first_slot: int) -> list[Entry]:
        entries = []
        for i, record in enumerate(records):
            self.ctx.recorder.proof(self.problem, record, round=round_, thread=first_slot + i, attempt=0)
            entry = Entry(self._kept(record), first_slot + i, round_)
            self.entries[entry.slot] = entry
            entries.append(entry)
        return entries

    async def generate_initial(self, lo: int, hi: int, priority: Priority | int | None = None) -> list[Entry]:
        """Initial proofs for slots [lo, hi) in one request (the wrapper splits it by max_n)."""
        records = await generate(self.gen, self.problem, sampling=with_priority(self.ctx.gen_sampling, priority),
                                 n=hi - lo, start=lo, templates=self.ctx.templates)
        return self._add(records, 0, lo)

    def prompt_analyses(self, round_: int, entry: Entry) -> list[AnalysisRecord]:
        """The analyses shown with `entry` in its refinement prompt for `round_` (the rule
        `params.selection` names; the draw is seeded by position, never by an id)."""
        rng = analysis_rng(self.ctx.seed, self.problem, round_, entry.slot)
        return [entry.analyses[j.index] for j in prompt_choice(self.params, entry.judged(), rng)]

    def with_texts(self, proof_id: str, analyses: list[AnalysisRecord]) -> list[AnalysisRecord]:
        """`analyses` (of proof `proof_id`) with their texts, read back through the context's
        `analysis_texts` when the working state dropped them."""
        if self.ctx.analysis_texts is None or not analyses:
            return analyses
        texts = self.ctx.analysis_texts(proof_id, [a.id for a in analyses])
        missing = [a.id for a in analyses if a.id not in texts]
        if missing:
            raise LookupError(f"no recorded text for analyses {missing} of proof {proof_id}")
        return [a.model_copy(update={"analysis": texts[a.id]}) for a in analyses]

    async def refine(self, round_: int, prompt: int, parent: Entry, analyses: list[AnalysisRecord],
                     lo: int = 0, hi: int | None = None, priority: Priority | int | None = None) -> list[Entry]:
        """Samples [lo, hi) of refinement prompt `prompt` of round `round_`."""
        hi = self.params.samples_per_prompt if hi is None else hi
        first = slot_of(self.params, round_, prompt, lo)
        shown = self.with_texts(parent.proof.id, analyses)
        records = await refine(self.gen, self.problem, [(parent.proof, shown)],
                               sampling=with_priority(self.ctx.gen_sampling, priority), n=hi - lo, start=first,
                               templates=self.ctx.templates)
        return self._add(records, round_, first)

    # -- verification --

    async def verify(self, entry: Entry, upto: int, priority: Priority | int | None = None) -> None:
        """Bring `entry` to `upto` verifications (one request for all the missing ones)."""
        lo = entry.requested
        if upto <= lo:
            return
        entry.requested = upto
        await self.verify_range(entry, lo, upto, priority)

    async def verify_range(self, entry: Entry, lo: int, hi: int, priority: Priority | int | None = None) -> None:
        """Verifications lo..hi-1 of `entry` (and their meta ratings, when meta is on); `priority`
        is the server scheduling hint for all of them (with_priority)."""
        sampling = with_priority(self.ctx.verify_sampling, priority)
        shown = await self.ctx.verifier_problem(self.problem, entry.proof)
        v = await verify(self.ver, shown, entry.proof, sampling=sampling, n=hi - lo,
                         start=verify_index(self.params, entry.slot, lo), templates=self.ctx.templates)
        for k, a in enumerate(v.analyses):
            self.ctx.recorder.analysis(self.problem, a)
            entry.analyses[lo + k] = self._kept(a)
            if shown_text(a).strip():
                entry.texted.add(a.id)
        if self.params.meta:  # rated from the whole records, before they are let go
            metas = [(lo + k, a) for k, a in enumerate(v.analyses) if a.ok and finds_issues(a.score)
                     and shown_text(a).strip()]
            async with asyncio.TaskGroup() as tg:
                for j, a in metas:
                    tg.create_task(self._meta(entry, j, a, priority))
        entry.finished += hi - lo

    async def _meta(self, entry: Entry, j: int, analysis: AnalysisRecord, priority: Priority | int | None = None) -> None:
        shown = await self.ctx.verifier_problem(self.problem, entry.proof)
        ratings = await meta_verify(self.ver, shown, entry.proof, analysis,
                                    sampling=with_priority(self.ctx.meta_sampling, priority),
                                    m=self.params.meta, start=meta_index(self.params, entry.slot, j),
                                    templates=self.ctx.templates)
        for r in ratings:
            self.ctx.recorder.meta(self.problem, r)
        entry.ratings[analysis.id] = [self._kept(r) for r in ratings]

    # -- views --

    def usable(self, entry: Entry) -> bool:
        """Is this proof verified, refined from and selectable? (base.usable: not truncated
        unless params.keep_truncated)"""
        return usable(entry.proof, self.params.keep_truncated)

    def scored_entries(self) -> list[Entry]:
        return [e for _, e in sorted(self.entries.items()) if self.usable(e) and e.finished > 0]

    def nothing_stop(self) -> str:
        """Why no proof has a score: every generation call failed, every verification call
        failed, or (calls came back) nothing usable was scored."""
        entries = list(self.entries.values())
        if all_failed(e.proof for e in entries) or all_failed(a for e in entries for a in e.analyses.values()):
            return StopReason.ALL_CALLS_FAILED.value
        return StopReason.NOTHING_SCORED.value

    def self_scores(self, round_: int) -> list[float | None]:
        """The self scores of the proofs of `round_` made so far, in slot order."""
        return [e.proof.self_score for _, e in sorted(self.entries.items()) if e.round == round_]

    def candidates(self) -> list[Candidate]:
        return [e.candidate(self.params) for e in self.scored_entries()]

    def entry(self, proof_id: str) -> Entry:
        return next(e for e in self.entries.values() if e.proof.id == proof_id)


# ---- running a body in a cancellable scope ------------------------------------------------


def _leaves(eg: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for e in eg.exceptions:
        out.extend(_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])
    return out


async def run_scoped(budget: Budget, body: Callable[[asyncio.TaskGroup], Awaitable[T]]
                     ) -> tuple[T | None, str, str | None]:
    """Run `body(tg)` (it may start background tasks in `tg`) under `budget`. Returns (its
    result or None, stop reason, detail): the body's result is its own reason when it is a
    string; the budget's kind (budget_tokens / budget_cost / budget_wall, the message as
    detail) or a StopSearch reason when the search was cut short. Any other error is
    re-raised as itself (not as an exception group), so callers see e.g. EndpointUnreachable."""
    budget.start()
    main: asyncio.Task | None = None
    try:
        async with asyncio.TaskGroup() as tg:
            watcher = tg.create_task(budget.watch())
            main = tg.create_task(body(tg))
            main.add_done_callback(lambda _t: watcher.cancel())
    except BaseExceptionGroup as eg:
        leaves = _leaves(eg)
        others = [e for e in leaves if not isinstance(e, (BudgetExceeded, StopSearch))]
        if others:
            raise others[0]
        first = leaves[0]
        if isinstance(first, StopSearch):
            return None, first.reason, first.detail
        return None, getattr(first, "kind", StopReason.BUDGET_TOKENS.value), str(first)
    result = main.result()
    return result, (result if isinstance(result, str) else StopReason.COMPLETED.value), None

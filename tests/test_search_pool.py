"""pool, adaptive (and single, sequential) end to end against the simulated server over real
HTTP; budgets; a server failing 20% of calls; meta-verification in the loop; the report."""

from __future__ import annotations

import asyncio
import time

import pytest

from proofloop.models.base import Sampling
from proofloop.errors import UserInputError
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.pricing import Price
from proofloop.search import make_strategy
from proofloop.search.base import MemoryRecorder, SearchContext
from proofloop.search.budget import Budget
from proofloop.sim.http import ServerThread
from proofloop.sim import make_problems, true_quality
from proofloop.sim.server import ServerModel, run_virtual
from proofloop.sim.provider import SimProvider
from proofloop.models.wrapper import Model
from proofloop.sim.app import build_faults, make_sim_app
from support.servers import fast_model

SAMPLING = Sampling(seed=0, max_tokens=200_000)
SMALL = dict(preset="release", initial=6, verifications=6, top_k=2, samples_per_prompt=2, rounds=2)
NO_ACCEPT = dict(SMALL, accept=False)  # no proof can pass: every round runs


@pytest.fixture(scope="module")
def sim_server():
    log: list[dict] = []
    with ServerThread(make_sim_app(seed=0, request_log=log)) as server:
        yield server, log


@pytest.fixture(scope="module")
def problems():
    return make_problems(3, seed=4, mix="hard")


def context(base_url: str, *, cache=None, **kw) -> SearchContext:
    model = fast_model(base_url, model="sim-1", cache=cache if cache is not None else InMemoryCallCache(), max_concurrency=64,
                       endpoint=f"{base_url}#{time.monotonic_ns()}")
    return SearchContext(model, gen_sampling=SAMPLING, verify_sampling=SAMPLING, meta_sampling=SAMPLING,
                         recorder=MemoryRecorder(), **kw)


def solve(strategy, problem, ctx):
    return asyncio.run(strategy.solve(problem, ctx))


@pytest.mark.parametrize("name,options", [
    ("single", {"k": 3}), ("sequential", {"threads": 2, "attempts": 2}),
    ("pool", SMALL), ("pool", NO_ACCEPT), ("adaptive", dict(NO_ACCEPT, stages=[2, 4, 6], refine_min=4)),
])
def test_each_strategy_end_to_end_over_http(sim_server, problems, name, options):
    server, _ = sim_server
    ctx = context(server.base_url)
    result = solve(make_strategy(name, **options), problems[0], ctx)
    assert result.best is not None and result.best.verifiable
    assert true_quality(result.best.solution) is not None
    summary = result.summary()
    assert summary["strategy"] == name
    if name in ("pool", "adaptive"):
        report = summary["report"]
        assert result.score_kind == "verification"
        # the seeded sim: with SMALL, problem 0 gets a proof that passes in round 1
        assert (result.stop_reason, report["rounds_reached"]) == (
            ("round_limit", 2) if options is NO_ACCEPT or name == "adaptive" else ("accepted", 1))
        if options is NO_ACCEPT or name == "adaptive":
            assert len(result.proofs) == 6 + 2 * 2 * 2
        chosen = report["chosen"]
        assert chosen["proof_id"] == result.best.id
        assert chosen["mean_score"] == result.score
        # lineage: back to an initial proof, through the recorded parents and analyses
        lineage = report["lineage"]
        assert lineage[0]["proof_id"] == result.best.id and lineage[-1]["round"] == 0
        for child, parent in zip(lineage, lineage[1:]):
            assert child["parents"] == [parent["proof_id"]]
            analysis_ids = {a.id for a in result.verifications[parent["proof_id"]].analyses}
            assert set(child["analyses_used"]) <= analysis_ids
        usage = report["usage"]
        assert usage["by_role"]["verify"]["completion_tokens"] > 0 and usage["total"]["prompt_tokens"] > 0
        recorded = {a.id for a in ctx.recorder.analyses}
        assert all(a.id in recorded for v in result.verifications.values() for a in v.analyses)


def test_pool_verifies_each_proof_with_one_request_of_n(sim_server, problems):
    server, log = sim_server
    before = len(log)
    ctx = context(server.base_url)
    result = solve(make_strategy("pool", **dict(SMALL, rounds=0)), problems[1], ctx)
    sent = log[before:]
    assert len(sent) == 1 + sum(1 for p in result.proofs if p.verifiable)  # one generation request of 6
    assert sorted(e["n"] for e in sent)[-1] == 6 and all(e["n"] == 6 for e in sent)


def test_adaptive_spends_less_verification_than_pool_for_the_same_choice_rule(sim_server, problems):
    server, _ = sim_server
    opts = dict(preset="release", initial=8, verifications=16, top_k=3, samples_per_prompt=2, rounds=1)
    pool_ctx, ada_ctx = context(server.base_url), context(server.base_url)
    pool = solve(make_strategy("pool", **opts), problems[2], pool_ctx)
    ada = solve(make_strategy("adaptive", **opts, stages=[4, 8, 16], refine_min=8), problems[2], ada_ctx)
    spent = lambda ctx: ctx.generator.accounting.by_tag["verify"].samples  # noqa: E731
    assert spent(ada_ctx) < spent(pool_ctx)
    # round 0 is the same 8 proofs; acceptance in it is exact, so it agrees with pool's
    if pool.stop_reason == "accepted" and pool.meta["report"]["rounds_reached"] == 0:
        assert ada.best.id == pool.best.id


def test_token_budget_stops_and_cancels_outstanding_work(sim_server, problems):
    server, _ = sim_server
    ctx = context(server.base_url)
    result = solve(make_strategy("pool", **dict(NO_ACCEPT, budget_tokens=60_000)), problems[0], ctx)
    assert result.stop_reason == "budget_tokens" and result.stop_detail.startswith("problem token budget")
    report = result.meta["report"]
    spent = report["usage"]["total"]["prompt_tokens"] + report["usage"]["total"]["completion_tokens"]
    assert spent >= 60_000
    assert report["rounds_reached"] < 2  # it did not run to the end


def test_run_budget_is_shared_by_problems(sim_server, problems):
    server, _ = sim_server
    run_budget = Budget(tokens=150_000, scope="run")
    ctx = context(server.base_url, budget=run_budget)
    strategy = make_strategy("pool", **NO_ACCEPT)

    async def both():
        return await asyncio.gather(*(strategy.solve(p, ctx) for p in problems[:2]))

    results = asyncio.run(both())
    assert all(r.stop_reason == "budget_tokens" and r.stop_detail.startswith("run token budget") for r in results)
    assert run_budget.spent_tokens >= 150_000


def test_wall_time_budget_cancels_in_flight_calls():
    # a slow server: one generation takes minutes of simulated time at this scale
    with ServerThread(make_sim_app(seed=0, server=ServerModel(time_scale=50.0))) as server:
        ctx = context(server.base_url)
        t0 = time.monotonic()
        result = solve(make_strategy("pool", **dict(SMALL, budget_wall_s=0.5)), make_problems(1)[0], ctx)
        took = time.monotonic() - t0
    assert result.stop_reason == "budget_wall" and "wall-time" in result.stop_detail
    assert took < 5
    assert result.best is None  # nothing was verified in time: no choice, and no error


def test_cost_budget(sim_server, problems):
    server, log = sim_server
    ctx = context(server.base_url)  # sim-1 has no price: a cost budget cannot be kept
    before = len(log)
    with pytest.raises(UserInputError, match="price"):
        solve(make_strategy("pool", **dict(SMALL, budget_cost=1.0)), problems[0], ctx)
    assert len(log) == before  # refused before any call
    ctx.generator.price = Price(1.0, 0.1, 2.0)  # $ per million tokens
    result = solve(make_strategy("pool", **dict(NO_ACCEPT, budget_cost=0.05)), problems[0], ctx)
    assert result.stop_reason == "budget_cost" and result.stop_detail.startswith("problem cost budget")
    assert result.meta["report"]["usage"]["total"]["cost_usd"] >= 0.05


def test_a_server_failing_20_percent_of_calls(problems):
    log: list[dict] = []
    faults = build_faults(0.2, ["server_error", "drop", "malformed"], retry_after=0.0, seed=3)
    with ServerThread(make_sim_app(seed=0, faults=faults, request_log=log)) as server:
        cache = InMemoryCallCache()
        ctx = context(server.base_url, cache=cache)
        result = solve(make_strategy("adaptive", **dict(NO_ACCEPT, stages=[3, 6], refine_min=3)), problems[1], ctx)
    failed = [e for e in log if e.get("outcome") not in ("ok", None)]
    assert len(failed) >= 3 and cache.failures  # failures happened, and were recorded
    assert result.stop_reason == "round_limit" and result.best is not None
    failed_in_records = sum(1 for v in result.verifications.values() for a in v.analyses if not a.ok)
    assert result.meta["report"]["failed_analyses"] == failed_in_records


def test_meta_verification_excludes_rejected_analyses(sim_server, problems):
    server, _ = sim_server
    ctx = context(server.base_url)
    result = solve(make_strategy("pool", **dict(NO_ACCEPT, meta=3)), problems[2], ctx)
    ratings: dict[str, list] = {}
    for r in ctx.recorder.metas:
        ratings.setdefault(r.analysis_id, []).append(r.rating)
    assert ratings and all(len(v) == 3 for v in ratings.values())
    rejected = {aid for aid, rs in ratings.items() if sum(1 for x in rs if x == 0.0) * 2 > len(rs)}
    assert rejected, "no analysis was rejected: the check below proves nothing"
    assert result.meta["report"]["meta_rejected"] == len(rejected)
    used = {aid for p in result.proofs for aid in p.analyses_used}
    assert not used & rejected
    # the mean the choice was made on leaves rejected analyses out
    best = result.verifications[result.best.id]
    kept = [a.score for a in best.analyses if a.ok and a.id not in rejected]
    assert result.score == pytest.approx(sum(kept) / len(kept))


# ---------------------------------------------------------------- scheduling priorities


class PriorityLog:
    """A SimProvider that notes each request's role, first sample index and priority hint."""

    def __init__(self, server=None):
        from proofloop.sim.provider import SimProvider

        self.inner = SimProvider(server=server, seed=1)
        self.name, self.model, self.max_n = self.inner.name, self.inner.model, self.inner.max_n
        self.accepts_priority = self.inner.accepts_priority
        self.seen: list[tuple[str, int, int | None]] = []

    async def complete(self, messages, sampling, n):
        self.seen.append((self.inner.sim.role_of(messages), sampling.seed, sampling.extra.get("priority")))
        return await self.inner.complete(messages, sampling, n)


def _priority_run(name: str, options: dict, problems, accepts: bool = True):
    from proofloop.models.wrapper import Model

    provider = PriorityLog(ServerModel(slots=64, time_scale=1e6))
    provider.accepts_priority = accepts
    model = Model(provider, cache=InMemoryCallCache(), max_concurrency=10_000, endpoint=f"prio#{time.monotonic_ns()}")
    ctx = SearchContext(model, gen_sampling=SAMPLING, verify_sampling=SAMPLING, recorder=MemoryRecorder())
    strategy = make_strategy(name, **options)

    async def go():
        return await asyncio.gather(*(strategy.solve(p, ctx) for p in problems))

    results = asyncio.run(go())
    return [(r.best.id, r.score, r.stop_reason, sorted(p.id for p in r.proofs)) for r in results], provider.seen


@pytest.mark.parametrize("name,extra", [("pool", {}), ("adaptive", dict(stages=[2, 4, 6], refine_min=4))])
def test_priorities_put_later_rounds_and_refinements_first_and_change_no_decision(problems, name, extra):
    from proofloop.search.decisions import slot_of

    options = dict(NO_ACCEPT, request_n=1, **extra)
    on, sent = _priority_run(name, options, problems[:2])
    off, plain = _priority_run(name, dict(options, priority=False), problems[:2])
    assert on == off  # same proofs, same choices: the hint only orders work at the server
    assert all(p is None for _, _, p in plain) and all(p is not None for _, _, p in sent)
    params = make_strategy(name, **options).params

    def round_of(role: str, seed: int) -> int:
        slot = seed if role in ("generate", "refine") else seed // params.verifications
        return 0 if slot < params.initial else 1 + (slot - params.initial) // params.round_size

    by = {}
    for role, seed, p in sent:
        by.setdefault((round_of(role, seed), role == "verify"), []).append(p)
    # a later round's work before an earlier one's; in a round, refinements before verifications
    assert max(by[(2, False)]) < min(by[(2, True)]) <= max(by[(2, True)]) < min(by[(1, False)])
    assert max(by[(1, True)]) < min(by[(0, False)]) < min(by[(0, True)])
    assert slot_of(params, 1) == params.initial  # the inverse above matches the slot layout


def test_call_priority_ranks_problems_by_their_proofs_self_scores():
    from proofloop.search.scheduler import call_priority

    def verify(scores):
        return call_priority(0, generation=False, self_scores=scores, round_size=4)

    assert verify([0.0, 0.0, 0.5, 0.0]) < verify([1.0, 0.5, 0.0, 0.0]) < verify([1.0, 1.0, 1.0, 1.0])
    assert verify([1.0]) < verify([1.0, 1.0])  # proofs not made yet count 0: first proofs go early
    assert verify([None, 0.0]) == verify([]) == 0
    assert call_priority(1, generation=False, self_scores=[1.0] * 4, round_size=4) < verify([])
    assert call_priority(1, generation=True, self_scores=[], round_size=4) < call_priority(
        1, generation=False, self_scores=[], round_size=4)


def test_adaptive_default_window_scales_with_top_k():
    assert make_strategy("adaptive", preset="paper").window == 8
    assert make_strategy("adaptive", preset="release").window == 4
    assert make_strategy("adaptive", preset=None, initial=8, top_k=2).window == 1
    assert make_strategy("adaptive", preset="paper", window=3).window == 3
    with pytest.raises(UserInputError):
        make_strategy("adaptive", window=0)



def test_priority_is_sent_only_to_providers_that_accept_it(problems):
    """By default (priority=None) a provider that does not declare `accepts_priority` (e.g. a
    vLLM not started with --scheduling-policy priority) gets no priority field; -o priority=true
    sends it anyway."""
    _, default_sent = _priority_run("pool", dict(NO_ACCEPT, request_n=1), problems[:1], accepts=False)
    _, forced = _priority_run("pool", dict(NO_ACCEPT, request_n=1, priority=True), problems[:1], accepts=False)
    assert default_sent and all(p is None for _, _, p in default_sent)
    assert all(p is not None for _, _, p in forced)


def test_stop_early_cancels_verifications_that_cannot_change_the_acceptance():
    """With stop_early, once a proof of a round passes, the proofs ranked below it (self score,
    slot) are not verified further; the accepted proof is the one plain pool accepts. The
    simulated server runs on the virtual clock, so what is in flight when a proof passes does
    not depend on how loaded the machine is."""
    opts = dict(preset="release", initial=8, verifications=16, top_k=3, samples_per_prompt=2, rounds=1, request_n=1)
    saved = 0
    for problem in make_problems(4, seed=9, mix="basic"):
        runs = {}
        for early in (False, True):
            provider = SimProvider(seed=0, server=ServerModel(time_scale=1.0, slots=32))
            ctx = SearchContext(Model(provider, cache=InMemoryCallCache(), max_concurrency=64,
                                      endpoint=f"stop-early-{early}-{time.monotonic_ns()}"),
                                gen_sampling=SAMPLING, verify_sampling=SAMPLING, recorder=MemoryRecorder())
            strategy = make_strategy("pool", **opts, **({"stop_early": True} if early else {}))
            result, _ = run_virtual(strategy.solve(problem, ctx))
            runs[early] = (result, ctx.generator.accounting.by_tag["verify"].samples)
        (plain, plain_spent), (early, early_spent) = runs[False], runs[True]
        assert (early.best.id, early.stop_reason) == (plain.best.id, plain.stop_reason)
        assert early_spent <= plain_spent
        saved += plain_spent - early_spent
    assert saved > 0


def test_a_budget_stop_before_any_verification_falls_back_to_the_self_score(sim_server, problems):
    server, _ = sim_server
    result = solve(make_strategy("pool", **dict(NO_ACCEPT, budget_tokens=1)), problems[0], context(server.base_url))
    assert result.stop_reason == "budget_tokens"
    verifiable = [p for p in result.proofs if p.verifiable]
    assert result.best is not None and result.score_kind == "self"
    assert result.score == max(p.self_score for p in verifiable if p.self_score is not None)
    assert result.meta["report"]["chosen_by"] == "self_score"

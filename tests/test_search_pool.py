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
from proofloop.serving import ServerThread
from proofloop.sim import make_problems, true_quality
from proofloop.sim.server import ServerModel, build_faults, make_sim_app
from support.servers import fast_model

SAMPLING = Sampling(seed=0, max_tokens=200_000)
SMALL = dict(preset="release", initial=6, verifications=6, top_k=2, samples_per_prompt=2, rounds=2)
NO_ACCEPT = dict(SMALL, pass_min_valid=10**6)  # no proof can pass: every round runs


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
        assert result.stop_reason in ("accepted", "rounds")
        if options is NO_ACCEPT or name == "adaptive":
            assert result.stop_reason == "rounds" and report["rounds_reached"] == 2
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
    assert result.stop_reason.startswith("budget:") and "token" in result.stop_reason
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
    assert all(r.stop_reason.startswith("budget: run token budget") for r in results)
    assert run_budget.spent_tokens >= 150_000


def test_wall_time_budget_cancels_in_flight_calls():
    # a slow server: one generation takes minutes of simulated time at this scale
    with ServerThread(make_sim_app(seed=0, server=ServerModel(time_scale=50.0))) as server:
        ctx = context(server.base_url)
        t0 = time.monotonic()
        result = solve(make_strategy("pool", **dict(SMALL, budget_wall_s=0.5)), make_problems(1)[0], ctx)
        took = time.monotonic() - t0
    assert result.stop_reason.startswith("budget:") and "wall-time" in result.stop_reason
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
    assert result.stop_reason.startswith("budget: problem cost budget")
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
    assert result.stop_reason == "rounds" and result.best is not None
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

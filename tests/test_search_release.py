"""The released script's execution scheme (search/release.py) against streaming `pool`: same
parameters and the same model outputs give the same selections; streaming changes time only."""

from __future__ import annotations

import asyncio
import time

import pytest

from proofloop.models.base import Sampling
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.wrapper import Model
from proofloop.search import make_strategy
from proofloop.search.base import MemoryRecorder, SearchContext
from proofloop.search.release import run_release, run_stage
from proofloop.sim.http import ServerThread
from proofloop.sim import make_problems
from proofloop.sim.provider import SimProvider
from proofloop.sim.app import make_sim_app
from support.servers import fast_model

BIG = 200_000
OPTIONS = {
    "accepting": dict(preset="release", initial=6, verifications=6, top_k=2, samples_per_prompt=2, rounds=2),
    "all_rounds": dict(preset="release", initial=6, verifications=4, top_k=3, samples_per_prompt=2, rounds=2,
                       accept=False),
}


def _ctx(model) -> SearchContext:
    s = Sampling(max_tokens=BIG, seed=model.seed_for_test)
    return SearchContext(model, gen_sampling=s, verify_sampling=s, meta_sampling=s, recorder=MemoryRecorder(), seed=5)


def _http_model(url: str, cache, namespace: str):
    m = fast_model(url, model="sim-1", cache=cache, namespace=namespace, max_concurrency=10_000,
                   endpoint=f"{url}#{time.monotonic_ns()}")
    m.seed_for_test = None  # the server samples anew per request: equal outputs can only come from the cache
    return m


def _decisions(results):
    return [(r.best.id if r.best else None, r.score, r.stop_reason, sorted(p.id for p in r.proofs),
             sorted(a.id for v in r.verifications.values() for a in v.analyses)) for r in results]


async def _pool(problems, ctx, options):
    strategy = make_strategy("pool", **options)
    return await asyncio.gather(*(strategy.solve(p, ctx) for p in problems))


@pytest.mark.parametrize("case", sorted(OPTIONS))
@pytest.mark.parametrize("first", ["pool", "release"])
def test_replaying_one_schemes_outputs_in_the_other_gives_the_same_selections(case, first):
    options = OPTIONS[case]
    params = make_strategy("pool", **options).params
    problems = make_problems(3, seed=8, mix="hard")
    log: list[dict] = []
    with ServerThread(make_sim_app(seed=0, request_log=log)) as server:
        cache = InMemoryCallCache()
        run = {"pool": lambda ctx: _pool(problems, ctx, options),
               "release": lambda ctx: run_release(problems, ctx, params, batch=5, gen_workers=2, verify_workers=3)}
        second = "release" if first == "pool" else "pool"
        a = asyncio.run(run[first](_ctx(_http_model(server.base_url, cache, "ns"))))
        sent = len(log)
        assert sent > 0
        b = asyncio.run(run[second](_ctx(_http_model(server.base_url, cache, "ns"))))
        assert len(log) == sent, "the replay asked the server for an output the first run never needed"
    assert _decisions(a) == _decisions(b)
    if case == "all_rounds":
        assert all(r.stop_reason == "round_limit" and len(r.proofs) == 6 + 2 * 3 * 2 for r in a)


def test_with_seeded_sampling_both_schemes_get_the_same_outputs_without_sharing_a_cache():
    problems = make_problems(2, seed=9, mix="hard")
    options = OPTIONS["all_rounds"]
    params = make_strategy("pool", **options).params

    def model():
        m = Model(SimProvider(seed=2), cache=InMemoryCallCache(), namespace="ns", max_concurrency=10_000,
                  endpoint=f"sim#{time.monotonic_ns()}")
        m.seed_for_test = 0
        return m

    stream_model, staged_model = model(), model()
    a = asyncio.run(_pool(problems, _ctx(stream_model), options))
    log: list[dict] = []
    b = asyncio.run(run_release(problems, _ctx(staged_model), params, stage_log=log))
    assert _decisions(a) == _decisions(b)
    # one request per prompt and proof when streaming; one per sample in the staged scheme
    assert stream_model.accounting.total.calls < staged_model.accounting.total.calls
    assert stream_model.accounting.total.samples == staged_model.accounting.total.samples
    assert [(s["stage"], s["round"]) for s in log] == [("generate", 0), ("verify", 0), ("generate", 1),
                                                       ("verify", 1), ("generate", 2), ("verify", 2)]
    assert log[0]["requests"] == 2 * 6 and log[1]["requests"] == 2 * 6 * 4


def test_release_stage_sends_whole_batches_and_waits_for_all_of_each():
    state = {"in_flight": 0, "peak": 0}
    batches_started: list[int] = []

    def request(i):
        async def go():
            if i % 4 == 0:
                batches_started.append(i)
            state["in_flight"] += 1
            state["peak"] = max(state["peak"], state["in_flight"])
            await asyncio.sleep(0.001 * (i % 4))  # uneven: the batch waits for its slowest
            state["in_flight"] -= 1
        return go

    asyncio.run(run_stage([request(i) for i in range(20)], workers=2, batch=4))
    assert state["peak"] == 8  # 2 workers x a whole batch of 4 at once
    assert batches_started == [0, 4, 8, 12, 16]


def test_release_scheme_refuses_meta_verification():
    params = make_strategy("pool", preset="release", meta=2).params
    with pytest.raises(ValueError):
        asyncio.run(run_release(["p"], SearchContext(Model(SimProvider())), params))


def test_release_sends_no_priority_and_logs_stages_on_the_given_clock():
    from proofloop.sim.server import ServerModel, run_virtual

    server = ServerModel(time_scale=1)  # on the virtual clock: exact simulated seconds
    seen: list = []

    class Noting(SimProvider):
        async def complete(self, messages, sampling, n):
            seen.append(sampling.extra)
            return await super().complete(messages, sampling, n)

    model = Model(Noting(server=server, seed=2), cache=InMemoryCallCache(), max_concurrency=10_000,
                  endpoint=f"sim#{time.monotonic_ns()}")
    model.seed_for_test = 0
    params = make_strategy("pool", **OPTIONS["all_rounds"]).params
    problems = make_problems(2, seed=9, mix="hard")

    async def go():
        log: list[dict] = []
        start = server.now()
        await run_release(problems, _ctx(model), params, stage_log=log, clock=server.now)
        return log, server.now() - start

    (log, simulated), _ = run_virtual(go())
    assert seen and all("priority" not in extra for extra in seen)  # the released script sends none
    # stage seconds are simulated seconds (thousands here); on the virtual clock the client's
    # own CPU takes no simulated time, so the stages account for the whole run
    assert sum(s["seconds"] for s in log) == pytest.approx(simulated)
    assert simulated > 100

"""The simulated server's timing model and the in-process SimProvider."""

from __future__ import annotations

import asyncio

import pytest

from proofloop.errors import BadRequestError, ContextWindowError
from proofloop.models.base import Provider, Sampling
from proofloop.protocol.templates import generation_messages, refinement_messages
from proofloop.sim.model import SimModel, make_problems
from proofloop.sim.provider import SimProvider
from proofloop.sim.server import ServerModel, Work, lower_bound_makespan

FAST = dict(prefill_tps=1e12, decode_tps_total=1e12)  # isolate one effect at a time
PROBLEM = make_problems(1, seed=4)[0]


def blocks(tag: str, tokens: int = 100) -> list[tuple[bytes, int]]:
    return [(f"{tag}:{i}".encode(), tokens // 4) for i in range(4)]


async def test_slots_bound_concurrency_and_queue_the_rest():
    srv = ServerModel(slots=2, decode_tps_seq=10, time_scale=1000, **FAST)
    infos = await asyncio.gather(*(srv.run(blocks(f"p{i}"), [100]) for i in range(4)))
    ends = sorted(i.finished_at for i in infos)
    assert ends == pytest.approx([10, 10, 20, 20], abs=1.0)
    assert srv.stats.max_active == 2 and srv.stats.requests == 4
    assert max(i.queued_s for i in infos) == pytest.approx(10, abs=1.0)


async def test_aggregate_decode_rate_is_shared():
    srv = ServerModel(slots=16, decode_tps_seq=10, decode_tps_total=20, prefill_tps=1e12, time_scale=1000)
    info = await srv.run(blocks("x"), [100, 100, 100, 100])  # 4 sequences share 20 tok/s
    assert info.finished_at == pytest.approx(20, abs=1.0)
    bound = srv.lower_bound(Work(prefill_tokens=0, decode_tokens=400, critical_path=[(0, 100)]))
    assert bound == pytest.approx(20) and info.latency_s >= bound - 1.0


async def test_prefill_rate_and_prefix_cache():
    srv = ServerModel(slots=8, prefill_tps=100, decode_tps_seq=1e9, decode_tps_total=1e12, time_scale=1000)
    first = await srv.run(blocks("same", 1000), [1])
    assert first.cached_tokens == 0 and first.prefill_done_at - first.arrived_at == pytest.approx(10, abs=0.5)
    again = await srv.run(blocks("same", 1000), [1])
    assert again.cached_tokens == 1000 and again.latency_s < 0.5
    many = await srv.run(blocks("many", 1000), [1, 1, 1])  # n=3 in one request: one prefill
    assert many.cached_tokens == 0 and many.latency_s == pytest.approx(10, abs=0.5)
    assert srv.stats.prefill_tokens == 2000 and srv.stats.cached_tokens == 1000


async def test_shared_prefix_between_generation_and_refinement_prompts():
    sim = SimModel()
    srv = ServerModel(time_scale=1e5)
    gen = generation_messages(PROBLEM)
    out = sim.respond(gen, max_tokens=10**6)[0].text
    ref = refinement_messages(PROBLEM, [(out, ["Here is my evaluation of the solution: fine."])])
    await srv.run(sim.prompt_blocks(gen), [1])
    info = await srv.run(sim.prompt_blocks(ref), [1])
    assert 0 < info.cached_tokens < info.prompt_tokens
    assert info.prompt_tokens == sim.prompt_tokens(ref)


async def test_cache_capacity_evicts_old_prefixes():
    srv = ServerModel(cache_tokens=150, time_scale=1e5, **dict(FAST, decode_tps_seq=1e9))
    await srv.run(blocks("a"), [1])
    await srv.run(blocks("b"), [1])  # pushes most of a out
    assert (await srv.run(blocks("a"), [1])).cached_tokens < 100


async def test_cancelled_request_frees_its_slot():
    srv = ServerModel(slots=1, decode_tps_seq=10, time_scale=1000, **FAST)
    long = asyncio.create_task(srv.run(blocks("long"), [10_000]))
    await asyncio.sleep(0.005)
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    info = await srv.run(blocks("short"), [50])
    assert info.latency_s == pytest.approx(5, abs=1.0)


async def test_makespan_respects_the_lower_bound():
    srv = ServerModel(slots=4, prefill_tps=2000, decode_tps_seq=20, decode_tps_total=50, time_scale=2000)
    lengths = [[200, 300], [100], [400, 50, 50], [250], [120, 80]]
    infos = await asyncio.gather(*(srv.run(blocks(f"w{i}", 400), ls) for i, ls in enumerate(lengths)))
    makespan = max(i.finished_at for i in infos)
    work = Work(prefill_tokens=2000, decode_tokens=sum(map(sum, lengths)), critical_path=[(400, 400)])
    bound = srv.lower_bound(work)
    assert bound == pytest.approx(1550 / 50)
    assert bound - 1.0 <= makespan <= bound * 1.3
    assert lower_bound_makespan(work, slots=1, prefill_tps=2000, decode_tps_seq=20, decode_tps_total=50) \
        == pytest.approx(1550 / 20)


def test_bad_server_settings_are_rejected():
    with pytest.raises(ValueError):
        ServerModel(slots=0)
    with pytest.raises(ValueError):
        ServerModel(time_scale=0)


# ---------------------------------------------------------------- provider


async def test_provider_contract_usage_and_replay():
    p = SimProvider(server=ServerModel(time_scale=1e5), seed=3, max_n=8)
    assert isinstance(p, Provider) and (p.name, p.model, p.max_n) == ("sim", "sim-1", 8)
    msgs = generation_messages(PROBLEM)
    r = await p.complete(msgs, Sampling(max_tokens=10**6, seed=0), 4)
    assert len(r.completions) == 4
    assert r.usage.prompt_tokens == p.sim.prompt_tokens(msgs)  # billed once for n = 4
    assert r.usage.completion_tokens == sum(c.completion_tokens for c in r.completions)
    assert r.usage.cached_prompt_tokens == 0
    again = await p.complete(msgs, Sampling(max_tokens=10**6, seed=0), 4)
    assert [c.text for c in again.completions] == [c.text for c in r.completions]
    assert again.usage.cached_prompt_tokens == again.usage.prompt_tokens  # same prompt: from the cache
    one = await p.complete(msgs, Sampling(max_tokens=10**6, seed=2), 1)
    assert one.completions[0].text == r.completions[2].text  # seed s = sample number s


async def test_provider_without_seed_samples_afresh_and_checks_limits():
    p = SimProvider(max_n=2, context_window=100)
    msgs = [{"role": "user", "content": "Prove that 1 + 1 = 2. ## Self Evaluation"}]
    a = await p.complete(msgs, Sampling(max_tokens=50, seed=None), 1)
    b = await p.complete(msgs, Sampling(max_tokens=50, seed=None), 1)
    assert (a.completions[0].text, a.completions[0].reasoning) != (b.completions[0].text, b.completions[0].reasoning)
    with pytest.raises(BadRequestError):
        await p.complete(msgs, Sampling(max_tokens=50), 3)
    with pytest.raises(ContextWindowError):
        await p.complete(msgs, Sampling(max_tokens=1000), 1)
    with pytest.raises(BadRequestError):
        await p.complete([], Sampling(max_tokens=50), 1)

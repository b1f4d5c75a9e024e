"""The simulated server's timing model and the in-process SimProvider."""

from __future__ import annotations

import asyncio

import pytest

from proofloop.errors import BadRequestError, ContextWindowError
from proofloop.models.base import Provider, Sampling
from proofloop.models.limiter import PriorityLimiter, freeing_sequences
from proofloop.protocol.templates import generation_messages, refinement_messages
from proofloop.sim.model import SimModel, make_problems
from proofloop.sim.provider import SimProvider
from proofloop.sim.server import ServerModel, Work, lower_bound_makespan, run_virtual

FAST = dict(prefill_tps=1e12, decode_tps_total=1e12)  # isolate one effect at a time
EXACT = 1e-6  # simulated seconds: the virtual clock is exact up to float rounding and 1e-12 s prefills
PROBLEM = make_problems(1, seed=4)[0]


def blocks(tag: str, tokens: int = 100) -> list[tuple[bytes, int]]:
    return [(f"{tag}:{i}".encode(), tokens // 4) for i in range(4)]


def on_virtual_clock(test):
    """Run an async test on the simulator's virtual clock: ServerModels at time_scale 1 read
    exact simulated seconds, sleeps take no real time, and machine load changes nothing."""

    def run() -> None:
        run_virtual(test())

    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


@on_virtual_clock
async def test_slots_bound_concurrency_and_queue_the_rest():
    srv = ServerModel(slots=2, decode_tps_seq=10, time_scale=1, **FAST)
    infos = await asyncio.gather(*(srv.run(blocks(f"p{i}"), [100]) for i in range(4)))
    assert [i.finished_at for i in infos] == pytest.approx([10, 10, 20, 20], abs=EXACT)
    assert [i.queued_s for i in infos] == pytest.approx([0, 0, 10, 10], abs=EXACT)
    assert (srv.stats.max_active, srv.stats.max_queued, srv.stats.requests) == (2, 2, 4)  # 2 run, 2 wait


@on_virtual_clock
async def test_each_sequence_reports_its_own_end():
    """on_sequence_done is called as each sequence finishes, not when the request does: the
    short sample at 1 s, the long one at 10 s (what streamed finish_reasons tell a client)."""
    srv = ServerModel(slots=4, decode_tps_seq=10, time_scale=1, **FAST)
    ended: list[float] = []
    info = await srv.run(blocks("x"), [10, 100], on_sequence_done=lambda: ended.append(srv.now()))
    assert ended == pytest.approx([1, 10], abs=EXACT) and info.finished_at == pytest.approx(10, abs=EXACT)


@on_virtual_clock
async def test_aggregate_decode_rate_is_shared():
    srv = ServerModel(slots=16, decode_tps_seq=10, decode_tps_total=20, prefill_tps=1e12, time_scale=1)
    info = await srv.run(blocks("x"), [100, 100, 100, 100])  # 4 sequences share 20 tok/s
    assert info.finished_at == pytest.approx(20, abs=EXACT)
    bound = srv.lower_bound(Work(prefill_tokens=0, decode_tokens=400, critical_path=[(0, 100)]))
    assert bound == pytest.approx(20)  # this schedule is optimal: it meets the bound


@on_virtual_clock
async def test_prefill_rate_and_prefix_cache():
    srv = ServerModel(slots=8, prefill_tps=100, decode_tps_seq=1e9, decode_tps_total=1e12, time_scale=1)
    first = await srv.run(blocks("same", 1000), [1])
    assert first.cached_tokens == 0 and first.prefill_done_at - first.arrived_at == pytest.approx(10, abs=EXACT)
    again = await srv.run(blocks("same", 1000), [1])
    assert again.cached_tokens == 1000 and again.latency_s == pytest.approx(0, abs=EXACT)  # nothing to prefill
    many = await srv.run(blocks("many", 1000), [1, 1, 1])  # n=3 in one request: one prefill
    assert many.cached_tokens == 0 and many.latency_s == pytest.approx(10, abs=EXACT)
    assert srv.stats.prefill_tokens == 2000 and srv.stats.cached_tokens == 1000


@on_virtual_clock
async def test_shared_prefix_between_generation_and_refinement_prompts():
    sim = SimModel()
    srv = ServerModel(time_scale=1)
    gen = generation_messages(PROBLEM)
    out = sim.respond(gen, max_tokens=10**6)[0].text
    ref = refinement_messages(PROBLEM, [(out, ["Here is my evaluation of the solution: fine."])])
    gen_blocks, ref_blocks = sim.prompt_blocks(gen), sim.prompt_blocks(ref)
    shared = 0
    for (h_gen, tokens), (h_ref, _) in zip(gen_blocks, ref_blocks):
        if h_gen != h_ref:
            break
        shared += tokens
    await srv.run(gen_blocks, [1])
    info = await srv.run(ref_blocks, [1])
    assert 0 < shared < info.prompt_tokens  # the two prompts do share a proper prefix
    assert info.cached_tokens == shared
    assert info.prompt_tokens == sim.prompt_tokens(ref)


@on_virtual_clock
async def test_cache_capacity_evicts_old_prefixes():
    srv = ServerModel(cache_tokens=150, time_scale=1, **dict(FAST, decode_tps_seq=1e9))
    await srv.run(blocks("a"), [1])  # 4 blocks of 25 tokens
    await srv.run(blocks("b"), [1])  # 200 > 150 tokens: a's first two blocks (the oldest) go
    assert (await srv.run(blocks("b"), [1])).cached_tokens == 100
    assert (await srv.run(blocks("a"), [1])).cached_tokens == 0  # its first block is gone: no prefix hit


@on_virtual_clock
async def test_cancelled_request_frees_its_slot():
    srv = ServerModel(slots=1, decode_tps_seq=10, time_scale=1, **FAST)
    long = asyncio.create_task(srv.run(blocks("long"), [10_000]))
    await asyncio.sleep(1)
    long.cancel()
    with pytest.raises(asyncio.CancelledError):
        await long
    info = await srv.run(blocks("short"), [50])
    assert (info.arrived_at, info.queued_s) == (pytest.approx(1), pytest.approx(0, abs=EXACT))
    assert info.latency_s == pytest.approx(5, abs=EXACT)


@on_virtual_clock
async def test_makespan_respects_the_lower_bound():
    srv = ServerModel(slots=4, prefill_tps=2000, decode_tps_seq=20, decode_tps_total=50, time_scale=1)
    lengths = [[200, 300], [100], [400, 50, 50], [250], [120, 80]]
    infos = await asyncio.gather(*(srv.run(blocks(f"w{i}", 400), ls) for i, ls in enumerate(lengths)))
    makespan = max(i.finished_at for i in infos)
    work = Work(prefill_tokens=2000, decode_tokens=sum(map(sum, lengths)), critical_path=[(400, 400)])
    bound = srv.lower_bound(work)
    assert bound == pytest.approx(1550 / 50)
    assert bound <= makespan <= bound * 1.3
    assert lower_bound_makespan(work, slots=1, prefill_tps=2000, decode_tps_seq=20, decode_tps_total=50) \
        == pytest.approx(1550 / 20)


def test_bad_server_settings_are_rejected():
    with pytest.raises(ValueError):
        ServerModel(slots=0)
    with pytest.raises(ValueError):
        ServerModel(time_scale=0)


# ---------------------------------------------------------------- provider


@on_virtual_clock
async def test_provider_contract_usage_and_replay():
    p = SimProvider(server=ServerModel(time_scale=1), seed=3, max_n=8)
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
    lim = PriorityLimiter(4)  # a request holding sequence slots gets each back as its sample ends
    async with lim.slot(4) as held:
        with freeing_sequences(held):
            await p.complete(msgs, Sampling(max_tokens=10**6, seed=4), 4)
        assert held.left == 0


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


# ---------------------------------------------------------------- priority scheduling


@on_virtual_clock
async def test_priority_orders_the_queue_lower_first_fifo_among_equals():
    srv = ServerModel(slots=1, decode_tps_seq=10, time_scale=1, **FAST)
    # The first request takes the only slot; the rest queue: -1 first, then the two 0s in
    # arrival order, then 5, whatever order they arrived in.
    runs = [srv.run(blocks("r0"), [100]), srv.run(blocks("r1"), [100], priority=5),
            srv.run(blocks("r2"), [100]), srv.run(blocks("r3"), [100], priority=-1),
            srv.run(blocks("r4"), [100], priority=0)]
    ends = [i.finished_at for i in await asyncio.gather(*runs)]
    assert ends == pytest.approx([10, 50, 30, 20, 40], abs=EXACT)


@on_virtual_clock
async def test_priority_never_preempts_a_running_sequence():
    srv = ServerModel(slots=2, decode_tps_seq=10, time_scale=1, **FAST)
    running = asyncio.create_task(srv.run(blocks("bulk"), [100, 100], priority=9))
    await asyncio.sleep(1)  # both bulk sequences hold the slots
    urgent = await srv.run(blocks("urgent"), [10], priority=-9)
    bulk = await running
    assert bulk.finished_at == pytest.approx(10, abs=EXACT)  # not slowed or restarted
    assert urgent.arrived_at == pytest.approx(1, abs=EXACT)
    assert urgent.queued_s == pytest.approx(9, abs=EXACT)  # waited for a free slot
    assert urgent.finished_at == pytest.approx(11, abs=EXACT)


@on_virtual_clock
async def test_a_request_with_n_samples_keeps_its_place_and_cancelling_it_frees_the_queue():
    srv = ServerModel(slots=2, decode_tps_seq=10, time_scale=1, **FAST)
    first = asyncio.create_task(srv.run(blocks("a"), [100, 100]))  # both slots until t = 10
    await asyncio.sleep(1)
    low = asyncio.create_task(srv.run(blocks("low"), [100, 100], priority=1))
    doomed = asyncio.create_task(srv.run(blocks("doomed"), [100, 100, 100], priority=-1))
    await asyncio.sleep(1)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    high = await srv.run(blocks("high"), [50, 50], priority=0)
    assert high.finished_at == pytest.approx(15, abs=EXACT)  # ahead of `low`, after the cancelled one left
    assert (await low).finished_at == pytest.approx(25, abs=EXACT)  # both its sequences waited for `high`
    assert (await first).finished_at == pytest.approx(10, abs=EXACT)


async def test_priority_must_be_an_integer():
    srv = ServerModel(time_scale=1e5)
    for bad in (1.5, "1", True):
        with pytest.raises(TypeError):
            await srv.run(blocks("x"), [1], priority=bad)


@on_virtual_clock
async def test_provider_reads_the_priority_from_sampling_extra():
    p = SimProvider(server=ServerModel(slots=1, decode_tps_seq=1000, time_scale=1, **FAST), seed=0)
    msgs = [generation_messages(q) for q in make_problems(3, seed=8)]
    base = Sampling(max_tokens=10**6, seed=0)
    order: list[int] = []

    async def call(i: int, priority: int | None) -> None:
        s = base if priority is None else Sampling(max_tokens=10**6, seed=0, extra={"priority": priority})
        await p.complete(msgs[i], s, 1)
        order.append(i)

    await asyncio.gather(call(0, None), call(1, None), call(2, -1))
    assert order == [0, 2, 1]
    with pytest.raises(BadRequestError):
        await p.complete(msgs[0], Sampling(max_tokens=10**6, extra={"priority": "high"}), 1)


class PriorityLog(ServerModel):
    """A ServerModel that records the priority each request reached it with."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.priorities: list[int] = []

    async def run(self, blocks, lengths, priority=0):
        self.priorities.append(priority)
        return await super().run(blocks, lengths, priority)


def test_http_body_priority_reaches_the_server_model_and_a_bad_one_is_a_400():
    # The queue order itself is tested above on the virtual clock; over real HTTP we check
    # only what cannot depend on timing: the body field arrives as the request's priority.
    import openai

    from proofloop.sim import http as serving
    from proofloop.sim.app import make_sim_app

    srv = PriorityLog(time_scale=1e6)
    msgs = generation_messages(make_problems(1, seed=9)[0])
    with serving.ServerThread(make_sim_app(server=srv)) as s:
        c = openai.OpenAI(base_url=s.base_url, api_key="x", max_retries=0, timeout=60)
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="sim-1", messages=msgs, extra_body={"priority": 0.5})
        for priority in (3, -3):
            c.chat.completions.create(model="sim-1", messages=msgs, seed=0, max_tokens=10**6,
                                      extra_body={"priority": priority})
        c.chat.completions.create(model="sim-1", messages=msgs, seed=0, max_tokens=10**6)
    assert srv.priorities == [3, -3, 0]  # the 400 never reached the server model; no field: 0

"""The priority-ordered concurrency cap (models/limiter.py) and its use in the Model wrapper,
with sequence slots given back as each sample ends (sequence_finished)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofloop.models.base import Completion, ProviderResponse, Sampling, Usage
from proofloop.models.limiter import PriorityLimiter, freeing_sequences, sequence_finished
from proofloop.models.wrapper import Model, endpoint_limiter


async def _queue_behind_holder(lim: PriorityLimiter, calls, hold_weight: int = None):
    """Hold the whole cap, queue `calls` [(name, weight, priority)], release: admission order."""
    order = []

    async def call(name, weight, prio):
        async with lim.slot(weight, prio):
            order.append(name)
            await asyncio.sleep(0)

    await lim.acquire(hold_weight or lim.capacity)
    tasks = [asyncio.create_task(call(*c)) for c in calls]
    await asyncio.sleep(0)
    lim.release(hold_weight or lim.capacity)
    await asyncio.gather(*tasks)
    return order


def test_waiters_are_admitted_by_priority_then_arrival():
    calls = [("a5", 1, 5), ("b0", 1, None), ("c-3", 1, -3), ("d0", 1, 0), ("e5", 1, 5)]
    order = asyncio.run(_queue_behind_holder(PriorityLimiter(1), calls))
    assert order == ["c-3", "b0", "d0", "a5", "e5"]


def test_a_heavy_waiter_at_the_head_is_not_overtaken_by_light_ones():
    # cap 4: the head wants 4, the others 1 each; they must wait until the head ran
    lim = PriorityLimiter(4)
    order = asyncio.run(_queue_behind_holder(lim, [("heavy", 4, 0), ("l1", 1, 1), ("l2", 1, 1)]))
    assert order == ["heavy", "l1", "l2"]
    assert lim.in_use == 0


def test_a_request_heavier_than_the_cap_runs_alone():
    async def main():
        lim = PriorityLimiter(3)
        async with lim.slot(10):
            assert lim.in_use == 10
            waiter = asyncio.create_task(lim.acquire(1))
            await asyncio.sleep(0)
            assert not waiter.done()  # nothing joins an over-weight request
        await waiter
        assert lim.in_use == 1

    asyncio.run(main())


def test_a_cancelled_waiter_leaves_no_trace():
    async def main():
        lim = PriorityLimiter(2)
        await lim.acquire(2)
        blocked_head = asyncio.create_task(lim.acquire(2, priority=-1))
        small = asyncio.create_task(lim.acquire(1, priority=0))
        await asyncio.sleep(0)
        blocked_head.cancel()
        await asyncio.sleep(0)
        assert lim.waiting == 1
        lim.release(2)
        await small
        assert lim.in_use == 1 and lim.waiting == 0

    asyncio.run(main())


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        PriorityLimiter(0)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 6),
       calls=st.lists(st.tuples(st.integers(1, 8), st.one_of(st.none(), st.integers(-3, 3)), st.integers(0, 3),
                                st.booleans(), st.integers(0, 9)), max_size=25))
def test_never_over_capacity_and_everything_is_released(capacity, calls):
    """Whatever the weights, priorities, holding times, cancellations and units given back
    early (samples that ended; more than are held, too): the cap holds (an over-weight request
    only alone), every call that is not cancelled runs, nothing leaks."""

    async def main():
        lim = PriorityLimiter(capacity)
        ran, seen = [], []

        async def call(i, weight, prio, hold, early):
            async with lim.slot(weight, prio) as held:
                seen.append((lim.in_use, weight))
                ran.append(i)
                for k in range(max(hold, early)):
                    if k < early:
                        held.give_back(1)
                    await asyncio.sleep(0)
                assert held.left == max(0, weight - early)

        tasks = [asyncio.create_task(call(i, w, p, h, e)) for i, (w, p, h, _, e) in enumerate(calls)]
        await asyncio.sleep(0)
        for t, (*_, cancel, _) in zip(tasks, calls):
            if cancel:
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return lim, ran, seen, tasks

    lim, ran, seen, tasks = asyncio.run(main())
    assert lim.in_use == 0 and lim.waiting == 0
    for in_use, weight in seen:
        assert in_use <= capacity or in_use == weight
    assert {i for i, t in enumerate(tasks) if not t.cancelled()} <= set(ran)


class _Recorder:
    """A provider that records the order its requests arrive in and how many samples are in flight."""

    name, model, max_n = "rec", "rec-1", None

    def __init__(self):
        self.arrived, self.in_flight, self.most = [], 0, 0
        self.gate = asyncio.Event()

    async def complete(self, messages, sampling, n):
        self.arrived.append(messages[-1]["content"])
        self.in_flight += n
        self.most = max(self.most, self.in_flight)
        await self.gate.wait()
        self.in_flight -= n
        return ProviderResponse([Completion(text="ok") for _ in range(n)], Usage(1, 1))


async def _until(condition, passes: int = 10_000) -> None:
    """Let the event loop run until `condition` holds (passes of the loop, not seconds)."""
    for _ in range(passes):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_the_model_releases_waiting_calls_in_client_priority_order_and_caps_sequences():
    async def main():
        rec = _Recorder()
        model = Model(rec, max_concurrency=100, max_sequences=4, endpoint="limiter-test")
        first = asyncio.create_task(model.sample([{"role": "user", "content": "first"}], Sampling(), 4))
        await _until(lambda: rec.arrived == ["first"])
        calls = [asyncio.create_task(model.sample([{"role": "user", "content": name}],
                                                  Sampling(client_priority=p), 2))
                 for name, p in (("late", 9), ("soon", 1), ("mid", 5))]
        await _until(lambda: endpoint_limiter("limiter-test", 4, "sequences").waiting == 3)
        assert rec.arrived == ["first"]  # 4 sequences in flight: the cap is full
        rec.gate.set()
        await asyncio.gather(first, *calls)
        return rec

    rec = asyncio.run(main())
    assert rec.arrived == ["first", "soon", "mid", "late"]
    assert rec.most == 4


def test_client_priority_is_not_part_of_the_call_key():
    assert Sampling(client_priority=3).as_key() == Sampling().as_key()


def test_an_urgent_call_that_fits_goes_in_at_once_past_a_blocked_head():
    async def main():
        lim = PriorityLimiter(4)
        await lim.acquire(3)
        blocked = asyncio.create_task(lim.acquire(4, priority=5))  # waits for the whole cap
        await asyncio.sleep(0)
        urgent = asyncio.create_task(lim.acquire(1, priority=0))  # ranked first, and 1 slot is free
        await asyncio.sleep(0)
        assert urgent.done() and not blocked.done() and lim.in_use == 4
        lim.release(3), lim.release(1)
        await blocked
        assert lim.in_use == 4

    asyncio.run(main())


class _EndsEarly(_Recorder):
    """A provider whose requests' samples all end but one at once (sequence_finished), the last
    when the gate opens: what a streamed n-sample request looks like to the client."""

    async def complete(self, messages, sampling, n):
        self.arrived.append(messages[-1]["content"])
        for _ in range(n - 1):
            sequence_finished()
        await self.gate.wait()
        sequence_finished()
        return ProviderResponse([Completion(text="ok") for _ in range(n)], Usage(1, 1))


def test_a_sample_that_ends_frees_its_sequence_slot_before_its_request_ends():
    """max_sequences 4: a 4-sample request whose samples end but one leaves 3 slots free while
    it runs, so a 3-sample request goes in beside it; without sequence_finished it waits."""

    async def main(provider, endpoint):
        model = Model(provider, max_concurrency=100, max_sequences=4, endpoint=endpoint)
        first = asyncio.create_task(model.sample([{"role": "user", "content": "first"}], Sampling(), 4))
        await _until(lambda: provider.arrived == ["first"])
        second = asyncio.create_task(model.sample([{"role": "user", "content": "second"}], Sampling(), 3))
        for _ in range(50):
            await asyncio.sleep(0)
        arrived = list(provider.arrived)
        provider.gate.set()
        await asyncio.gather(first, second)
        return arrived, endpoint_limiter(endpoint, 4, "sequences").in_use

    early, left = asyncio.run(main(_EndsEarly(), "ends-early"))
    assert early == ["first", "second"] and left == 0
    held, left = asyncio.run(main(_Recorder(), "ends-together"))
    assert held == ["first"] and left == 0


def test_sequence_finished_outside_a_capped_request_does_nothing():
    sequence_finished()  # no request holds sequence slots here

    async def main():
        lim = PriorityLimiter(2)
        async with lim.slot(2) as held:
            with freeing_sequences(held):
                sequence_finished()
                assert (held.left, lim.in_use) == (1, 1)
            sequence_finished()  # after the block: no longer this holder's
            assert held.left == 1
        return lim.in_use

    assert asyncio.run(main()) == 0

"""LoopBatch (models/batches.py) and what the model wrapper does with it: the look-ups and the
stores of requests that finish together reach the call cache as one, and no sample is handed
back before its call is stored."""

import asyncio

import pytest

from proofloop.models.base import Completion, ProviderResponse, Sampling, Usage
from proofloop.models.batches import LoopBatch
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.wrapper import Model, RetryPolicy


class Upper:
    def __init__(self, fail_on: str | None = None):
        self.batches: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        if self.fail_on in items:
            raise ValueError(f"cannot do {self.fail_on}")
        return [item.upper() for item in items]


async def test_tasks_that_ask_in_one_pass_are_answered_by_one_call_in_their_order():
    do = Upper()
    batch = LoopBatch(do)
    assert await asyncio.gather(*(batch(x) for x in "abcd")) == ["A", "B", "C", "D"]
    assert do.batches == [["a", "b", "c", "d"]]
    assert await batch("e") == "E"  # a later ask: a batch of its own
    assert do.batches[1:] == [["e"]]


async def test_tasks_that_ask_in_different_passes_get_different_calls():
    do = Upper()
    batch = LoopBatch(do)

    async def later(item: str, passes: int) -> str:
        for _ in range(passes):
            await asyncio.sleep(0)
        return await batch(item)

    assert await asyncio.gather(later("a", 0), later("b", 0), later("c", 3)) == ["A", "B", "C"]
    assert do.batches == [["a", "b"], ["c"]]


async def test_a_failed_call_is_raised_in_every_task_of_its_batch():
    batch = LoopBatch(Upper(fail_on="b"))
    results = await asyncio.gather(batch("a"), batch("b"), return_exceptions=True)
    assert [str(r) for r in results] == ["cannot do b", "cannot do b"]
    assert all(isinstance(r, ValueError) for r in results)
    assert await batch("c") == "C"  # the next batch is not affected


async def test_a_call_with_the_wrong_number_of_results_is_an_error_not_a_mix_up():
    batch = LoopBatch(lambda items: items[:1])
    with pytest.raises(RuntimeError, match="a batch of 2 got 1 results"):
        await asyncio.gather(batch("a"), batch("b"))


async def test_a_cancelled_task_leaves_the_others_of_its_batch_their_answer():
    do = Upper()
    batch = LoopBatch(do)
    first, second = asyncio.ensure_future(batch("a")), asyncio.ensure_future(batch("b"))
    await asyncio.sleep(0)  # both are waiting now
    first.cancel()
    assert await second == "B"
    assert first.cancelled() and do.batches == [["a", "b"]]


def test_one_batch_serves_several_event_loops_one_after_another():
    do = Upper()
    batch = LoopBatch(do)

    async def two() -> list[str]:
        return await asyncio.gather(batch("x"), batch("y"))

    assert asyncio.run(two()) == ["X", "Y"] and asyncio.run(two()) == ["X", "Y"]
    assert do.batches == [["x", "y"], ["x", "y"]] and batch.pending == {}


# ---------------------------------------------------------------------------- the wrapper


class Counting(InMemoryCallCache):
    """Counts look-ups and stores; `fail_put` makes every store fail."""

    def __init__(self, fail_put: bool = False):
        super().__init__()
        self.lookups: list[int] = []
        self.puts: list[int] = []
        self.fail_put = fail_put

    def get_many(self, keys):
        self.lookups.append(len(keys))
        return super().get_many(keys)

    def put_many(self, records):
        self.puts.append(len(records))
        if self.fail_put:
            raise OSError("disk full")
        super().put_many(records)


class Answers:
    """Answers every request at once, without a pause."""

    name, model, max_n = "fake", "fake-1", None

    async def complete(self, messages, sampling, n):
        return ProviderResponse([Completion(f"{messages[-1]['content']} {i}") for i in range(n)], Usage(5, n))


def prompts(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"prove {i}"}] for i in range(count)]


async def test_requests_that_finish_together_are_looked_up_and_stored_as_one():
    cache = Counting()
    model = Model(Answers(), cache=cache, max_concurrency=16)
    out = await asyncio.gather(*(model.sample(m, Sampling(), n=4) for m in prompts(8)))
    assert cache.lookups == [32] and cache.puts == [32]
    assert [s.completion.text for s in out[3]] == [f"prove 3 {i}" for i in range(4)]
    again = await asyncio.gather(*(model.sample(m, Sampling(), n=4) for m in prompts(8)))
    assert all(s.cached for samples in again for s in samples) and cache.puts == [32]


async def test_no_sample_is_handed_back_before_its_call_is_stored():
    cache = Counting()
    model = Model(Answers(), cache=cache, max_concurrency=2)  # requests finish at different times

    async def checked(messages):
        samples = await model.sample(messages, Sampling(), n=2)
        assert all(cache.get(s.key) is not None for s in samples)
        return samples

    await asyncio.gather(*(checked(m) for m in prompts(6)))
    assert sum(cache.puts) == 12


async def test_a_failed_store_fails_every_request_of_its_batch_and_hands_nothing_back():
    cache = Counting(fail_put=True)
    model = Model(Answers(), cache=cache, retry=RetryPolicy(max_attempts=1))
    results = await asyncio.gather(*(model.sample(m, Sampling(), n=2) for m in prompts(3)), return_exceptions=True)
    assert [type(r) for r in results] == [OSError] * 3 and len(cache) == 0

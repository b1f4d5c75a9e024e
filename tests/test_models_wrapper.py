"""Model wrapper logic with in-process providers (no HTTP): keys, grouping, cache, accounting."""

import asyncio

import pytest

from proofloop.errors import AuthError, BadRequestError, EmptyResponseError, ServerError
from proofloop.models.base import Completion, ProviderResponse, Sampling, Usage
from proofloop.models.cache import CallRecord, InMemoryCallCache, call_key
from proofloop.models.pricing import Price, cost_usd, price_for
from proofloop.models.wrapper import Model, RetryPolicy

FAST = RetryPolicy(max_attempts=3, initial_s=0.001, max_s=0.01)


class Scripted:
    """Answers 'sample <seed or -> <i>'; `fail` maps a call number (1-based) to an exception."""

    name = "fake"

    def __init__(self, model="fake-1", max_n=None, fail=None, usage=(10, 3)):
        self.model, self.max_n, self.fail, self.usage = model, max_n, fail or {}, usage
        self.calls = []

    async def complete(self, messages, sampling, n):
        self.calls.append((sampling.seed, n))
        err = self.fail.get(len(self.calls))
        if err is not None:
            raise err
        return ProviderResponse([Completion(f"sample {sampling.seed} {i}", completion_tokens=self.usage[1])
                                 for i in range(n)], Usage(self.usage[0], self.usage[1] * n, 4))


def test_call_key_depends_on_every_ingredient(msgs):
    base = call_key("ns", "m", Sampling(), msgs, 0)
    assert len(base) == 64 and base == call_key("ns", "m", Sampling(), [dict(m) for m in msgs], 0)
    variants = [call_key("ns2", "m", Sampling(), msgs, 0), call_key("ns", "m2", Sampling(), msgs, 0),
                call_key("ns", "m", Sampling(temperature=0.5), msgs, 0),
                call_key("ns", "m", Sampling(extra={"top_k": 20}), msgs, 0),
                call_key("ns", "m", Sampling(), msgs + [{"role": "user", "content": "x"}], 0),
                call_key("ns", "m", Sampling(), msgs, 1)]
    assert len({base, *variants}) == 7


async def test_groups_are_consecutive_runs_capped_by_max_n(msgs):
    cache = InMemoryCallCache()
    provider = Scripted(max_n=2)
    model = Model(provider, cache=cache, retry=FAST)
    s = Sampling(seed=100)
    for i in (1, 4):  # pretend indices 1 and 4 were finished by an earlier run
        cache.put_many([CallRecord(key=model.key(msgs, s, i), namespace="", model="fake-1", provider="fake",
                                   sampling=s.as_key(), messages=msgs, index=i, completion=Completion("old"))])
    out = await model.sample(msgs, s, n=7)
    assert [x.index for x in out] == list(range(7))
    assert [x.cached for x in out] == [False, True, False, False, True, False, False]
    # missing 0 | 2,3 | 5,6 -> requests with seed = base seed + first index of the group
    assert provider.calls == [(100, 1), (102, 2), (105, 2)]
    assert out[3].completion.text == "sample 102 1"
    assert model.accounting.total.calls == 3 and model.accounting.total.cached_calls == 2


async def test_cache_hit_sends_nothing_and_accounting_separates_hits(msgs):
    provider = Scripted()
    model = Model(provider, cache=InMemoryCallCache(), retry=FAST, pricing=Price(1.0, 0.5, 2.0))
    first = await model.sample(msgs, Sampling(), n=3, tag="gen")
    again = await model.sample(msgs, Sampling(), n=3, tag="gen")
    assert len(provider.calls) == 1
    assert [a.completion.text for a in again] == [f.completion.text for f in first]
    assert all(a.cached for a in again) and not any(f.cached for f in first)
    t = model.accounting.by_tag["gen"]
    assert (t.calls, t.samples, t.cached_calls, t.prompt_tokens, t.completion_tokens) == (1, 3, 3, 10, 9)
    assert t.cost_usd == pytest.approx(cost_usd(Price(1.0, 0.5, 2.0), prompt_tokens=10, cached_prompt_tokens=4,
                                                completion_tokens=9))


async def test_scheduling_priority_is_not_part_of_the_call_key(msgs):
    plain, urgent = Sampling(seed=7), Sampling(seed=7, extra={"priority": -5})
    assert plain.as_key() == urgent.as_key() == Sampling(seed=7, extra={"priority": 3}).as_key()
    assert call_key("ns", "m", plain, msgs, 0) == call_key("ns", "m", urgent, msgs, 0)
    other = Sampling(seed=7, extra={"priority": -5, "top_k": 20})  # other extra fields still count
    assert other.as_key()["extra"] == {"top_k": 20} and call_key("ns", "m", other, msgs, 0) != call_key(
        "ns", "m", plain, msgs, 0)
    provider = Scripted()
    model = Model(provider, cache=InMemoryCallCache(), retry=FAST)
    first = await model.sample(msgs, urgent, n=2)
    assert provider.calls == [(7, 2)]
    replay = await model.sample(msgs, plain, n=2)  # a resume without the hint finds every sample
    assert len(provider.calls) == 1 and all(r.cached for r in replay)
    assert [r.completion.text for r in replay] == [f.completion.text for f in first]


async def test_record_shares_sum_to_the_request_usage(msgs):
    cache = InMemoryCallCache()
    model = Model(Scripted(usage=(11, 5)), cache=cache, retry=FAST)
    out = await model.sample(msgs, Sampling(), n=3)
    recs = [cache.get(s.key) for s in out]
    assert sum(r.prompt_tokens for r in recs) == 11 and sum(r.cached_prompt_tokens for r in recs) == 4
    assert [r.completion_tokens for r in recs] == [5, 5, 5] and all(r.request_size == 3 for r in recs)


async def test_unknown_price_gives_none_not_zero(msgs):
    model = Model(Scripted(model="who-knows"), retry=FAST)
    await model.sample(msgs, Sampling())
    assert price_for("who-knows") is None
    assert model.accounting.total.cost_usd is None and model.accounting.total.calls == 1


async def test_retryable_failures_recorded_per_attempt_then_success(msgs):
    cache = InMemoryCallCache()
    provider = Scripted(fail={1: ServerError("boom", status=500), 2: ServerError("boom", status=502)})
    model = Model(provider, cache=cache, retry=FAST)
    [s] = await model.sample(msgs, Sampling(), tag="v")
    assert s.ok and s.error is None
    assert [(f.attempt, f.kind, f.status) for f in cache.failures] == [(1, "server_error", 500), (2, "server_error", 502)]
    assert cache.get(s.key).attempt == 3
    assert model.accounting.by_tag["v"].failures == 2 and model.accounting.by_tag["v"].calls == 1


async def test_exhausted_and_non_retryable_errors_become_sample_errors(msgs):
    cache = InMemoryCallCache()
    always = {i: ServerError("down", status=503) for i in range(1, 10)}
    model = Model(Scripted(fail=always), cache=cache, retry=FAST)
    out = await model.sample(msgs, Sampling(), n=2)
    assert all(isinstance(s.error, ServerError) and s.completion is None for s in out)
    assert len(cache.failures) == 3 and cache.get(out[0].key) is None  # failures are never cache hits
    bad = Model(Scripted(fail={1: BadRequestError("no", status=400)}), cache=cache, retry=FAST)
    [s] = await bad.sample(msgs, Sampling(temperature=0.3))
    assert isinstance(s.error, BadRequestError) and len(cache.failures) == 4


async def test_fatal_error_raises_after_other_requests_are_stored(msgs):
    cache = InMemoryCallCache()

    class OneBadGroup(Scripted):
        async def complete(self, messages, sampling, n):
            if sampling.seed == 1:  # the second group
                await asyncio.sleep(0.05)
                raise AuthError("bad key", status=401)
            return await super().complete(messages, sampling, n)

    model = Model(OneBadGroup(max_n=1), cache=cache, retry=FAST)
    with pytest.raises(AuthError):
        await model.sample(msgs, Sampling(seed=0), n=2)
    assert cache.get(model.key(msgs, Sampling(seed=0), 0)) is not None
    assert [f.kind for f in cache.failures] == ["auth"]


async def test_more_completions_than_asked_is_a_retryable_malformed_response(msgs):
    class Long(Scripted):
        async def complete(self, messages, sampling, n):
            resp = await super().complete(messages, sampling, n)
            extra = [Completion("extra")] if len(self.calls) == 1 else []
            return ProviderResponse(resp.completions + extra, resp.usage)

    cache = InMemoryCallCache()
    out = await Model(Long(), cache=cache, retry=FAST).sample(msgs, Sampling(), n=2)
    assert all(s.ok for s in out) and "malformed" in cache.failures[0].message
    assert [f.kind for f in cache.failures] == ["server_error"]


async def test_no_completion_at_all_is_an_empty_response_error_not_retried(msgs):
    class Empty(Scripted):
        async def complete(self, messages, sampling, n):
            await super().complete(messages, sampling, n)
            return ProviderResponse([], Usage(5, 0))

    cache = InMemoryCallCache()
    provider = Empty()
    out = await Model(provider, cache=cache, retry=FAST).sample(msgs, Sampling(), n=2)
    assert [type(s.error) for s in out] == [EmptyResponseError, EmptyResponseError]
    assert len(provider.calls) == 1 and [f.kind for f in cache.failures] == ["empty_response"]

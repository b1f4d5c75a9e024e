"""Per-sample usage (Sample.usage), the one Usage sum, and one failure row per failed attempt."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofloop.errors import ServerError
from proofloop.models.base import FREE, Completion, ProviderResponse, Sampling, Usage
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.pricing import Price, cost_usd
from proofloop.models.wrapper import Model, RetryPolicy

FAST = RetryPolicy(max_attempts=3, initial_s=0.001, max_s=0.01)
PRICE = Price(input_per_m=2.0, cached_input_per_m=1.0, output_per_m=4.0)

usages = st.builds(Usage, st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6),
                   st.one_of(st.none(), st.floats(0, 100, allow_nan=False)))


@given(st.lists(usages, max_size=8))
def test_a_sum_of_usages_adds_tokens_and_loses_the_cost_once_any_price_is_unknown(parts):
    total = FREE
    for u in parts:
        total = total + u
    assert total.prompt_tokens == sum(u.prompt_tokens for u in parts)
    assert total.completion_tokens == sum(u.completion_tokens for u in parts)
    assert total.cached_prompt_tokens == sum(u.cached_prompt_tokens for u in parts)
    if any(u.cost_usd is None for u in parts):
        assert total.cost_usd is None
    else:
        assert total.cost_usd == pytest.approx(sum(u.cost_usd for u in parts))


@given(usages, usages, usages)
def test_usage_sum_is_associative_and_free_is_neutral(a, b, c):
    left, right = (a + b) + c, a + (b + c)
    assert (left.prompt_tokens, left.completion_tokens, left.cached_prompt_tokens) == (
        right.prompt_tokens, right.completion_tokens, right.cached_prompt_tokens)
    assert (left.cost_usd is None) == (right.cost_usd is None)
    assert (FREE + a).cost_usd == a.cost_usd and (FREE + a).tokens == a.tokens


class Fixed:
    """n completions of 3 tokens each; the request bills 10 prompt tokens, 4 of them cached."""

    name = "fixed"

    def __init__(self, model="fixed-1", fail=()):
        self.model, self.max_n, self.fail, self.calls = model, None, set(fail), 0

    async def complete(self, messages, sampling, n):
        self.calls += 1
        if self.calls in self.fail:
            raise ServerError("boom", status=500)
        return ProviderResponse([Completion(f"c{i}", completion_tokens=3) for i in range(n)], Usage(10, 3 * n, 4))


async def test_every_sample_carries_its_share_and_cache_hits_carry_the_stored_share(msgs):
    model = Model(Fixed(), cache=InMemoryCallCache(), retry=FAST, pricing={"fixed-1": PRICE})
    fresh = await model.sample(msgs, Sampling(), n=3)
    assert [(s.usage.prompt_tokens, s.usage.cached_prompt_tokens, s.usage.completion_tokens) for s in fresh] == [
        (4, 2, 3), (3, 1, 3), (3, 1, 3)]
    for s in fresh:
        assert s.usage.cost_usd == pytest.approx(cost_usd(PRICE, prompt_tokens=s.usage.prompt_tokens,
                                                          cached_prompt_tokens=s.usage.cached_prompt_tokens,
                                                          completion_tokens=s.usage.completion_tokens))
    total = FREE
    for s in fresh:
        total = total + s.usage
    assert total.cost_usd == pytest.approx(model.accounting.total.cost_usd)
    assert total.tokens == model.accounting.total.usage.tokens == 10 + 9
    again = await model.sample(msgs, Sampling(), n=3)
    assert all(s.cached for s in again) and [s.usage for s in again] == [s.usage for s in fresh]
    assert model.accounting.total.usage.tokens == 19  # cache hits add no spending to the tally


async def test_unknown_price_gives_samples_an_unknown_cost_and_failures_no_usage(msgs):
    model = Model(Fixed(model="who-knows", fail={1, 2, 3}), cache=InMemoryCallCache(), retry=FAST)
    [failed] = await model.sample(msgs, Sampling())
    assert failed.error is not None and failed.usage.tokens == 0
    [s] = await model.sample(msgs, Sampling(temperature=0.5))
    assert s.ok and s.usage.cost_usd is None and s.usage.prompt_tokens == 10
    tally = model.accounting.total
    assert tally.cost_usd is None and tally.usage.prompt_tokens == 10 and tally.failures == 3
    assert model.accounting.as_dict()["total"] == {
        "calls": 1, "samples": 1, "cached_calls": 0, "failures": 3, "prompt_tokens": 10,
        "cached_prompt_tokens": 4, "completion_tokens": 3, "cost_usd": None}


async def test_one_failure_row_per_failed_attempt_naming_all_its_keys(msgs):
    cache = InMemoryCallCache()
    model = Model(Fixed(fail={1, 2}), cache=cache, retry=FAST)
    out = await model.sample(msgs, Sampling(), n=4, tag="verify")
    assert all(s.ok for s in out)
    assert [(f.attempt, f.keys) for f in cache.failures] == [(1, [s.key for s in out]), (2, [s.key for s in out])]
    assert model.accounting.by_tag["verify"].failures == 2


def test_record_failure_takes_the_list_of_keys_of_one_request():
    cache = InMemoryCallCache()
    cache.record_failure(keys=["a", "b"], namespace="run", model="m", tag="t", attempt=1,
                         error=ServerError("boom", status=502), latency_s=0.1)
    assert [(f.keys, f.kind, f.status) for f in cache.failures] == [(["a", "b"], "server_error", 502)]
    with pytest.raises(TypeError):  # a bare key would be read as a list of characters
        cache.record_failure("ab", namespace="run", model="m", tag="t", attempt=1, error=ServerError("x"),
                             latency_s=0.1)

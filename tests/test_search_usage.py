"""One usage type, summed everywhere: a search's meter, report and budgets sum the samples'
`usage` (models.base.Usage) and agree with the wrapper's Accounting; cost is unknown once
any part's price is unknown (the rule of Usage.__add__, nowhere else)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofloop.models.base import FREE, Sampling, Usage
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.pricing import Price
from proofloop.models.wrapper import Model
from proofloop.search import make_strategy
from proofloop.search.base import MemoryRecorder, SearchContext
from proofloop.search.budget import Budget
from proofloop.search.scheduler import Meter
from proofloop.sim import make_problems
from proofloop.sim.provider import SimProvider

SAMPLING = Sampling(seed=0, max_tokens=200_000)
NO_ACCEPT = dict(preset="release", initial=6, verifications=4, top_k=2, samples_per_prompt=2, rounds=2,
                 accept=False)
PRICE = Price(1.0, 0.1, 2.0)


def context(*, price: Price | None = PRICE, cache=None, budget: Budget | None = None, max_n: int | None = None):
    model = Model(SimProvider(seed=0, max_n=max_n), pricing=price, cache=cache, namespace="usage-test")
    return SearchContext(model, gen_sampling=SAMPLING, verify_sampling=SAMPLING, meta_sampling=SAMPLING,
                         recorder=MemoryRecorder(), budget=budget)


def run(ctx: SearchContext, options: dict, problem: str | None = None):
    problem = problem or make_problems(1, seed=2, mix="hard")[0]
    return asyncio.run(make_strategy("pool", **options).solve(problem, ctx))


@pytest.mark.parametrize("max_n", [None, 2])  # n samples per request, and requests split by max_n
def test_report_meter_and_budget_sum_what_the_wrapper_accounted(max_n):
    run_budget = Budget(scope="run")
    ctx = context(budget=run_budget, max_n=max_n)
    result = run(ctx, dict(NO_ACCEPT, meta=1))
    accounting = ctx.generator.accounting
    usage = result.meta["report"]["usage"]
    total = usage["total"]
    assert total["samples"] == accounting.total.samples > 0 and total["replayed"] == 0
    for key in ("prompt_tokens", "cached_prompt_tokens", "completion_tokens"):
        assert total[key] == getattr(accounting.total, key)
    assert total["cost_usd"] == pytest.approx(accounting.total.cost_usd, rel=1e-9) and total["cost_usd"] > 0
    for tag, tally in accounting.by_tag.items():  # per role too: generate, refine, verify, meta_verify
        role = usage["by_role"][tag]
        assert (role["samples"], role["prompt_tokens"], role["completion_tokens"]) == (
            tally.samples, tally.prompt_tokens, tally.completion_tokens)
        assert role["cost_usd"] == pytest.approx(tally.cost_usd, rel=1e-9)
    assert set(usage["by_role"]) == set(accounting.by_tag) >= {"generate", "refine", "verify", "meta_verify"}
    assert run_budget.spent_tokens == accounting.total.prompt_tokens + accounting.total.completion_tokens
    assert run_budget.spent_cost == pytest.approx(accounting.total.cost_usd, rel=1e-9)


def test_records_carry_their_samples_usage():
    ctx = context()
    result = run(ctx, NO_ACCEPT)
    recorder = ctx.recorder
    records = [p for p, _ in recorder.proofs] + recorder.analyses
    summed = sum((r.usage for r in records), FREE)
    accounting = ctx.generator.accounting.total
    assert (summed.prompt_tokens, summed.completion_tokens) == (accounting.prompt_tokens,
                                                                accounting.completion_tokens)
    assert summed.cost_usd == pytest.approx(accounting.cost_usd, rel=1e-9)
    assert all(r.usage.completion_tokens == r.completion_tokens for r in records if r.ok)
    assert result.proofs[0].usage is not None


def test_replayed_samples_are_metered_with_their_stored_usage():
    cache = InMemoryCallCache()
    first = run(context(cache=cache), NO_ACCEPT).meta["report"]["usage"]["total"]
    ctx = context(cache=cache)
    again = run(ctx, NO_ACCEPT).meta["report"]["usage"]["total"]
    assert ctx.generator.accounting.total.calls == 0  # nothing was sent ...
    assert again["replayed"] == again["samples"] == first["samples"]  # ... every sample was replayed
    assert {k: v for k, v in again.items() if k != "replayed"} == {k: v for k, v in first.items() if k != "replayed"}


def test_an_unpriced_model_spends_an_unknown_cost_never_zero():
    run_budget = Budget(scope="run")
    ctx = context(price=None, budget=run_budget)
    usage = run(ctx, NO_ACCEPT).meta["report"]["usage"]
    assert usage["total"]["cost_usd"] is None and usage["total"]["completion_tokens"] > 0
    assert all(role["cost_usd"] is None for role in usage["by_role"].values())
    assert run_budget.spent.cost_usd is None and run_budget.spent_tokens > 0


usages = st.builds(Usage, st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6),
                   st.one_of(st.none(), st.floats(0, 10, allow_nan=False)))


@given(st.lists(usages, max_size=12))
def test_a_budget_and_its_parent_sum_with_usage_addition(parts):
    parent = Budget(scope="run")
    child = Budget(parent=parent)
    for u in parts:
        child.charge(u)
    expected = sum(parts, FREE)
    for b in (child, parent):
        assert b.spent_tokens == expected.tokens
        assert (b.spent_cost is None) == any(u.cost_usd is None for u in parts)
        if b.spent_cost is not None:
            assert b.spent_cost == pytest.approx(expected.cost_usd)


@given(st.lists(st.tuples(st.sampled_from(["generate", "verify"]), usages, st.booleans(), st.booleans()),
                max_size=12))
def test_a_meter_sums_samples_per_tag_and_in_total(samples):
    class S:  # the parts of models.wrapper.Sample a meter reads
        def __init__(self, usage, cached, ok):
            self.usage, self.cached, self.ok = usage, cached, ok

    meter = Meter()
    for tag, u, cached, ok in samples:
        meter.add(tag, [S(u, cached, ok)])
    report = meter.as_dict()
    total = report["total"]
    assert total["samples"] == len(samples)
    assert total["replayed"] == sum(1 for s in samples if s[2])
    assert total["failed"] == sum(1 for s in samples if not s[3])
    assert total["prompt_tokens"] == sum(s[1].prompt_tokens for s in samples)
    assert (total["cost_usd"] is None) == any(s[1].cost_usd is None for s in samples)
    for tag in report["by_role"]:
        mine = [s[1] for s in samples if s[0] == tag]
        assert report["by_role"][tag]["completion_tokens"] == sum(u.completion_tokens for u in mine)

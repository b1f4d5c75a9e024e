"""Every strategy's result says why it stopped, from one small set (base.StopReason); a search
whose calls all failed is told apart from one whose outputs could not be scored."""

from __future__ import annotations

import asyncio

import pytest

from proofloop.search import StopReason, make_strategy
from proofloop.search.release import run_release
from proofloop.sim import make_problems
from search_rigs import rig_context, solve

POOL = dict(preset=None, initial=4, verifications=3, top_k=2, rounds=1, accept=False)
RIGS = {
    "plain": {},
    "generation_fails": dict(fail=("generate", "refine")),
    "verification_fails": dict(fail=("verify",)),
    "scores_unparsable": dict(garble=("verify",)),
    "self_scores_unparsable": dict(garble=("generate", "refine")),
    "all_truncated": dict(truncate=lambda i: True),
}
EXPECTED = {
    # rig: (single, sequential, pool / adaptive / release)
    "plain": ("completed", None, "round_limit"),
    "generation_fails": ("all_calls_failed", "all_calls_failed", "all_calls_failed"),
    "verification_fails": ("completed", None, "all_calls_failed"),
    "scores_unparsable": ("completed", None, "nothing_scored"),
    "self_scores_unparsable": ("nothing_scored", "nothing_scored", "round_limit"),
    "all_truncated": ("nothing_scored", "nothing_scored", "nothing_scored"),
}


@pytest.fixture(scope="module")
def problem():
    return make_problems(1, seed=4, mix="hard")[0]


def _stops(rig: str, problem: str) -> dict[str, str]:
    out = {"single": solve(make_strategy("single", k=3), problem, rig_context(**RIGS[rig])).stop_reason,
           "sequential": solve(make_strategy("sequential", threads=2, attempts=2), problem,
                               rig_context(**RIGS[rig])).stop_reason}
    for name, extra in (("pool", {}), ("adaptive", dict(stages=[1, 3], refine_min=1))):
        out[name] = solve(make_strategy(name, **POOL, **extra), problem, rig_context(**RIGS[rig])).stop_reason
    params = make_strategy("pool", **POOL).params
    out["release"] = asyncio.run(run_release([problem], rig_context(**RIGS[rig]), params))[0].stop_reason
    return out


@pytest.mark.parametrize("rig", list(RIGS))
def test_stop_reasons(rig, problem):
    stops = _stops(rig, problem)
    single, sequential, pool_like = EXPECTED[rig]
    assert stops["single"] == single
    if sequential is None:  # depends on the self scores: a thread that self-grades 1 stops it
        assert stops["sequential"] in ("accepted", "attempts_exhausted")
    else:
        assert stops["sequential"] == sequential
    assert (stops["pool"], stops["adaptive"], stops["release"]) == (pool_like,) * 3
    assert set(stops.values()) <= {s.value for s in StopReason}


def test_pool_accepted_and_sequential_reasons(problem):
    result = solve(make_strategy("pool", **dict(POOL, accept=True, rounds=3)), problem, rig_context())
    assert result.stop_reason == "accepted" and result.meta["report"]["chosen_by"] == "accepted"
    result = solve(make_strategy("sequential", threads=2, attempts=1), problem, rig_context())
    assert result.stop_reason == ("accepted" if result.best.self_score == 1.0 else "attempts_exhausted")


def test_stop_reason_values_are_the_documented_set():
    assert [s.value for s in StopReason] == [
        "accepted", "round_limit", "attempts_exhausted", "completed", "nothing_scored", "all_calls_failed",
        "budget_tokens", "budget_cost", "budget_wall"]

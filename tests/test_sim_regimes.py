"""Simulator regimes (proofloop.sim.regimes): the fitted regimes reproduce the paper's search
outcomes (seeded, within the stated tolerances), the surrogate they are fitted with agrees
with the simulated model, and the `released` regime is today's simulator."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from proofloop.sim import surrogate
from proofloop.sim.model import SimConfig, SimModel, make_problems, problem_difficulty, true_grade, verifier_mean
from proofloop.sim.regimes import (FIGURE2, FIGURE2_TOL, POOL_TARGETS, POOL_TOL, REGIMES, config_for,
                                   problems_for, regime)


def difficulties(name: str, count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).beta(*REGIMES[name].difficulty, count)


def test_released_regime_is_todays_simulator():
    assert config_for("released") == SimConfig()
    assert problems_for("released", 20, seed=4) == make_problems(20, seed=4)
    assert make_problems(5, seed=2, mix="basic") == make_problems(5, seed=2, mix="basic", beta=None)


def test_unknown_regime_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown regime 'nope'"):
        regime("nope")


@pytest.mark.parametrize("seed", [1, 2])
def test_shortlist_reproduces_figure2(seed):
    curves = surrogate.sequential_curves(config_for("shortlist"), difficulties("shortlist", 1000, seed), seed=seed)
    for key, target in FIGURE2.items():
        got = curves[key]
        assert all(abs(a - b) <= FIGURE2_TOL[key] for a, b in zip(got, target)), (key, got, target)
    assert curves["pass@1"][-1] > curves["pass@1"][0] + 0.08  # refinement helps, as in the paper


@pytest.mark.parametrize("name", sorted(POOL_TARGETS))
def test_pool_search_reproduces_proofbench(name):
    out = surrogate.pool_search(config_for(name), difficulties(name, 200, seed=1), seed=1)
    assert abs(statistics.fmean(out.grades) - POOL_TARGETS[name]) <= POOL_TOL, out.summary(16)
    if name == "advanced":  # the multi-round search the paper is about happens
        summary = out.summary(16)
        assert summary["share_rounds_ge_4"] >= 0.2 and summary["share_all_rounds"] >= 0.1, summary


def test_released_regime_stops_within_two_rounds():
    """The motivation, checked: in today's simulator every problem stops by round 1."""
    out = surrogate.pool_search(config_for("released"), difficulties("advanced", 40, seed=3), seed=3)
    assert max(out.rounds) <= 1 and all(out.accepted)


def test_false_reject_matches_its_formula():
    """P(a correct proof passes all 64 verifications) = E[(1 - eps)^128] = 1 / (1 + 128 r)."""
    c = config_for("advanced")
    r = c.verifier_false_reject
    mus = [verifier_mean(f"p{i}", 0.9, c) for i in range(4000)]
    assert statistics.fmean(m ** 128 for m in mus) == pytest.approx(1 / (1 + 128 * r), abs=0.03)
    assert verifier_mean("p1", 0.9, SimConfig()) == SimConfig().calibration.correct_mu


def test_surrogate_generation_matches_the_model():
    """The surrogate's first attempt = the model's: same share of correct proofs per problem set."""
    c = config_for("shortlist")
    problems = problems_for("shortlist", 60, seed=5)
    sim = SimModel(c, seed=0)
    grades = []
    for p in problems:
        outs = sim.respond([{"role": "user", "content": p + "\n\n## Self Evaluation"}], n=8, max_tokens=10 ** 6)
        grades += [true_grade(o.text, c) == 1.0 for o in outs]
    d = np.repeat([problem_difficulty(p) for p in problems], 2000)
    expected = float((surrogate.grade(c, surrogate.generate(c, d, np.random.default_rng(0))) == 1).mean())
    assert statistics.fmean(grades) == pytest.approx(expected, abs=0.05)


def test_refinement_drag_slows_hard_problems():
    """refine_gain_difficulty: the same refinement gains less on a harder problem's proof."""
    c = config_for("advanced")
    rng = np.random.default_rng(0)
    q = np.full(20000, 0.3)
    easy = surrogate.refine(c, q, np.ones_like(q), np.zeros_like(q), rng, d=0.1).mean()
    hard = surrogate.refine(c, q, np.ones_like(q), np.zeros_like(q), rng, d=0.9).mean()
    assert easy > hard + 0.05
    assert math.isclose(surrogate.refine(SimConfig(), q[:1], np.ones(1), np.zeros(1), np.random.default_rng(1), d=0.9)[0],
                        surrogate.refine(SimConfig(), q[:1], np.ones(1), np.zeros(1), np.random.default_rng(1), d=0.0)[0])

"""Benchmark metrics: best@k against brute force, bootstrap intervals, percentages and the
grader-agreement numbers, including the degenerate cases that must not crash or give NaN."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from proofloop.bench import metrics as M

SCORE = st.sampled_from([0.0, 0.5, 1.0])
UNIT = st.floats(0, 1, allow_nan=False)


def brute_best_at_k(true, self_, k):
    """Mean over every k-subset of the true score picked by max self score, ties averaged."""
    picks = []
    for subset in itertools.combinations(range(len(true)), k):
        top = max(self_[i] for i in subset)
        tied = [true[i] for i in subset if self_[i] == top]
        picks.append(sum(tied) / len(tied))
    return sum(picks) / len(picks)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(UNIT, SCORE), min_size=1, max_size=8), st.data())
def test_best_at_k_matches_brute_force(pairs, data):
    true, self_ = [t for t, _ in pairs], [s for _, s in pairs]
    k = data.draw(st.integers(1, len(pairs)))
    assert M.best_at_k(true, self_, k) == pytest.approx(brute_best_at_k(true, self_, k), abs=1e-12)


def test_best_at_k_worked_cases():
    assert M.best_at_k([0, 1, 1], [1, 0.5, 1], 2) == pytest.approx(0.5)
    assert M.best_at_k([0.2, 0.4, 0.9], [0, 0, 0], 2) == pytest.approx(0.5)  # all tied: plain mean
    assert M.best_at_k([0, 0, 1], [0, 0.5, 1], 3) == 1.0  # k = n: the top self score decides
    assert M.best_at_k([1, 0, 0], [0, 0.5, 1], 1) == pytest.approx(1 / 3)  # k = 1: the mean
    with pytest.raises(ValueError):
        M.best_at_k([1, 0], [1, 0], 3)
    with pytest.raises(ValueError):
        M.best_at_k([1, 0], [1], 1)


def test_best_at_k_large_n_is_exact_and_bounded():
    rng = np.random.default_rng(3)
    true = rng.choice([0.0, 0.5, 1.0], 64).tolist()
    self_ = [t if rng.random() < 0.8 else 1.0 - t for t in true]  # mostly honest self scores
    values = [M.best_at_k(true, self_, k) for k in (1, 2, 8, 32, 64)]
    assert values[0] == pytest.approx(np.mean(true))
    assert all(min(true) <= v <= max(true) for v in values)
    assert values[-1] > values[0]  # honest self scores help selection


def test_pass_at_1_and_best_at_k_mean():
    true = [[1, 0, 0, 0], [0.5, 0.5]]
    self_ = [[1, 0, 0, 0], [1, 0]]
    assert M.pass_at_1(true) == pytest.approx((0.25 + 0.5) / 2)  # problems weigh equally
    assert M.best_at_k_mean(true, self_, 1) == pytest.approx(M.pass_at_1(true))
    assert M.best_at_k_mean(true, self_, 2) == pytest.approx((0.5 + 0.5) / 2)
    with pytest.raises(ValueError):
        M.pass_at_1([[1.0], []])
    assert M.mean_score([]) is None and M.pass_at_1([]) is None


def test_points_percentage_and_breakdown():
    assert M.points_percentage([7, 7, 0]) == pytest.approx(200 / 3)
    assert M.points_percentage([21, 0], max_points=[21, 7]) == pytest.approx(75.0)
    assert M.points_percentage([]) is None
    b = M.breakdown([7, 0, 6, 1], ["Algebra", "Algebra", "Geometry", None])
    assert b == {
        "Algebra": {"n": 2, "points": 7.0, "max_points": 14.0, "percent": 50.0},
        "Geometry": {"n": 1, "points": 6.0, "max_points": 7.0, "percent": pytest.approx(600 / 7)},
        "unknown": {"n": 1, "points": 1.0, "max_points": 7.0, "percent": pytest.approx(100 / 7)},
    }
    with pytest.raises(ValueError):
        M.breakdown([1], ["a", "b"])


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    data = np.random.default_rng(0).random(12).tolist()  # continuous, so seeds give distinct quantiles
    a = M.bootstrap_ci(M.mean_score, data, n_resamples=500, seed=7)
    b = M.bootstrap_ci(M.mean_score, data, n_resamples=500, seed=7)
    c = M.bootstrap_ci(M.mean_score, data, n_resamples=500, seed=8)
    assert a == b and (a.low, a.high) != (c.low, c.high)
    assert a.estimate == pytest.approx(np.mean(data))
    assert 0 <= a.low < a.estimate < a.high <= 1 and a.n_valid == 500 and a.note is None
    narrow = M.bootstrap_ci(M.mean_score, data, n_resamples=500, seed=7, confidence=0.5)
    assert a.low <= narrow.low <= narrow.high <= a.high


def test_bootstrap_pairs_samples_and_handles_undefined_statistics():
    x, y = [0, 1, 2, 3, 4, 5], [0, 2, 4, 6, 8, 10]
    ci = M.bootstrap_ci(M.pearson, x, y, n_resamples=300)  # paired: r stays 1 on every resample
    assert ci.estimate == 1.0 and ci.low == pytest.approx(1.0) and ci.high == pytest.approx(1.0)
    two = M.bootstrap_ci(M.pearson, [0, 1], [0, 2], n_resamples=300)
    assert 100 < two.n_valid < 200 and "left out" in two.note  # half the resamples repeat one point: no r
    assert two.low == two.high == 1.0
    undefined = M.bootstrap_ci(lambda v: None, [1, 2, 3], n_resamples=50)
    assert undefined.estimate is None and undefined.low is None and undefined.note
    empty = M.bootstrap_ci(M.mean_score, [], n_resamples=50)
    assert empty.estimate is None and empty.low is None
    constant = M.bootstrap_ci(M.mean_score, [1.0] * 5, n_resamples=50)
    assert constant.low == constant.high == 1.0
    with pytest.raises(ValueError):
        M.bootstrap_ci(M.pearson, [1, 2], [1], n_resamples=10)


def _plain(statistic, *samples, **options):
    """The interval resample by resample (bootstrap_cis never takes the numpy shortcut)."""
    return M.bootstrap_cis(lambda *s: {"value": statistic(*s)}, *samples, **options)["value"]


VALUE = st.one_of(st.floats(0, 7, allow_nan=False), st.integers(0, 7))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(VALUE, st.sampled_from([1.0, 7, 10.0, 21.0])), min_size=1, max_size=70),
       st.integers(0, 5), st.sampled_from([0.5, 0.9, 0.95]))
def test_the_numpy_bootstrap_of_scores_and_percentages_is_the_plain_one_bit_for_bit(rows, seed, confidence):
    # A run's summary bootstraps both (500 resamples each): the plain loop was a third of a
    # one-pair /v1/verify. Same resamples, same sums in the same order: equal, not approximately.
    points, maxima = [p for p, _ in rows], [m for _, m in rows]
    options = dict(n_resamples=200, seed=seed, confidence=confidence)
    assert M.bootstrap_ci(M.mean_score, points, **options) == _plain(M.mean_score, points, **options)
    assert (M.bootstrap_ci(M.points_percentage, points, maxima, **options)
            == _plain(M.points_percentage, points, maxima, **options))


def test_the_numpy_bootstrap_leaves_what_it_cannot_do_to_the_plain_one():
    with pytest.raises(ZeroDivisionError):  # a resample of zero maxima: as the plain function says
        M.bootstrap_ci(M.points_percentage, [1.0, 0.0], [7.0, 0.0], n_resamples=50)
    assert M.bootstrap_ci(M.mean_score, [], n_resamples=50).estimate is None
    with pytest.raises(ValueError, match="confidence"):
        M.bootstrap_ci(M.mean_score, [1.0, 0.0], n_resamples=50, confidence=1.5)
    with pytest.raises(ValueError, match="equal lengths"):
        M.bootstrap_ci(M.points_percentage, [1.0, 0.0], [7.0], n_resamples=50)


# --------------------------------------------------------------------------- agreement


def test_agreement_metrics_hand_computed():
    pred = [1.0, 1.0, 0.8, 0.5, 0.1, 0.75]
    human = [1.0, 0.0, 6 / 7, 1.0, 0.0, 3 / 7]
    m = M.agreement_metrics(pred, human, threshold=0.75)
    assert m["confusion"] == {"tp": 2, "fp": 2, "fn": 1, "tn": 1}
    assert m["precision"] == 0.5 and m["recall"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(0.5) and m["false_accept_rate"] == pytest.approx(2 / 3)
    assert m["mae"] == pytest.approx(np.mean(np.abs(np.subtract(pred, human))))
    assert m["pearson"] == pytest.approx(stats.pearsonr(pred, human)[0])
    assert m["spearman"] == pytest.approx(stats.spearmanr(pred, human)[0])
    # binary kappa: po = 0.5, pe = (3*4 + 3*2) / 36 = 0.5 -> 0
    assert m["kappa_binary"] == pytest.approx(0.0)
    # human buckets: accept, reject, accept, accept, reject, partial;
    # predicted: accept, accept, accept, partial, reject, accept
    assert m["confusion_3level"]["matrix"] == [[1, 0, 1], [0, 0, 1], [0, 1, 2]]
    assert m["notes"] == []
    json.dumps(m, allow_nan=False)


def test_human_acceptance_cut_is_applied_to_every_scale():
    assert M.accepts([18 / 21, 17 / 21, 6 / 7, 5 / 7, 9 / 10, 8 / 10], M.HUMAN_ACCEPT) == [
        True, False, True, False, True, False]


def test_cohen_kappa_known_values():
    # a textbook 2x2: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> po 0.7, pe 0.5, kappa 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert M.cohen_kappa(a, b) == pytest.approx(0.4)
    assert M.cohen_kappa([1, 2, 3], [1, 2, 3]) == 1.0
    assert M.cohen_kappa([1, 1], [1, 1]) is None  # chance agreement 1: kappa is 0/0
    assert M.cohen_kappa([], []) is None
    with pytest.raises(ValueError):
        M.confusion_matrix([1], [3], [1, 2])


def test_degenerate_agreement_gives_none_and_notes():
    m = M.agreement_metrics([1.0, 1.0], [1.0, 1.0])
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["false_accept_rate"] is None
    assert m["pearson"] is None and m["spearman"] is None and m["kappa_binary"] is None
    assert any("false_accept_rate" in n for n in m["notes"])
    assert any("pearson is undefined: predictions are constant" in n for n in m["notes"])
    m = M.agreement_metrics([0.0, 0.3], [0.0, 0.0])
    assert m["precision"] is None and m["recall"] is None and m["false_accept_rate"] == 0.0
    assert any("human grades are constant" in n for n in m["notes"])
    m = M.agreement_metrics([], [])
    assert m["accuracy"] is None and m["mae"] is None and m["n"] == 0
    with pytest.raises(ValueError, match="same length|human grades"):
        M.agreement_metrics([1.0], [])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        M.agreement_metrics([7.0], [1.0])
    with pytest.raises(ValueError):
        M.agreement_metrics([float("nan")], [1.0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(UNIT, st.sampled_from([0, 1, 2, 5, 6, 7])), max_size=12),
       st.sampled_from([0.0, 0.5, 0.75, 1.0]))
def test_agreement_metrics_never_crash_or_nan(pairs, threshold):
    pred, human = [p for p, _ in pairs], [h / 7 for _, h in pairs]
    m = M.agreement_metrics(pred, human, threshold)
    json.dumps(m, allow_nan=False)  # no NaN anywhere
    c = m["confusion"]
    assert sum(c.values()) == len(pairs) == sum(map(sum, m["confusion_3level"]["matrix"]))
    for key in ("accuracy", "precision", "recall", "false_accept_rate", "mae"):
        assert m[key] is None or 0 <= m[key] <= 1
    for key in ("pearson", "spearman", "kappa_binary", "kappa_3level"):
        assert m[key] is None or (-1 - 1e-9 <= m[key] <= 1 + 1e-9 and math.isfinite(m[key]))
    if m["pearson"] is not None:
        assert m["pearson"] == pytest.approx(stats.pearsonr(pred, human)[0], abs=1e-9)

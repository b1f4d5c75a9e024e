"""Benchmark metrics: proof scores, best@k by self score, IMO-ProofBench percentages, and the
agreement of an automatic grader with expert grades. Pure functions, no I/O.

Scores are normalised to [0, 1] (see datasets.normalise_grade). A metric that is undefined on
the data (precision with nothing accepted, a correlation of a constant vector) is None, never
NaN and never an exception; `agreement_metrics` says why in its `notes`.

    >>> best_at_k(true_scores=[0, 1, 1], self_scores=[1, 0.5, 1], k=2)   # ties are averaged
    0.5
    >>> points_percentage([7, 6, 0], max_points=7)
    61.904761904761905
    >>> m = agreement_metrics(pred=[1.0, 0.9, 0.2], human=[1.0, 0.0, 0.0], threshold=0.75)
    >>> m["precision"], m["recall"], m["false_accept_rate"]
    (0.5, 1.0, 0.5)
    >>> bootstrap_ci(mean_score, [0.0, 1.0, 1.0, 1.0], n_resamples=500, seed=1).low
    0.25
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from pydantic import BaseModel

from proofloop.extras import lazy

# Imported on first use: `proofloop bench --help` works without the bench extra.
np = lazy("numpy", "bench", "proofloop bench metrics")
scipy_stats = lazy("scipy.stats", "bench", "proofloop bench metrics")

# Grades are compared with a small tolerance so that 18/21 counts as 6/7 despite rounding.
EPS = 1e-9
# Expert acceptance: at least 6 of 7 points (IMO-ProofBench's "almost" or "correct"), i.e. a
# normalised grade >= 6/7; the same normalised cut applies to CMO (18/21) and Putnam (> 8/10).
HUMAN_ACCEPT = 6 / 7
DEFAULT_THRESHOLD = 0.75
BUCKET_LABELS = ("reject", "partial", "accept")
# Lower edge of the 3-level buckets: a mean verifier score below 0.25 means mostly 0 verdicts;
# for experts any credit at all is "partial" (the smallest credit on our scales is 1/21).
PRED_PARTIAL_FROM = 0.25
HUMAN_PARTIAL_FROM = 0.01


# --------------------------------------------------------------------------- confidence intervals


class Interval(BaseModel):
    """A percentile bootstrap interval. `estimate` is the statistic on the full data."""

    estimate: float | None
    low: float | None
    high: float | None
    confidence: float
    n_resamples: int
    n_valid: int  # resamples on which the statistic was defined
    note: str | None = None


def _take(sample: Sequence[Any] | np.ndarray, idx: np.ndarray) -> Any:
    return sample[idx] if isinstance(sample, np.ndarray) else [sample[i] for i in idx]


def bootstrap_cis(
    statistic: Callable[..., Mapping[str, float | None]],
    *samples: Sequence[Any],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Interval]:
    """Percentile bootstrap for several statistics at once. The samples are paired: one set of
    resampled indices is applied to all of them. A statistic that is None on a resample (say,
    precision when nothing was accepted) is left out of that statistic's interval."""
    if not samples:
        raise ValueError("bootstrap needs at least one sample")
    n = len(samples[0])
    if any(len(s) != n for s in samples):
        raise ValueError("bootstrap samples must have equal lengths (they are resampled together)")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    full = dict(statistic(*samples))
    draws: dict[str, list[float]] = {k: [] for k in full}
    if n:
        rng = np.random.default_rng(seed)
        for idx in rng.integers(0, n, size=(n_resamples, n)):
            for key, value in statistic(*(_take(s, idx) for s in samples)).items():
                if value is not None and key in draws:
                    draws[key].append(float(value))
    return {key: _interval(estimate, draws[key], n_resamples, confidence) for key, estimate in full.items()}


def _interval(estimate: float | None, vals: Sequence[float], n_resamples: int, confidence: float) -> Interval:
    """The percentile interval of the statistic's values on the resamples where it had one."""
    alpha = (1 - confidence) / 2
    note = None
    if estimate is None:
        low = high = None
        note = "undefined on the full data"
    elif len(vals) < 2:
        low = high = None
        note = "undefined on almost every resample"
    else:
        low, high = (float(x) for x in np.quantile(vals, [alpha, 1 - alpha]))
        if len(vals) < n_resamples:
            note = f"{n_resamples - len(vals)} of {n_resamples} resamples had no value and were left out"
    return Interval(estimate=None if estimate is None else float(estimate), low=low, high=high,
                    confidence=confidence, n_resamples=n_resamples, n_valid=len(vals), note=note)


def bootstrap_ci(
    statistic: Callable[..., float | None],
    *samples: Sequence[Any],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Seeded percentile bootstrap interval of any statistic of one or more paired samples.
    `mean_score` and `points_percentage` are computed on all resamples at once (numpy), with
    the same resamples and the same sums in the same order: the same interval, bit for bit,
    in a fraction of the time (a run's summary bootstraps both)."""
    arrays = _row_arrays(statistic, samples)
    if arrays is not None and 0 < confidence < 1:
        n = len(samples[0])
        idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))  # as bootstrap_cis draws them
        values = _ON_ROWS[statistic].on_rows(idx, *arrays)
        return _interval(statistic(*samples), values.tolist(), n_resamples, confidence)
    return bootstrap_cis(
        lambda *s: {"value": statistic(*s)}, *samples,
        n_resamples=n_resamples, confidence=confidence, seed=seed,
    )["value"]


# --------------------------------------------------------------------------- proof scores


def mean_score(scores: Sequence[float]) -> float | None:
    """Mean of normalised scores; None for no scores."""
    return float(np.mean(scores)) if len(scores) else None


def pass_at_1(true_by_problem: Sequence[Sequence[float]]) -> float | None:
    """Expected true score of one sampled proof: per-problem mean over samples, then mean over
    problems (so every problem weighs the same however many samples it has). Equals best@1."""
    per_problem = [float(np.mean(s)) for s in true_by_problem if len(s)]
    if len(per_problem) != len(true_by_problem):
        raise ValueError("every problem needs at least one sample")
    return mean_score(per_problem)


def best_at_k(true_scores: Sequence[float], self_scores: Sequence[float], k: int) -> float:
    """Expected true score of the proof picked by highest self score from k of the n samples.

    Unbiased over all C(n, k) subsets, with the pick uniform among tied self scores. A subset
    picks from the group G of samples with self score v exactly when its maximum is v; there are
    C(L+g, k) - C(L, k) such subsets (L samples score below v, g = |G|), and by symmetry the
    expected pick is then the mean true score of G.
    """
    n = len(true_scores)
    if len(self_scores) != n:
        raise ValueError("true_scores and self_scores must have the same length")
    if not 1 <= k <= n:
        raise ValueError(f"best@k needs 1 <= k <= n, got k={k}, n={n}")
    groups: dict[float, list[float]] = {}
    for t, s in zip(true_scores, self_scores):
        groups.setdefault(float(s), []).append(float(t))
    total = Fraction(0)
    below = 0
    for v in sorted(groups):
        g = len(groups[v])
        weight = math.comb(below + g, k) - math.comb(below, k)  # exact integers, no overflow
        total += Fraction(weight) * Fraction(sum(groups[v])) / g
        below += g
    return float(total / math.comb(n, k))


def best_at_k_mean(
    true_by_problem: Sequence[Sequence[float]], self_by_problem: Sequence[Sequence[float]], k: int
) -> float | None:
    """best@k averaged over problems (the paper's Figure 2 curve at one k)."""
    if len(true_by_problem) != len(self_by_problem):
        raise ValueError("one list of self scores per problem is needed")
    return mean_score([best_at_k(t, s, k) for t, s in zip(true_by_problem, self_by_problem)])


def points_percentage(points: Sequence[float], max_points: float | Sequence[float] = 7.0) -> float | None:
    """The IMO-ProofBench figure: total points over total maximum, in percent."""
    if not len(points):
        return None
    maxima = [float(max_points)] * len(points) if isinstance(max_points, (int, float)) else list(max_points)
    if len(maxima) != len(points):
        raise ValueError("one max_points per problem is needed")
    return 100.0 * float(sum(points)) / float(sum(maxima))


class RowStatistic:
    """A statistic on every resample at once (`on_rows(idx, *arrays)`: one resample's indices
    per row of idx) for `arity` numeric samples; `usable(*arrays)` says when it gives what
    the plain function gives (else the plain bootstrap runs)."""

    def __init__(self, arity: int, on_rows: Callable[..., Any], usable: Callable[..., bool] = lambda *arrays: True):
        self.arity, self.on_rows, self.usable = arity, on_rows, usable


def _row_arrays(statistic: Callable[..., Any], samples: Sequence[Sequence[Any]]) -> list[Any] | None:
    """The samples as float arrays when `statistic` has a RowStatistic that fits them, else None."""
    rows = _ON_ROWS.get(statistic)
    if rows is None or len(samples) != rows.arity or not len(samples[0]) or len({len(s) for s in samples}) != 1:
        return None
    try:
        arrays = [np.asarray(s, dtype=float) for s in samples]
    except (TypeError, ValueError):  # not plain numbers: the plain function decides what that means
        return None
    return arrays if all(a.ndim == 1 for a in arrays) and rows.usable(*arrays) else None


def _row_sums(values: Any, idx: Any) -> Any:
    # cumsum adds left to right, as Python's sum() does (np.sum adds pairwise): the same floats
    return np.cumsum(values[idx], axis=1)[:, -1]


_ON_ROWS: dict[Callable[..., Any], RowStatistic] = {
    # np.mean along rows adds each row as np.mean adds the list of that resample's scores
    mean_score: RowStatistic(1, lambda idx, scores: np.mean(scores[idx], axis=1)),
    # a resample whose maxima sum to 0 raises in the plain function: left to it
    points_percentage: RowStatistic(2, lambda idx, points, maxima: 100.0 * _row_sums(points, idx)
                                    / _row_sums(maxima, idx), lambda points, maxima: bool(np.all(maxima > 0))),
}


def breakdown(
    points: Sequence[float], groups: Sequence[Hashable | None], max_points: float | Sequence[float] = 7.0
) -> dict[str, dict[str, float | int | None]]:
    """Per-group (category, level, set) n, points, maximum and percentage; None groups -> 'unknown'."""
    if len(groups) != len(points):
        raise ValueError("one group per score is needed")
    maxima = [float(max_points)] * len(points) if isinstance(max_points, (int, float)) else list(max_points)
    out: dict[str, dict[str, Any]] = {}
    for p, g, m in zip(points, groups, maxima):
        row = out.setdefault("unknown" if g is None else str(g), {"n": 0, "points": 0.0, "max_points": 0.0})
        row["n"] += 1
        row["points"] += float(p)
        row["max_points"] += m
    for row in out.values():
        row["percent"] = 100.0 * row["points"] / row["max_points"] if row["max_points"] else None
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- grader agreement


def accepts(values: Sequence[float], cut: float) -> list[bool]:
    """values >= cut, with a tolerance of EPS for grades such as 18/21 against 6/7."""
    return [float(v) >= cut - EPS for v in values]


def binary_confusion(pred_accept: Sequence[bool], human_accept: Sequence[bool]) -> dict[str, int]:
    if len(pred_accept) != len(human_accept):
        raise ValueError("prediction and human vectors must have the same length")
    c = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for p, h in zip(pred_accept, human_accept):
        c[("t" if p == h else "f") + ("p" if p else "n")] += 1
    return c


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def precision(c: Mapping[str, int]) -> float | None:
    """Of the proofs the grader accepted, the share experts accept. None if nothing accepted."""
    return _ratio(c["tp"], c["tp"] + c["fp"])


def recall(c: Mapping[str, int]) -> float | None:
    """Of the proofs experts accept, the share the grader accepted. None if experts accept none."""
    return _ratio(c["tp"], c["tp"] + c["fn"])


def accuracy(c: Mapping[str, int]) -> float | None:
    return _ratio(c["tp"] + c["tn"], sum(c.values()))


def false_accept_rate(c: Mapping[str, int]) -> float | None:
    """Of the proofs experts reject, the share the grader accepted. None if experts reject none."""
    return _ratio(c["fp"], c["fp"] + c["tn"])


def mae(pred: Sequence[float], human: Sequence[float]) -> float | None:
    return float(np.mean(np.abs(np.asarray(pred, float) - np.asarray(human, float)))) if len(pred) else None


def _is_constant(x: np.ndarray) -> bool:
    return len(x) < 2 or float(np.ptp(x)) <= EPS


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson r; None with fewer than two points or a constant vector (r is undefined)."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if _is_constant(a) or _is_constant(b):
        return None
    a, b = a - a.mean(), b - b.mean()
    r = float(a @ b / math.sqrt(float(a @ a) * float(b @ b)))
    return max(-1.0, min(1.0, r))  # rounding can push |r| a hair above 1


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rho (Pearson on average ranks); None where it is undefined."""
    if len(x) < 2:
        return None
    return pearson(scipy_stats.rankdata(x), scipy_stats.rankdata(y))


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> float | None:
    """Cohen's kappa of two raters' labels. None when chance agreement is 1 (both raters use one
    and the same label throughout), where kappa is 0/0."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same items")
    if not len(a):
        return None
    cats = list(labels) if labels is not None else sorted(set(a) | set(b), key=str)
    m = np.asarray(confusion_matrix(a, b, cats), float)
    n = m.sum()
    po = np.trace(m) / n
    pe = float(m.sum(axis=1) @ m.sum(axis=0)) / n**2
    if pe >= 1 - EPS:
        return None
    return float((po - pe) / (1 - pe))


def confusion_matrix(
    rows: Sequence[Hashable], cols: Sequence[Hashable], labels: Sequence[Hashable]
) -> list[list[int]]:
    """Counts[i][j] of items labelled labels[i] by the row rater and labels[j] by the column rater."""
    pos = {lab: i for i, lab in enumerate(labels)}
    m = [[0] * len(labels) for _ in labels]
    for r, c in zip(rows, cols, strict=True):
        if r not in pos or c not in pos:
            raise ValueError(f"label {r if r not in pos else c!r} is not in {list(labels)}")
        m[pos[r]][pos[c]] += 1
    return m


def bucket3(values: Sequence[float], partial_from: float, accept_from: float) -> list[str]:
    """Three levels: 'accept' at >= accept_from, 'partial' at >= partial_from, else 'reject'."""
    if partial_from > accept_from:
        raise ValueError("the partial edge must not lie above the acceptance edge")
    return [
        "accept" if v >= accept_from - EPS else "partial" if v >= partial_from - EPS else "reject"
        for v in map(float, values)
    ]


def _check_unit(name: str, values: Sequence[float]) -> None:
    for v in values:
        if not (isinstance(v, (int, float)) and math.isfinite(v) and -EPS <= v <= 1 + EPS):
            raise ValueError(f"{name} values must be numbers in [0, 1], got {v!r}")


def agreement_metrics(
    pred: Sequence[float],
    human: Sequence[float],
    threshold: float = DEFAULT_THRESHOLD,
    human_accept: float = HUMAN_ACCEPT,
    *,
    detail: bool = True,
) -> dict[str, Any]:
    """How well predicted scores (in [0, 1]) agree with normalised expert grades.

    A proof counts as accepted by the grader when pred >= threshold and by the experts when
    human >= human_accept (default 6/7). Undefined metrics are None and explained in `notes`.
    `detail=False` leaves out the confusion matrices and notes (used inside the bootstrap).
    """
    if len(pred) != len(human):
        raise ValueError(f"{len(pred)} predictions but {len(human)} human grades")
    _check_unit("prediction", pred)
    _check_unit("human", human)
    pa, ha = accepts(pred, threshold), accepts(human, human_accept)
    c = binary_confusion(pa, ha)
    pb = bucket3(pred, min(PRED_PARTIAL_FROM, threshold), threshold)
    hb = bucket3(human, min(HUMAN_PARTIAL_FROM, human_accept), human_accept)
    out: dict[str, Any] = {
        "n": len(pred),
        "human_accepted": sum(ha),
        "predicted_accepted": sum(pa),
        "accuracy": accuracy(c),
        "precision": precision(c),
        "recall": recall(c),
        "false_accept_rate": false_accept_rate(c),
        "mae": mae(pred, human),
        "pearson": pearson(pred, human),
        "spearman": spearman(pred, human),
        "kappa_binary": cohen_kappa(ha, pa, [False, True]),
        "kappa_3level": cohen_kappa(hb, pb, BUCKET_LABELS),
    }
    if not detail:
        return out
    out["confusion"] = c
    out["confusion_3level"] = {
        "labels": list(BUCKET_LABELS),
        "rows": "human",
        "cols": "predicted",
        "matrix": confusion_matrix(hb, pb, BUCKET_LABELS),
    }
    out["notes"] = _notes(out, pred, human)
    return out


def _notes(m: Mapping[str, Any], pred: Sequence[float], human: Sequence[float]) -> list[str]:
    why = {
        "accuracy": "no items",
        "precision": "the grader accepted nothing",
        "recall": "experts accepted nothing",
        "false_accept_rate": "experts rejected nothing",
        "mae": "no items",
        "kappa_binary": "both sides give a single label throughout (chance agreement is 1)",
        "kappa_3level": "both sides give a single label throughout (chance agreement is 1)",
    }
    notes = [f"{k} is undefined: {reason}" for k, reason in why.items() if m[k] is None]
    for key in ("pearson", "spearman"):
        if m[key] is None:
            side = "fewer than two items" if len(pred) < 2 else (
                "predictions are constant" if _is_constant(np.asarray(pred, float)) else "human grades are constant")
            notes.append(f"{key} is undefined: {side}")
    return notes

"""How well an automatic grade agrees with expert grades, overall and per set, with bootstrap
confidence intervals. Returns JSON-serialisable dicts (for `proofloop bench agreement --json`)
and a plain-text table (`format_agreement_table`) for people.

Two sources of (prediction, expert grade) pairs:
- the released DeepSeekMath-V2 outputs (`dsm2_agreement`): the prediction is the mean of 64
  verifier scores (`average_automatic_rating`), the truth the expert grade;
- two files joined on an id (`file_agreement`); an id present on one side only is reported.

    >>> from proofloop.bench.agreement import agreement_report, format_agreement_table
    >>> r = agreement_report([1.0, 0.9, 0.3, 1.0], [1.0, 0.0, 0.0, 6 / 7], groups=["a", "a", "b", "b"],
    ...                      n_resamples=200)
    >>> r["overall"]["precision"], r["overall"]["recall"], sorted(r["groups"])
    (0.6666666666666666, 1.0, ['a', 'b'])
    >>> print(format_agreement_table(r).splitlines()[0])
    Agreement: predicted >= 0.75 vs expert normalised >= 0.8571 (n=4; [95% bootstrap CI])
    >>> dsm2_agreement("../shared/data", threshold=0.75)["overall"]["precision"]  # doctest: +SKIP
    0.9066666666666666
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from proofloop.bench import metrics as M
from proofloop.bench.datasets import load_dsm2_outputs, normalise_grade, read_rows
from proofloop.errors import UserInputError

CI_METRICS = ("accuracy", "precision", "recall", "false_accept_rate", "mae", "pearson", "spearman",
              "kappa_binary", "kappa_3level")


def _rules(threshold: float, human_accept: float) -> dict[str, str]:
    human = f"expert grade normalised to [0, 1] >= {human_accept:.4f}"
    if abs(human_accept - 6 / 7) < M.EPS:
        human += " (6 of 7 points; 18 of 21 for CMO; 8.57 of 10 for Putnam)"
    return {
        "predicted_accept": f"predicted score >= {threshold:g}",
        "human_accept": human,
        "false_accept_rate": "accepted by the grader among the proofs experts reject",
        "buckets_predicted": f"reject < {min(M.PRED_PARTIAL_FROM, threshold):g} <= partial < {threshold:g} <= accept",
        "buckets_human": f"reject (no credit) < {min(M.HUMAN_PARTIAL_FROM, human_accept):g} <= partial"
                         f" < {human_accept:.4f} <= accept",
    }


def _scope(pred: Sequence[float], human: Sequence[float], threshold: float, human_accept: float,
           n_resamples: int, confidence: float, seed: int) -> dict[str, Any]:
    out = M.agreement_metrics(pred, human, threshold, human_accept)
    cis = M.bootstrap_cis(
        lambda p, h: M.agreement_metrics(p, h, threshold, human_accept, detail=False),
        list(pred), list(human), n_resamples=n_resamples, confidence=confidence, seed=seed,
    )
    out["ci"] = {k: {"low": cis[k].low, "high": cis[k].high, "n_valid": cis[k].n_valid, "note": cis[k].note}
                 for k in CI_METRICS}
    return out


def agreement_report(
    pred: Sequence[float],
    human_normalised: Sequence[float],
    groups: Sequence[str] | None = None,
    threshold: float = M.DEFAULT_THRESHOLD,
    human_accept: float = M.HUMAN_ACCEPT,
    *,
    ids: Sequence[str] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Agreement metrics overall and per group, each with percentile bootstrap intervals
    (items resampled, seeded), plus the lists of false accepts and false rejects."""
    n = len(pred)
    if len(human_normalised) != n or (groups is not None and len(groups) != n) or (ids is not None and len(ids) != n):
        raise ValueError("pred, human_normalised, groups and ids must have the same length")
    if n == 0:
        raise UserInputError("no (prediction, expert grade) pairs to compare")
    args = (threshold, human_accept, n_resamples, confidence, seed)
    report: dict[str, Any] = {
        "n": n,
        "threshold": threshold,
        "human_accept": human_accept,
        "rules": _rules(threshold, human_accept),
        "bootstrap": {"method": "percentile, items resampled with replacement", "n_resamples": n_resamples,
                      "confidence": confidence, "seed": seed},
        "overall": _scope(pred, human_normalised, *args),
        "groups": {},
    }
    if groups is not None:
        for g in dict.fromkeys(groups):  # first-appearance order
            idx = [i for i, x in enumerate(groups) if x == g]
            report["groups"][g] = _scope([pred[i] for i in idx], [human_normalised[i] for i in idx], *args)
    names = list(ids) if ids is not None else [str(i) for i in range(n)]
    pa, ha = M.accepts(pred, threshold), M.accepts(human_normalised, human_accept)
    for key, want in (("false_accepts", (True, False)), ("false_rejects", (False, True))):
        report[key] = [
            {"id": names[i], "group": None if groups is None else groups[i],
             "pred": float(pred[i]), "human": float(human_normalised[i])}
            for i in range(n) if (pa[i], ha[i]) == want
        ]
    return report


def dsm2_agreement(
    data_dir: str | os.PathLike[str] | None = None,
    threshold: float = M.DEFAULT_THRESHOLD,
    human_accept: float = M.HUMAN_ACCEPT,
    *,
    sets: Sequence[str] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Agreement of DeepSeekMath-V2's 64-sample automatic rating with the expert grades over
    the released outputs (84 proofs), overall and per set."""
    proofs = load_dsm2_outputs(data_dir, sets)
    missing = [p.problem_id for p in proofs if p.auto_rating is None]
    if missing:
        raise UserInputError(f"dsm2 outputs without average_automatic_rating: {missing[:5]}")
    report = agreement_report(
        [p.auto_rating for p in proofs],  # type: ignore[misc]
        [p.human_normalised for p in proofs],
        [p.set_name for p in proofs],
        threshold, human_accept,
        ids=[p.problem_id for p in proofs], n_resamples=n_resamples, confidence=confidence, seed=seed,
    )
    report["dataset"] = "dsm2-outputs"
    report["prediction"] = "average_automatic_rating (mean of 64 verifier scores)"
    report["truth"] = "human_rating (expert grade, normalised by the set's scale)"
    return report


# --------------------------------------------------------------------------- --pred FILE --human FILE


def load_scores(
    path: str | os.PathLike[str], *, id_field: str = "id", score_field: str = "score", group_field: str | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """{id: score} (and {id: group} when group_field is given) from a JSONL/JSON/CSV/parquet file.
    A duplicate id, a missing field or a non-numeric score is an error, not a skipped row."""
    scores: dict[str, float] = {}
    groups: dict[str, str] = {}
    for i, row in enumerate(read_rows(path), 1):
        for f in (id_field, score_field) + ((group_field,) if group_field else ()):
            if f not in row or row[f] is None or str(row[f]).strip() == "":
                raise UserInputError(f"{path}: row {i} has no {f!r} field")
        key = str(row[id_field])
        if key in scores:
            raise UserInputError(f"{path}: id {key!r} appears twice")
        try:
            value = float(row[score_field])
        except (TypeError, ValueError):
            raise UserInputError(f"{path}: row {i}: score {row[score_field]!r} is not a number") from None
        if not math.isfinite(value):
            raise UserInputError(f"{path}: row {i}: score {value} is not finite")
        scores[key] = value
        if group_field:
            groups[key] = str(row[group_field])
    return scores, groups


def join_scores(pred: Mapping[str, float], human: Mapping[str, float]) -> dict[str, list]:
    """Inner join on id, in the human file's order; ids found on one side only are listed."""
    ids = [k for k in human if k in pred]
    return {
        "ids": ids,
        "pred": [pred[k] for k in ids],
        "human": [human[k] for k in ids],
        "missing_in_pred": [k for k in human if k not in pred],
        "missing_in_human": [k for k in pred if k not in human],
    }


def file_agreement(
    pred_path: str | os.PathLike[str],
    human_path: str | os.PathLike[str],
    threshold: float = M.DEFAULT_THRESHOLD,
    human_accept: float = M.HUMAN_ACCEPT,
    *,
    id_field: str = "id",
    pred_field: str = "score",
    human_field: str = "score",
    human_max_points: float = 1.0,
    group_field: str | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Agreement between a predictions file and an expert-grades file joined on `id_field`.

    Predictions must lie in [0, 1]; expert grades are divided by `human_max_points` (7 for
    IMO-style grades). `group_field`, read from the human file, splits the report per group.
    """
    pred, _ = load_scores(pred_path, id_field=id_field, score_field=pred_field)
    human_raw, groups = load_scores(human_path, id_field=id_field, score_field=human_field, group_field=group_field)
    bad = [k for k, v in pred.items() if not 0 <= v <= 1]
    if bad:
        raise UserInputError(f"{pred_path}: predictions must lie in [0, 1]; id {bad[0]!r} has {pred[bad[0]]}")
    human: dict[str, float] = {}
    for k, v in human_raw.items():
        try:
            human[k] = normalise_grade(v, human_max_points)
        except ValueError as e:
            raise UserInputError(f"{human_path}: id {k!r}: {e} (set the human grade scale, e.g. --human-max-points 7)") from None
    joined = join_scores(pred, human)
    if not joined["ids"]:
        raise UserInputError(f"no common ids between {pred_path} and {human_path} (joined on {id_field!r})")
    report = agreement_report(
        joined["pred"], joined["human"], [groups[k] for k in joined["ids"]] if group_field else None,
        threshold, human_accept, ids=joined["ids"], n_resamples=n_resamples, confidence=confidence, seed=seed,
    )
    report["pred_file"], report["human_file"] = str(pred_path), str(human_path)
    report["unmatched"] = {"missing_in_pred": joined["missing_in_pred"], "missing_in_human": joined["missing_in_human"]}
    report["notes"] = [
        f"{len(v)} id(s) {where}: {', '.join(v[:10])}{' ...' if len(v) > 10 else ''}"
        for v, where in ((joined["missing_in_pred"], "have an expert grade but no prediction"),
                         (joined["missing_in_human"], "have a prediction but no expert grade"))
        if v
    ]
    return report


# --------------------------------------------------------------------------- text output


def _f(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _ci(scope: Mapping[str, Any], key: str) -> str:
    ci = scope["ci"][key]
    return f"{_f(scope[key])} [{_f(ci['low'])},{_f(ci['high'])}]"


def format_agreement_table(report: Mapping[str, Any]) -> str:
    """A fixed-width table of a report from agreement_report / dsm2_agreement / file_agreement."""
    conf = round(100 * report["bootstrap"]["confidence"])
    lines = [
        f"Agreement: predicted >= {report['threshold']:g} vs expert normalised >= {report['human_accept']:.4f}"
        f" (n={report['n']}; [{conf}% bootstrap CI])",
        f"{'set':<26}{'n':>4}{'TP':>4}{'FP':>4}{'FN':>4}{'TN':>4}  {'precision':<18}{'recall':<18}"
        f"{'accuracy':<18}{'FAR':>6}{'MAE':>6}{'r':>7}{'rho':>7}{'k2':>7}{'k3':>7}",
    ]
    scopes = [("overall", report["overall"])] + list(report["groups"].items())
    for name, s in scopes:
        c = s["confusion"]
        lines.append(
            f"{name[:25]:<26}{s['n']:>4}{c['tp']:>4}{c['fp']:>4}{c['fn']:>4}{c['tn']:>4}  "
            f"{_ci(s, 'precision'):<18}{_ci(s, 'recall'):<18}{_ci(s, 'accuracy'):<18}"
            f"{_f(s['false_accept_rate']):>6}{_f(s['mae']):>6}{_f(s['pearson']):>7}{_f(s['spearman']):>7}"
            f"{_f(s['kappa_binary']):>7}{_f(s['kappa_3level']):>7}"
        )
    for key, title in (("false_accepts", "False accepts"), ("false_rejects", "False rejects")):
        items = report.get(key) or []
        if items:
            lines.append(f"{title} ({len(items)}): " + ", ".join(
                f"{x['id']} (pred {x['pred']:.3f}, expert {x['human']:.3f})" for x in items))
    notes = list(report.get("notes", []))
    for name, s in scopes:
        notes += [f"{name}: {note}" for note in s["notes"]]
    if notes:
        lines.append("Notes:")
        lines += [f"  - {n}" for n in notes]
    return "\n".join(lines)

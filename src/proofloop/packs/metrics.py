"""Agreement of a verifier with labels, the metrics every pack reports in `bench`.

Pure Python (no numpy: packs stay light). A verifier *accepts* a candidate when its score is
1 (the mean of its analyses at least `accept_at`, default 1: every analysis gave 1); a label
accepts when it is 1. Precision and recall are about accepting right candidates; the
false-accept rate is the share of wrong candidates the verifier accepted; kappa is Cohen's
kappa of the two accept / reject decisions; defect recall is the share of wrong candidates
rejected (1 - the false-accept rate), the recall of seeded defects for the code pack.

    >>> m = agreement([1, 1, 0.5, 0, 1], [1, 0, 1, 0, 1])
    >>> m["precision"], m["recall"], m["false_accept_rate"], round(m["kappa"], 3)
    (0.6666666666666666, 0.6666666666666666, 0.5, 0.167)
    >>> agreement([], [])["n"]
    0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

EPS = 1e-9


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def cohen_kappa_binary(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Cohen's kappa of two yes/no raters; None when chance agreement is 1 (kappa is 0/0)."""
    n = len(a)
    if n != len(b):
        raise ValueError("both raters must rate the same items")
    if not n:
        return None
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    if chance >= 1 - EPS:
        return None
    return (observed - chance) / (1 - chance)


def agreement(scores: Sequence[float], labels: Sequence[float], accept_at: float = 1.0) -> dict[str, Any]:
    """Precision, recall, false-accept rate (at `accept_at`), accuracy and kappa of the verifier's
    accept decisions against the labels (a label accepts when it is 1)."""
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    pred = [s >= accept_at - EPS for s in scores]
    gold = [lab >= 1 - EPS for lab in labels]
    tp = sum(p and g for p, g in zip(pred, gold))
    fp = sum(p and not g for p, g in zip(pred, gold))
    fn = sum(g and not p for p, g in zip(pred, gold))
    tn = len(pred) - tp - fp - fn
    return {"n": len(pred), "accept_at": accept_at, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "false_accept_rate": _ratio(fp, fp + tn),
            # recall of defects: the share of wrong candidates (seeded defects, for the code pack) rejected
            "defect_recall": _ratio(tn, fp + tn), "accuracy": _ratio(tp + tn, len(pred)),
            "kappa": cohen_kappa_binary(pred, gold)}


def invented_issue_rate(rejected: Sequence[bool]) -> dict[str, Any]:
    """The meta-verifier's verdicts on analyses that reported issues (True: it rejected the
    analysis, its issues invented) -> how many were rated, how many rejected, and the share.

    >>> invented_issue_rate([True, False, False, True])
    {'rated': 4, 'rejected': 2, 'invented_issue_rate': 0.5}
    """
    k = sum(bool(r) for r in rejected)
    return {"rated": len(rejected), "rejected": k, "invented_issue_rate": _ratio(k, len(rejected))}

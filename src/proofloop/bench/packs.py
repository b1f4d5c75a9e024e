"""Benchmarks of a domain pack: its labelled data graded by the verifier, and the pack's
metrics of agreement between the verifier and the labels.

`pack_rows` reads a pack's data set (with any executable evidence folded into each problem,
its record kept with the proof) as rows for a `bench-grade` run; `pack_summary` adds the
pack's metrics, overall and per set, to that run's summary.

    proofloop bench pack --pack law --dataset hearsay --data-dir ../shared/data -n 4
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proofloop.bench.grading import proof_grades
from proofloop.packs import DEFAULT_PACK, Pack, get_pack, with_evidence
from proofloop.store import Store


def pack_rows(pack: Pack, dataset: str, data_dir: str | Path | None, limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` rows of `dataset`, each problem shown with the pack's evidence."""
    rows = pack.load(dataset, data_dir, limit)
    out = []
    for row in rows:
        shown, evidence = with_evidence(pack, row["statement"], row["proof"])
        out.append({**row, "statement": shown, **({"evidence": evidence} if evidence is not None else {})})
    return out


def pack_summary(store: Store, run_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """{"pack_metrics": ...} for a run of a pack with metrics and labels; {} otherwise."""
    name = config.get("pack", DEFAULT_PACK)
    grader = (config.get("grader") or {}).get("name")
    pack = get_pack(name)
    if pack.metrics is None or name == DEFAULT_PACK or grader in (None, "human"):
        return {}
    grades = store.grades(run_id)
    pred, truth = proof_grades(grades, grader), proof_grades(grades, "human")
    sets = {p.id: (p.meta or {}).get("set") or "all" for p in store.problems(run_id)}
    set_of = {proof.id: sets.get(proof.problem_id, "all") for proof in store.proofs(run_id)}
    pairs = [(pid, pred[pid].normalised, t.normalised) for pid, t in truth.items()
             if pid in pred and pred[pid].normalised is not None and t.normalised is not None]
    scored = [(s, h) for _, s, h in pairs]
    by_set: dict[str, list[tuple[float, float]]] = {}
    for pid, s, h in pairs:
        by_set.setdefault(set_of.get(pid, "all"), []).append((s, h))
    return {"pack_metrics": {
        "pack": name, "unscored": sorted(set(truth) - {pid for pid, _, _ in pairs}),
        "overall": pack.metrics([s for s, _ in scored], [h for _, h in scored]),
        "sets": {k: pack.metrics([s for s, _ in v], [h for _, h in v]) for k, v in sorted(by_set.items())}}}


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}".replace("-0.000", "0.000")


def render_pack_metrics(summary: Mapping[str, Any]) -> list[str]:
    """Lines for the pack metrics of a summary (none when it has none)."""
    pm = summary.get("pack_metrics")
    if not pm:
        return []
    lines = [f"pack {pm['pack']}: verifier vs labels (accept = score >= {pm['overall'].get('accept_at', 1)})"]
    for scope, m in [("overall", pm["overall"]), *pm["sets"].items()]:
        lines.append(f"  {scope:<24} n={m['n']:<4} precision={_num(m['precision'])} recall={_num(m['recall'])} "
                     f"false-accept={_num(m['false_accept_rate'])} defects-caught={_num(m['defect_recall'])} "
                     f"kappa={_num(m['kappa'])}")
    if pm["unscored"]:
        lines.append(f"  unscored (no usable verifier score): {len(pm['unscored'])}")
    return lines

"""Benchmarks of a domain pack: its labelled data graded by the verifier, and the pack's
metrics of agreement between the verifier and the labels.

`pack_rows` reads a pack's data set (with any executable evidence folded into each problem,
its record kept with the proof) as rows for a `bench-grade` run; `pack_summary` adds the
pack's metrics, overall and per set, to that run's summary. With `--meta M` the run also
meta-verifies (M ratings each) every analysis that reported issues (`meta_verify_issues`),
and the summary gives the share the meta-verifier rejected as invented.

    proofloop bench pack --pack law --dataset hearsay --data-dir ../shared/data -n 4 --meta 2
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from proofloop.bench.grading import GRADE_START, proof_grades
from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.packs import DEFAULT_PACK, Pack, get_pack, with_evidence
from proofloop.packs.metrics import invented_issue_rate
from proofloop.protocol import Templates
from proofloop.roles import meta_verify
from proofloop.search.decisions import finds_issues, meta_rejected
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
        "sets": {k: pack.metrics([s for s, _ in v], [h for _, h in v]) for k, v in sorted(by_set.items())},
        **({"meta": invented_issues(store, run_id)} if (config.get("grader") or {}).get("meta") else {})}}


async def meta_verify_issues(store: Store, run_id: str, model: Model, *, m: int, sampling: Sampling,
                             templates: Templates | None = None) -> None:
    """m meta-verifier ratings of every stored analysis of the run that reported issues
    (a valid score below 1), each recorded as it comes (a resume replays the cached calls)."""
    proofs = {p.id: p for p in store.proofs(run_id)}
    problems = {p.id: p.text for p in store.problems(run_id)}
    finding = [v for v in store.verifications(run_id) if v.status == "ok" and finds_issues(v.score)
               and (v.analysis or v.raw or "").strip()]

    async def one(v: Any) -> None:
        proof = proofs[v.proof_id]
        ratings = await meta_verify(model, problems[proof.problem_id], proof.solution or proof.raw, v.analysis or v.raw,
                                    sampling=sampling, m=m, start=GRADE_START, templates=templates)
        for r in ratings:
            store.add_meta_verification(run_id, r.id, verification_id=v.id, raw=r.raw or "", status=r.status.value,
                                        reasoning=r.reasoning, analysis=r.analysis, rating=r.rating, cause=r.cause,
                                        meta={"grader": "meta-verifier"})

    await asyncio.gather(*(one(v) for v in finding))


def invented_issues(store: Store, run_id: str) -> dict[str, Any]:
    """The share of the run's meta-verified analyses the meta-verifier rejected (search's rule:
    most valid ratings 0), with the counts; failed ratings count as no verdict."""
    ratings: dict[str, list[float | None]] = {}
    for r in store.meta_verifications(run_id):
        ratings.setdefault(r.verification_id, []).append(r.rating if r.status == "ok" else None)
    verdicts = [meta_rejected(rs) for rs in ratings.values() if any(x is not None for x in rs)]
    return {**invented_issue_rate(verdicts), "unrated": sum(1 for rs in ratings.values() if all(x is None for x in rs))}


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
    if pm.get("meta"):
        mm = pm["meta"]
        lines.append(f"  meta-verifier: {mm['rejected']} of {mm['rated']} issue-reporting analyses rejected as invented "
                     f"(rate {_num(mm['invented_issue_rate'])}; {mm['unrated']} without a valid rating)")
    if pm["unscored"]:
        lines.append(f"  unscored (no usable verifier score): {len(pm['unscored'])}")
    return lines

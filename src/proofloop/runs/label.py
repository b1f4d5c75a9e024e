"""The `label` run kind: automatic labelling (paper §2.3; the rule and pipeline are in
proofloop/label.py) as a stored, resumable run over many proofs.

Every input proof is stored as a proof of the run (its input id, position and other columns in
`meta`), so a resume needs nothing but the store. The outputs (JSONL and/or parquet rows ready
for training) are written whole at the end of each execution.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from proofloop.errors import UserInputError
from proofloop.label import (LabelItem, LabelRule, Status, label_items, result_row, write_jsonl,
                             write_parquet)
from proofloop.protocol.types import ParseStatus
from proofloop.runs.context import ModelSetup, RunContext, new_run
from proofloop.runs.registry import RunKind, register
from proofloop.runs.render import usage_line
from proofloop.store import Store

WORKER_PARALLEL = 16  # proofs one label worker labels at once (each sends n verifications, then metas)


def create_label_run(store: Store, items: Sequence[LabelItem], setup: ModelSetup, *, n: int, rule: LabelRule,
                     output: str | Path | None = None, parquet: str | Path | None = None,
                     source: str | None = None) -> str:
    """A run of kind "label": its config holds n and the rule, and the input proofs are stored."""
    if n < 1:
        raise UserInputError(f"-n must be at least 1 (got {n})")
    if rule.k > n:
        raise UserInputError(f"k={rule.k} exceeds n={n}: no proof could be labelled below 1")
    if not items:
        raise UserInputError("no proofs to label")
    run_id = new_run(store, "label", setup.resolved(), n=n, rule=rule_config(rule),
                     output=str(Path(output).resolve()) if output else None,
                     parquet=str(Path(parquet).resolve()) if parquet else None, source=source, proofs=len(items))
    if output is None and parquet is None:  # always leave a file behind
        store.update_run_config(run_id, {"output": str(Path(f"labels-{run_id}.jsonl").resolve())})
    problem_ids: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.problem not in problem_ids:
            problem_ids[item.problem] = store.add_problem(run_id, item.problem)
        store.add_proof(run_id, item.id, problem_id=problem_ids[item.problem], raw=item.proof,
                        solution=item.proof, status=ParseStatus.OK.value,
                        meta={"index": i, "extra": json.loads(json.dumps(item.extra, default=str))})
    return run_id


def rule_config(rule: LabelRule) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in LabelRule.__dataclass_fields__}


def stored_items(store: Store, run_id: str) -> list[LabelItem]:
    """The run's input proofs, in input order."""
    problems = {p.id: p.text for p in store.problems(run_id)}
    proofs = sorted(store.proofs(run_id), key=lambda p: p.meta.get("index", 0))
    return [LabelItem(id=p.id, problem=problems[p.problem_id], proof=p.raw, extra=p.meta.get("extra") or {})
            for p in proofs]


async def execute_label(ctx: RunContext) -> dict[str, Any]:
    """Do (or finish) a label run, write the outputs, return the summary."""
    config, store = ctx.config, ctx.store
    rule = LabelRule(**{"lowest": "valid", **config["rule"]})  # runs stored before `lowest` existed
    n = config["n"]
    if ctx.work is not None:  # a worker (runs/workers.py): the proofs it claims; the last one writes the outputs
        async def one(item: LabelItem) -> None:
            await label_items(ctx.search.verifier, [item], n=n, rule=rule, verify_sampling=ctx.search.verify_sampling,
                              meta_sampling=ctx.search.meta_sampling, templates=ctx.search.templates,
                              recorder=ctx.recorder)

        await ctx.work.each({i.id: i for i in stored_items(store, ctx.run_id)}, one, parallel=WORKER_PARALLEL)
        return {}
    results = await label_items(ctx.search.verifier, stored_items(store, ctx.run_id), n=n, rule=rule,
                                verify_sampling=ctx.search.verify_sampling, meta_sampling=ctx.search.meta_sampling,
                                templates=ctx.search.templates, recorder=ctx.recorder, evidence=ctx.search.evidence)
    keys = [a.id for lp in results for a in lp.analyses] + [
        r.id for lp in results for rs in lp.ratings.values() for r in rs]
    call_times = {c.key: c.created_at for c in store.calls(keys=keys)}
    provenance = {"run_id": ctx.run_id, "model": ctx.search.verifier.model,
                  "provider": config["model"].get("provider"), "labelled_at": datetime.now(timezone.utc).isoformat()}
    rows = [result_row(lp, rule, n, provenance, call_times) for lp in results]
    if config.get("output"):
        write_jsonl(rows, config["output"])
    if config.get("parquet"):
        write_parquet(rows, config["parquet"])
    return summarise(rows, config)


def summarise(rows: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> dict[str, Any]:
    statuses = Counter(r["status"] for r in rows)
    labels = Counter(f"{r['score']:g}" for r in rows if r["status"] == Status.LABELLED.value)
    return {"kind": "label", "proofs": len(rows), "n": config["n"], **config["rule"],
            "statuses": {s.value: statuses.get(s.value, 0) for s in Status},
            "labels": {s: labels.get(s, 0) for s in ("0", "0.5", "1")},
            "errors": [{"id": r["id"], "reason": r["reason"]} for r in rows if r["status"] == "error"][:20],
            "output": config.get("output"), "parquet": config.get("parquet")}


def render_label(summary: dict[str, Any]) -> list[str]:
    s, labels = summary["statuses"], summary["labels"]
    lines = [f"labelled {s['labelled']} (0: {labels['0']}, 0.5: {labels['0.5']}, 1: {labels['1']})   "
             f"discarded {s['discarded']}   human {s['human']}   error {s['error']}   of {summary['proofs']}"]
    lines += [f"   error {e['id']}: {e['reason']}" for e in summary["errors"][:5]]
    lines += [f"{what}: {summary[what]}" for what in ("output", "parquet") if summary.get(what)]
    return lines + [usage_line(summary)]


register(RunKind("label", execute_label, render_label))

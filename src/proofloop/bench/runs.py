"""Benchmark runs in the run store: prove a dataset then grade, or grade proofs that exist.

Two run kinds, registered in the runs registry (found through the `proofloop.run_kinds`
entry points), both resumable with `proofloop resume RUN`:

- `bench`: every problem of a dataset is solved by a search strategy; the proof it chooses
  (or, with grade_all, every proof with a solution) is graded. The config holds the dataset
  name or path, data_dir, limit/ids, strategy and options, grader and n, model settings: all
  that a resume needs. Problems are re-read from the dataset and re-recorded (a no-op).
- `bench-grade`: proofs imported at creation (a JSONL/CSV file, the released dsm2 outputs or
  another run's proofs) are graded; nothing is generated. Human grades (and dsm2's released
  64-sample rating, grader "dsm2-auto") that come with the proofs are stored as grades too.

Every LLM call goes through the Model wrapper with namespace = run id, so a killed run
resumes without repeating a finished call. `run_metrics` turns a run's grades into metrics
with bootstrap intervals (bench/metrics.py) for `bench report`.

    >>> from proofloop.store import Store
    >>> from proofloop.models.factory import ModelSettings
    >>> from proofloop.runs import ModelSetup, get_kind
    >>> store = Store(":memory:")
    >>> run = create_grade_run(store, ModelSetup(ModelSettings(provider="sim")), grader="human",
    ...                        rows=[{"id": "a", "statement": "P", "proof": "Q", "human_grade": 7}])
    >>> run_metrics(store, run, n_resamples=50)["graders"]["human"]["mean_score"]["estimate"]
    1.0
    >>> get_kind("bench-grade").name
    'bench-grade'
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from proofloop.bench import metrics as M
from proofloop.bench.agreement import agreement_report, load_scores
from proofloop.bench.datasets import normalise_grade
from proofloop.bench.datasets import GradedProof, Problem, load_dataset, read_rows
from proofloop.bench.packs import meta_verify_issues, pack_summary, render_pack_metrics
from proofloop.bench.grading import (AUTOMATIC_GRADERS, RELEASED_AUTO, GradeItem, grade_items, human_grade,
                                     proof_grades)
from proofloop.errors import UserInputError
from proofloop.models.factory import ModelSettings
from proofloop.models.wrapper import Model
from proofloop.protocol.autograde import load_template
from proofloop.roles import text_id
from proofloop.runs import ModelSetup, RunContext, RunKind, new_run, register, run_config
from proofloop.runs.render import usage_line
from proofloop.search import make_strategy
from proofloop.search.base import usable
from proofloop.store import Proof, RunRecords, Store

BENCH_KINDS = ("bench", "bench-grade")
__all__ = ["BENCH_KINDS", "create_bench_run", "create_grade_run", "execute_bench", "run_metrics", "run_agreement",
           "proof_rows"]

# Column names accepted in a --proofs file, per field (first match wins).
PROOF_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id", "proof_id"),
    "problem_id": ("problem_id", "problem_idx"),
    "statement": ("statement", "problem", "question"),
    "proof": ("proof",),
    "reference_solution": ("reference_solution", "reference", "solution"),
    "guidelines": ("guidelines", "grading_guidelines", "grading guidelines"),
    "human_grade": ("human_grade", "human", "expert_grade"),
    "max_points": ("max_points",),
    "self_score": ("self_score",),
    "category": ("category", "type"),
    "level": ("level",),
    "set": ("set", "set_name"),
}


# ---------------------------------------------------------------------------- configuration


def _grader_config(grader: str, n: int, grader_settings: ModelSettings | None,
                   autograde_template: str | Path | None) -> dict[str, Any]:
    if grader not in AUTOMATIC_GRADERS:
        raise UserInputError(f"unknown grader {grader!r}; choose one of {', '.join(AUTOMATIC_GRADERS)}")
    if n < 1:
        raise UserInputError(f"the grader needs n >= 1, got {n}")
    model = None
    if grader_settings is not None:
        model = dataclasses.asdict(grader_settings.resolved(None)[0])
    # The template text itself is stored, so a resumed run asks in the very same words.
    template = load_template(autograde_template) if grader == "autograder" else None
    return {"name": grader, "n": n, "model": model, "template": template}


def _select(problems: list[Problem], ids: Sequence[str] | None, limit: int | None) -> list[Problem]:
    if ids:
        known = {p.id: p for p in problems}
        missing = [i for i in ids if i not in known]
        if missing:
            raise UserInputError(f"unknown problem id(s) {missing[:5]}; e.g. {', '.join(list(known)[:5])}")
        problems = [known[i] for i in ids]
    if limit is not None:
        if limit < 1:
            raise UserInputError(f"--limit must be at least 1, got {limit}")
        problems = problems[:limit]
    if not problems:
        raise UserInputError("no problems selected")
    return problems


def bench_problems(config: Mapping[str, Any]) -> list[Problem]:
    """The problems a bench config names, in order (re-read on resume)."""
    options = {"fields": config["fields"]} if config.get("fields") else {}
    loaded = load_dataset(config["dataset"], config.get("data_dir"), **options)
    if loaded and isinstance(loaded[0], GradedProof):
        raise UserInputError(f"{config['dataset']} holds graded proofs, not problems: "
                             "grade them with `proofloop bench grade --dataset` instead")
    return _select(list(loaded), config.get("ids"), config.get("limit"))  # type: ignore[arg-type]


def _problem_meta(p: Problem, dataset: str) -> dict[str, Any]:
    return {"problem_id": p.id, "dataset": dataset, "category": p.category, "level": p.level,
            "set": p.meta.get("set") or p.source or dataset, "max_points": p.max_points,
            "reference_solution": p.reference_solution, "guidelines": p.grading_guidelines}


def create_bench_run(store: Store, dataset: str, setup: ModelSetup, *, data_dir: str | Path | None = None,
                     limit: int | None = None, ids: Sequence[str] | None = None, fields: Sequence[str] | None = None,
                     strategy: str = "single", options: dict[str, Any] | None = None, grader: str = "verifier",
                     n: int = 4, grade_all: bool = False, grader_settings: ModelSettings | None = None,
                     autograde_template: str | Path | None = None, parallel_problems: int = 4,
                     run_budget: dict[str, float] | None = None) -> str:
    """A `bench` run: solve every selected problem with `strategy`, then grade. `run_budget`
    (tokens / cost_usd / wall_s) is shared by all problems of the run. Bad input
    (unknown dataset, strategy option, problem id; autograder without reference solutions)
    fails here, before a run exists."""
    setup = setup.resolved()
    make_strategy(strategy, **(options or {}))
    if parallel_problems < 1:
        raise UserInputError(f"--parallel-problems must be at least 1, got {parallel_problems}")
    path = Path(dataset)
    config = dict(
        dataset=str(path.resolve()) if path.exists() else dataset,
        data_dir=str(Path(data_dir).resolve()) if data_dir is not None else None,
        limit=limit, ids=list(ids) if ids else None, fields=list(fields) if fields else None,
        strategy=strategy, options=options or {}, seed=setup.seed or 0, grade_all=grade_all,
        parallel_problems=parallel_problems, grader=_grader_config(grader, n, grader_settings, autograde_template),
        run_budget={k: v for k, v in (run_budget or {}).items() if v is not None} or None)
    problems = bench_problems(config)
    if grader == "autograder":
        lacking = [p.id for p in problems if not p.reference_solution]
        if lacking:
            raise UserInputError(f"the autograder needs reference solutions; {len(lacking)} problem(s) lack one "
                                 f"({', '.join(lacking[:5])}): use --grader verifier")
    run_id = new_run(store, "bench", setup, **config)
    for p in problems:
        store.add_problem(run_id, p.statement, meta=_problem_meta(p, dataset), name=p.id)
    return run_id


# ---------------------------------------------------------------------------- grade runs: inputs


def _pick(row: Mapping[str, Any], name: str) -> Any:
    for col in PROOF_COLUMNS[name]:
        value = row.get(col)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return value
    return None


def _number(value: Any, what: str, where: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"{where}: {what} {value!r} is not a number") from None


def proof_rows(rows: Sequence[Mapping[str, Any]], origin: str = "rows") -> list[dict[str, Any]]:
    """Normalise --proofs rows to the fields of PROOF_COLUMNS (statement and proof required)."""
    out = []
    for i, row in enumerate(rows, 1):
        where = f"{origin}: row {i}"
        r = {name: _pick(row, name) for name in PROOF_COLUMNS}
        for need in ("statement", "proof"):
            if r[need] is None:
                raise UserInputError(f"{where} has no {need} (columns: {', '.join(PROOF_COLUMNS[need])})")
        for key in ("human_grade", "max_points", "self_score"):
            r[key] = _number(r[key], key, where)
        r["max_points"] = r["max_points"] or 7.0
        r["problem_id"] = str(r["problem_id"]) if r["problem_id"] is not None else None
        r["id"] = str(r["id"]) if r["id"] is not None else (
            f"{r['problem_id']}:{text_id(r['proof'])}" if r["problem_id"] else text_id(str(r["statement"]) + str(r["proof"])))
        r["meta"] = {k: v for k, v in row.items() if not any(k in cols for cols in PROOF_COLUMNS.values())}
        out.append(r)
    seen: set[str] = set()
    for r in out:
        if r["id"] in seen:
            raise UserInputError(f"{origin}: proof id {r['id']!r} appears twice")
        seen.add(r["id"])
    return out


def _dsm2_rows(data_dir: str | Path | None) -> list[dict[str, Any]]:
    rows = []
    for g in load_dataset("dsm2-outputs", data_dir):
        assert isinstance(g, GradedProof)
        rows.append({"id": g.problem_id, "problem_id": g.problem_id, "statement": g.statement, "proof": g.proof,
                     "reference_solution": g.meta.get("solution"), "guidelines": g.meta.get("grading guidelines"),
                     "human_grade": g.human_grade, "max_points": g.max_points, "self_score": None,
                     "category": g.category, "level": g.level, "set": g.set_name,
                     "released_rating": g.auto_rating, "meta": {}})
    return rows


def _source_run_rows(store: Store, source_run: str, which: str) -> list[dict[str, Any]]:
    if store.get_run(source_run) is None:
        raise UserInputError(f"no run {source_run!r} in the run store")
    if which not in ("chosen", "all"):
        raise UserInputError(f"which proofs to grade: 'chosen' or 'all', got {which!r}")
    problems = {p.id: p for p in store.problems(source_run)}
    rows = []
    for proof in store.proofs(source_run):
        prob = problems[proof.problem_id]
        chosen = prob.meta.get("chosen_proof_id") == proof.id
        if not proof.solution or (which == "chosen" and not chosen):
            continue
        m = prob.meta
        rows.append({"id": proof.id, "problem_id": m.get("problem_id") or prob.name or str(prob.id),
                     "statement": prob.text, "proof": proof.solution, "reference_solution": m.get("reference_solution"),
                     "guidelines": m.get("guidelines"), "human_grade": None, "max_points": m.get("max_points") or 7.0,
                     "self_score": proof.self_score, "category": m.get("category"), "level": m.get("level"),
                     "set": m.get("set"), "meta": {"source_run": source_run}})
    if not rows:
        raise UserInputError(f"run {source_run!r} has no {'chosen ' if which == 'chosen' else ''}proofs with a solution")
    return rows


def create_grade_run(store: Store, setup: ModelSetup, *, grader: str, n: int = 4,
                     proofs: str | Path | None = None, dataset: str | None = None, data_dir: str | Path | None = None,
                     source_run: str | None = None, which: str = "chosen", rows: Sequence[Mapping[str, Any]] | None = None,
                     limit: int | None = None, grader_settings: ModelSettings | None = None,
                     autograde_template: str | Path | None = None, meta: int = 0,
                     config: Mapping[str, Any] | None = None) -> str:
    """A `bench-grade` run over proofs from exactly one source: a file, `dataset`
    ("dsm2-outputs"), another run, or `rows` (library use). The proofs (and any human grades
    that come with them) are stored now; `execute_bench` grades them. With grader "human"
    no model is involved: the run is finished at once. `config`: more fields of the run's
    config, stored with it (a service's flag)."""
    sources = [x is not None for x in (proofs, dataset, source_run, rows)]
    if sum(sources) != 1:
        raise UserInputError("give exactly one source of proofs: --proofs FILE, --dataset dsm2-outputs or --run RUN")
    if dataset is not None and dataset.lower() != "dsm2-outputs":
        raise UserInputError(f"bench grade --dataset takes dsm2-outputs (graded proofs), not {dataset!r}; "
                             "to prove a dataset use `proofloop bench run`")
    if proofs is not None:
        items = proof_rows(read_rows(proofs), str(proofs))
        source: dict[str, Any] = {"proofs": str(Path(proofs).resolve())}
    elif dataset is not None:
        items = _dsm2_rows(data_dir)
        source = {"dataset": "dsm2-outputs", "data_dir": str(Path(data_dir).resolve()) if data_dir else None}
    elif source_run is not None:
        items = _source_run_rows(store, source_run, which)
        source = {"run": source_run, "which": which}
    else:
        items = proof_rows(list(rows or []))
        source = {"rows": len(items)}
    if limit is not None:
        items = items[:max(0, limit)]
    if not items:
        raise UserInputError("no proofs to grade")
    if grader == "human":
        missing = [r["id"] for r in items if r["human_grade"] is None]
        if missing:
            raise UserInputError(f"--grader human needs a human grade for every proof; missing for {missing[:5]}")
        # No model is called; "sim" keeps a resume of this run from building a real provider.
        setup = ModelSetup(ModelSettings(provider="sim")).resolved()
        grader_cfg = {"name": "human", "n": 0, "model": None, "template": None}
    else:
        setup = setup.resolved()
        grader_cfg = _grader_config(grader, n, grader_settings, autograde_template)
        if meta:  # bench pack --meta M: issue-reporting analyses get M meta ratings each
            grader_cfg["meta"] = meta
        if grader == "autograder":
            lacking = [r["id"] for r in items if not r["reference_solution"]]
            if lacking:
                raise UserInputError(f"the autograder needs a reference solution per proof; {len(lacking)} lack one "
                                     f"({', '.join(lacking[:5])})")
    metas = [{"problem_id": r["problem_id"] or r["id"], "category": r["category"], "level": r["level"],
              "set": r["set"], "max_points": r["max_points"], "reference_solution": r["reference_solution"],
              "guidelines": r["guidelines"]} for r in items]
    given = []
    for r in items:
        if r["human_grade"] is not None:
            given.append(human_grade(r["id"], r["human_grade"], r["max_points"], source=_describe(source)))
        if r.get("released_rating") is not None:
            given.append(human_grade(r["id"], r["released_rating"], 1.0, grader=RELEASED_AUTO,
                                     source="average_automatic_rating (64 verifier samples)"))

    def records(pids: list[int]) -> dict[str, Any]:  # the proofs (and the grades that come with them)
        return {"grades": given, "proofs": [
            dict(id=r["id"], problem_id=pid, raw=str(r["proof"]), solution=str(r["proof"]), self_score=r["self_score"],
                 status="ok", meta={"imported": True, **r["meta"]}) for r, pid in zip(items, pids)]}

    # The run, its problems, proofs and grades in ONE transaction (a POST /v1/verify of one
    # pair paid three), and nobody sees the run without its proofs.
    run_id = store.create_run("bench-grade", run_config("bench-grade", setup, source=source, limit=limit,
                                                        grader=grader_cfg, **(config or {})),
                              problems=[(str(r["statement"]), m, m["problem_id"]) for r, m in zip(items, metas)],
                              records=records)
    if grader == "human":
        config = store.get_run(run_id).config  # type: ignore[union-attr]
        store.set_run_status(run_id, "finished", summary=_grade_summary(store, run_id, config))
    return run_id


def _describe(source: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in source.items() if v is not None)


# ---------------------------------------------------------------------------- execution


def _grader_model(ctx: RunContext) -> Model:
    gm = ctx.config["grader"].get("model")
    if not gm:
        return ctx.search.verifier  # type: ignore[return-value]
    # A separate grader server takes its key from PROOFLOOP_GRADER_API_KEY (never stored).
    setup = ModelSetup.from_config({**ctx.config, "model": gm}, os.environ.get("PROOFLOOP_GRADER_API_KEY"))
    return setup.model(ctx.store, ctx.run_id, ctx.notice)


def _items(store: Store, run_id: str, proof_ids: set[str] | None = None) -> list[GradeItem]:
    found = store.run_records(run_id, problems=True, proofs=True, lineage=False)  # one read
    assert found is not None  # the callers execute this run
    problems = {p.id: p for p in found.problems}
    items = []
    for proof in found.proofs:
        if proof_ids is not None and proof.id not in proof_ids:
            continue
        prob = problems[proof.problem_id]
        items.append(GradeItem(proof.id, prob.text, proof.solution or "", prob.meta.get("reference_solution"),
                               prob.meta.get("guidelines")))
    return items


async def execute_grade(ctx: RunContext) -> dict[str, Any]:
    """Do (or finish) a `bench-grade` run: grade the stored proofs (replaying finished calls)."""
    store, run_id, config, g = ctx.store, ctx.run_id, ctx.config, ctx.config["grader"]
    if g["name"] != "human":
        await grade_items(store, run_id, _items(store, run_id), g["name"], _grader_model(ctx),
                          n=g["n"], sampling=ctx.search.verify_sampling, templates=ctx.search.templates,
                          autograde_template=g.get("template"))
    if g.get("meta"):
        await meta_verify_issues(store, run_id, _grader_model(ctx), m=g["meta"], sampling=ctx.search.meta_sampling,
                                 templates=ctx.search.templates)
    return _grade_summary(store, run_id, config)


async def execute_bench(ctx: RunContext) -> dict[str, Any]:
    """Do (or finish) a `bench` run: search every problem, grade what was chosen."""
    store, run_id, config, g = ctx.store, ctx.run_id, ctx.config, ctx.config["grader"]
    problems = bench_problems(config)
    grader_model = _grader_model(ctx)
    gate = asyncio.Semaphore(config.get("parallel_problems", 4))

    async def one(p: Problem) -> dict[str, Any]:
        async with gate:
            # Recorded with its name and meta before the strategy records it by text (a no-op then).
            pid = store.add_problem(run_id, p.statement, meta=_problem_meta(p, str(config["dataset"])), name=p.id)
            strategy = make_strategy(config["strategy"], **config.get("options", {}))
            result = await strategy.solve(p.statement, ctx.search)
            best = result.best
            meta = {**_problem_meta(p, str(config["dataset"])), "chosen_proof_id": best.id if best else None,
                    "chosen_score": result.score, "score_kind": result.score_kind, "stop_reason": result.stop_reason}
            store.add_problem(run_id, p.statement, meta=meta, name=p.id)
            wanted = {q.id for q in result.proofs if usable(q)} if config.get("grade_all") else (
                {best.id} if best else set())
            await grade_items(store, run_id, _items(store, run_id, wanted), g["name"], grader_model, n=g["n"],
                              sampling=ctx.search.verify_sampling, templates=ctx.search.templates,
                              autograde_template=g.get("template"))
            return {"problem": p.id, "problem_row": pid, "chosen_proof_id": best.id if best else None,
                    "self_score": best.self_score if best else None, "proofs": len(result.proofs),
                    "stop_reason": result.stop_reason}

    if ctx.work is not None:  # a worker (runs/workers.py): the problems it claims; the last one sums up
        await ctx.work.each({p.id: p for p in problems}, one, parallel=config.get("parallel_problems", 4))
        return {}
    per_problem = await asyncio.gather(*(one(p) for p in problems))
    summary = _grade_summary(store, run_id, config)
    grades = proof_grades(store.grades(run_id), g["name"])
    for row in per_problem:
        pg = grades.get(row["chosen_proof_id"] or "")
        row["grade"] = pg.normalised if pg else None
        row.pop("problem_row")
    summary["per_problem"] = per_problem
    summary["strategy"] = config["strategy"]
    summary["dataset"] = config["dataset"]
    return summary


def _grade_summary(store: Store, run_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
    m = run_metrics(store, run_id, n_resamples=500)
    grader = config["grader"]["name"]
    head = m["graders"].get(grader, {})
    return {"kind": config["kind"], "grader": grader, "n": config["grader"]["n"], "items": m["items"],
            "graded": head.get("graded", 0), "ungraded": head.get("ungraded", []),
            "mean_score": head.get("mean_score"), "percent": head.get("percent"),
            "agreement": {k: {x: v["overall"][x] for x in ("n", "precision", "recall", "accuracy")}
                          for k, v in m["agreement"].items()},
            **pack_summary(store, run_id, config)}


# ---------------------------------------------------------------------------- metrics


def _ci(iv: M.Interval) -> dict[str, Any]:
    return {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "confidence": iv.confidence, "note": iv.note}


def _items_of_run(found: RunRecords) -> list[dict[str, Any]]:
    """The graded units: each problem's chosen proof (bench) or every imported proof (grade run)."""
    problems = found.problems
    by_row = {p.id: p for p in problems}
    chosen = {p.meta.get("chosen_proof_id") for p in problems}
    items = []
    for proof in found.proofs:
        if proof.id in chosen or proof.meta.get("imported"):
            m = by_row[proof.problem_id].meta
            items.append({"proof_id": proof.id, "problem_id": m.get("problem_id") or by_row[proof.problem_id].name,
                          "category": m.get("category"), "level": m.get("level"), "set": m.get("set"),
                          "max_points": float(m.get("max_points") or 7.0), "self_score": proof.self_score})
    # A problem whose search produced no usable proof is an item without a proof.
    have = {i["problem_id"] for i in items}
    for p in problems:
        if "chosen_proof_id" in p.meta and p.meta["chosen_proof_id"] is None and p.meta.get("problem_id") not in have:
            items.append({"proof_id": None, "problem_id": p.meta.get("problem_id") or p.name,
                          "category": p.meta.get("category"), "level": p.meta.get("level"), "set": p.meta.get("set"),
                          "max_points": float(p.meta.get("max_points") or 7.0), "self_score": None})
    return items


def _percent_ci(points: list[float], maxima: list[float], n_resamples: int, seed: int) -> M.Interval:
    return M.bootstrap_ci(M.points_percentage, points, maxima, n_resamples=n_resamples, seed=seed)


def _grader_metrics(items: list[dict[str, Any]], grades: Mapping[str, Any], n_resamples: int,
                    seed: int) -> dict[str, Any]:
    graded, ungraded = [], []
    for it in items:
        pg = grades.get(it["proof_id"]) if it["proof_id"] else None
        if pg is not None and pg.normalised is not None:
            graded.append({**it, "score": pg.normalised})
        else:
            cause = ("the search chose no proof (see its stop reason)" if it["proof_id"] is None
                     else "not graded" if pg is None else "; ".join(pg.causes) or "no valid grade")
            ungraded.append({"problem_id": it["problem_id"], "proof_id": it["proof_id"], "cause": cause})
    scores = [g["score"] for g in graded]
    points = [g["score"] * g["max_points"] for g in graded]
    maxima = [g["max_points"] for g in graded]
    out: dict[str, Any] = {
        "graded": len(graded), "ungraded": ungraded,
        "mean_score": _ci(M.bootstrap_ci(M.mean_score, scores, n_resamples=n_resamples, seed=seed)),
        "percent": _ci(_percent_ci(points, maxima, n_resamples, seed)),
        "scores": [{"problem_id": g["problem_id"], "proof_id": g["proof_id"], "score": g["score"],
                    "category": g["category"], "level": g["level"], "set": g["set"], "self_score": g["self_score"]}
                   for g in graded],
    }
    for key in ("category", "level", "set"):
        groups = [g[key] for g in graded]
        if not any(x is not None for x in groups):
            continue
        table = M.breakdown(points, groups, maxima)
        for name, row in table.items():
            idx = [i for i, x in enumerate(groups) if ("unknown" if x is None else str(x)) == name]
            iv = _percent_ci([points[i] for i in idx], [maxima[i] for i in idx], n_resamples, seed)
            row["low"], row["high"] = iv.low, iv.high
        out[f"by_{key}"] = table
    return out


def _best_at_k(proofs: list[Proof], grades: Mapping[str, Any], n_resamples: int, seed: int) -> dict[str, Any] | None:
    """pass@1 and best@k by self score (paper Figure 2), when every proof of a problem was graded."""
    per_problem: dict[int, tuple[list[float], list[float]]] = {}
    for proof in proofs:
        pg = grades.get(proof.id)
        if pg is None or pg.normalised is None:
            continue
        true, self_ = per_problem.setdefault(proof.problem_id, ([], []))
        true.append(pg.normalised)
        # An unparsable self score ranks below every real one (as in best_by_self_score).
        self_.append(proof.self_score if proof.self_score is not None else -1.0)
    if not per_problem or max(len(t) for t, _ in per_problem.values()) < 2:
        return None
    trues = [t for t, _ in per_problem.values()]
    selfs = [s for _, s in per_problem.values()]
    kmax = min(len(t) for t in trues)
    idx = list(range(len(trues)))
    out: dict[str, Any] = {"problems": len(trues), "k_max": kmax,
                           "pass_at_1": _ci(M.bootstrap_ci(lambda ix: M.pass_at_1([trues[i] for i in ix]), idx,
                                                           n_resamples=n_resamples, seed=seed)),
                           "best_at_k": {}}
    for k in range(1, kmax + 1):
        iv = M.bootstrap_ci(lambda ix, k=k: M.best_at_k_mean([trues[i] for i in ix], [selfs[i] for i in ix], k), idx,
                            n_resamples=n_resamples, seed=seed)
        out["best_at_k"][str(k)] = _ci(iv)
    return out


def run_metrics(store: Store, run_id: str, *, n_resamples: int = 2000, seed: int = 0,
                threshold: float = M.DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Every metric of a run, per grader: mean proof score and IMO-ProofBench percentage with
    bootstrap CIs, per category / level / set; pass@1 and best@k when all proofs were graded;
    agreement of each automatic grader with the human grades on the same proofs."""
    # The run and its records in one read: items and best@k both need the proofs
    found = store.run_records(run_id, problems=True, proofs=True, grades=True, lineage=False)
    if found is None:
        raise UserInputError(f"no run {run_id!r} in the run store")
    run, proofs, all_grades = found.run, found.proofs, found.grades
    items = _items_of_run(found)
    names = list(dict.fromkeys(g.grader for g in all_grades))
    primary = (run.config.get("grader") or {}).get("name")
    if primary and primary not in names:
        names.insert(0, primary)
    out: dict[str, Any] = {"run_id": run_id, "kind": run.kind, "status": run.status.value, "items": len(items),
                           "grader": primary, "graders": {}, "agreement": {}, "best_at_k": {},
                           "bootstrap": {"n_resamples": n_resamples, "seed": seed, "confidence": 0.95,
                                         "method": "percentile, items resampled with replacement"}}
    per = {name: proof_grades(all_grades, name) for name in names}
    for name in names:
        out["graders"][name] = _grader_metrics(items, per[name], n_resamples, seed)
        if name != "human":
            bk = _best_at_k(proofs, per[name], n_resamples, seed)
            if bk:
                out["best_at_k"][name] = bk
    human = per.get("human", {})
    for name in names:
        if name == "human":
            continue
        pairs = [(it, per[name][it["proof_id"]].normalised, human[it["proof_id"]].normalised) for it in items
                 if it["proof_id"] in per[name] and it["proof_id"] in human
                 and per[name][it["proof_id"]].normalised is not None and human[it["proof_id"]].normalised is not None]
        if not pairs:
            continue
        groups = [str(it["set"] or it["category"] or "all") for it, _, _ in pairs]
        rep = agreement_report([p for _, p, _ in pairs], [h for _, _, h in pairs], groups, threshold,
                               ids=[str(it["proof_id"]) for it, _, _ in pairs], n_resamples=n_resamples, seed=seed)
        rep["pairs"] = [{"proof_id": it["proof_id"], "problem_id": it["problem_id"], "pred": p, "human": h}
                        for it, p, h in pairs]
        out["agreement"][name] = rep
    return out


def run_agreement(store: Store, run_id: str, grader: str | None = None, *, human: str | Path | None = None,
                  id_field: str = "id", human_field: str = "score", human_max_points: float = 1.0,
                  threshold: float = M.DEFAULT_THRESHOLD, human_accept: float = M.HUMAN_ACCEPT,
                  n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Agreement of a run's automatic grades with human grades: those stored in the run, or a
    file whose `id_field` names a proof id or a problem id of the run (read-only: nothing stored)."""
    found = store.run_records(run_id, problems=True, proofs=True, grades=True, lineage=False)
    if found is None:
        raise UserInputError(f"no run {run_id!r} in the run store")
    run, all_grades = found.run, found.grades
    names = [n for n in dict.fromkeys(g.grader for g in all_grades) if n != "human"]
    grader = grader or (run.config.get("grader") or {}).get("name") or (names[0] if names else None)
    if grader is None or grader not in names:
        raise UserInputError(f"run {run_id} has no grades by {grader!r}; graders: {', '.join(names) or 'none'}")
    pred = proof_grades(all_grades, grader)
    items = [it for it in _items_of_run(found) if it["proof_id"] in pred
             and pred[it["proof_id"]].normalised is not None]
    if human is None:
        truth = {pid: pg.normalised for pid, pg in proof_grades(all_grades, "human").items() if pg.normalised is not None}
        if not truth:
            raise UserInputError(f"run {run_id} has no human grades: pass --human FILE")
        keyed = {it["proof_id"]: it for it in items}
        source = "human grades stored in the run"
    else:
        raw, _ = load_scores(human, id_field=id_field, score_field=human_field)
        try:
            truth = {k: normalise_grade(v, human_max_points) for k, v in raw.items()}
        except ValueError as e:
            raise UserInputError(f"{human}: {e} (set the scale with --human-max-points)") from None
        keyed = {}
        for it in items:  # a file may name proofs or, for a bench run, problems (their chosen proof)
            keyed.setdefault(str(it["proof_id"]), it)
            keyed.setdefault(str(it["problem_id"]), it)
        source = str(human)
    pairs = [(k, keyed[k], truth[k]) for k in truth if k in keyed]
    if not pairs:
        raise UserInputError(f"no proof of run {run_id} graded by {grader} has a human grade ({source})")
    groups = [str(it["set"] or it["category"] or "all") for _, it, _ in pairs]
    rep = agreement_report([pred[it["proof_id"]].normalised for _, it, _ in pairs], [h for *_, h in pairs], groups,
                           threshold, human_accept, ids=[k for k, _, _ in pairs], n_resamples=n_resamples, seed=seed)
    rep.update(run_id=run_id, prediction=f"{grader} grades of run {run_id}", truth=source,
               unmatched_human_ids=[k for k in truth if k not in keyed])
    return rep


# ---------------------------------------------------------------------------- rendering


def _ci_text(d: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not d or d.get("estimate") is None:
        return "-"
    f = lambda x: "-" if x is None else f"{x:.{digits}f}"  # noqa: E731
    return f"{f(d['estimate'])} [{f(d.get('low'))}, {f(d.get('high'))}]"


def render_grades(summary: dict[str, Any]) -> list[str]:
    """Text for a `bench` or `bench-grade` summary: per problem, then the grader's totals."""
    lines = []
    for row in summary.get("per_problem", []):
        grade = row.get("grade")
        lines.append(f"{row['problem']:<24} proofs {row['proofs']:>3}  self {row['self_score']}  "
                     f"grade {'-' if grade is None else f'{grade:.3f}'}  stopped: {row.get('stop_reason')}")
    lines.append(f"grader {summary['grader']} (n={summary['n']}): graded {summary['graded']}/{summary['items']}  "
                 f"mean score {_ci_text(summary.get('mean_score'))}  percent {_ci_text(summary.get('percent'), 1)}")
    lines += [f"  not graded: {u['problem_id']}: {u['cause']}" for u in summary.get("ungraded", [])[:10]]
    lines += [f"agreement of {name} with human grades: n={a['n']} precision={a['precision']} recall={a['recall']}"
              for name, a in (summary.get("agreement") or {}).items()]
    lines += render_pack_metrics(summary)
    return lines + ([usage_line(summary)] if summary.get("usage") else [])


register(RunKind("bench", execute_bench, render_grades))
register(RunKind("bench-grade", execute_grade, render_grades))


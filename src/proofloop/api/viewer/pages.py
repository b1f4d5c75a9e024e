"""What each page shows, read from the run store into plain dicts for the templates (no HTML
here but the Markdown and chart renderings, which are safe by construction).

Large searches stay fast: the proof pool is counted in SQLite (viewer/queries.py) and shown a
page at a time; only the chosen proof's analyses and one page of one proof's analyses are
read with their texts.

    >>> from proofloop.store import Store
    >>> store = Store(":memory:")
    >>> run_list(store, page=1)["runs"]
    []
"""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache
from typing import Any

from proofloop.api.markdown import render_markdown
from proofloop.api.viewer import queries as Q
from proofloop.api.viewer.charts import RoundScores, scatter, score_chart
from proofloop.bench import metrics as M
from proofloop.bench.grading import proof_grades
from proofloop.search.decisions import meta_rejected
from proofloop.search.report import lineage_of
from proofloop.store import Run, Store

RUNS_PER_PAGE = 25
PROOFS_PER_PAGE = 64
ANALYSES_PER_PAGE = 16
BENCH_KINDS = ("bench", "bench-grade")


def pages(total: int, per_page: int, page: int) -> dict[str, int]:
    last = max(1, math.ceil(total / per_page))
    page = min(max(1, page), last)
    return {"page": page, "last": last, "total": total, "start": (page - 1) * per_page,
            "stop": min(total, page * per_page)}


def settled(run: Run) -> bool:
    """A finished or failed run changes only when resumed, which changes its updated_at: what
    is read from it can be kept, keyed by that time."""
    return run.status.value in ("finished", "failed")


@lru_cache(maxsize=64)
def settled_usage(store: Store, run_id: str, updated_at: Any) -> dict[str, Any]:
    return usage_by_role(store, run_id)


@lru_cache(maxsize=64)
def settled_stats(store: Store, run_id: str, problem_id: int, updated_at: Any) -> list[Q.ProofStats]:
    return Q.proof_stats(store, run_id, problem_id)


@lru_cache(maxsize=64)
def settled_chosen(store: Store, run_id: str, problem_id: int, chosen: str, updated_at: Any) -> dict[str, Any]:
    """The chosen proof's view (its 64 analyses parsed for their issues, its Markdown rendered)."""
    stats = settled_stats(store, run_id, problem_id, updated_at)
    return chosen_view(store, run_id, {s.id: s for s in stats}, chosen)


def clear_settled() -> None:
    """Forget what was kept of finished runs (the benchmark's uncached views)."""
    for cached in (settled_usage, settled_stats, settled_chosen):
        cached.cache_clear()


def run_usage_view(store: Store, run: Run) -> dict[str, Any]:
    return settled_usage(store, run.id, run.updated_at) if settled(run) else usage_by_role(store, run.id)


def usage_by_role(store: Store, run_id: str) -> dict[str, Any]:
    """Calls, tokens and cost per role (the call tag) and in all; cost None when unknown."""
    u = store.run_usage(run_id)

    def row(name: str, t: Any) -> dict[str, Any]:
        return {"role": name or "untagged", "calls": t.calls, "failures": t.failures, "prompt_tokens": t.prompt_tokens,
                "completion_tokens": t.completion_tokens, "cost_usd": None if t.unpriced_calls else t.cost_usd}

    return {"roles": [row(tag, t) for tag, t in sorted(u.by_tag.items())], "total": row("all", u)}


def problem_line(run: Run) -> str:
    text = str(run.config.get("problem") or run.config.get("dataset") or run.config.get("source") or "").strip()
    first = text.splitlines()[0] if text else "-"
    return first if len(first) <= 80 else first[:79] + "…"


def progress(run: Run, counts: dict[str, int]) -> str:
    """What is done so far, in words."""
    done = f"{counts.get('proofs', 0)} proofs, {counts.get('analyses', 0)} analyses"
    if run.kind == "verify" and run.config.get("n"):
        return f"{counts.get('analyses', 0)} / {run.config['n']} analyses"
    rounds = (run.config.get("options") or {}).get("rounds")
    reached = ((run.summary or {}).get("report") or {}).get("rounds_reached")
    if rounds and reached is not None:
        return f"round {reached} / {rounds}; {done}"
    return done


def run_list(store: Store, *, page: int, kind: str | None = None) -> dict[str, Any]:
    # The store lists newest first with a limit: one more row than shown says whether a next page exists.
    runs = store.list_runs(limit=page * RUNS_PER_PAGE + 1, kind=kind or None)
    shown = runs[(page - 1) * RUNS_PER_PAGE: page * RUNS_PER_PAGE]
    counts = Q.record_counts(store, [r.id for r in shown])
    rows = []
    for r in shown:
        usage = (r.summary or {}).get("usage") if r.summary else None
        if usage is None:  # not finished: count what is stored
            t = run_usage_view(store, r)["total"]
            usage = {"prompt_tokens": t["prompt_tokens"], "completion_tokens": t["completion_tokens"],
                     "cost_usd": t["cost_usd"], "calls": t["calls"]}
        rows.append({"run": r, "problem": problem_line(r), "progress": progress(r, counts.get(r.id, {})),
                     "usage": usage, "strategy": r.config.get("strategy")})
    return {"runs": rows, "page": page, "has_next": len(runs) > page * RUNS_PER_PAGE, "kind": kind or ""}


def chosen_proof_id(run: Run, problem: Any, stats: list[Q.ProofStats]) -> tuple[str | None, str]:
    """The proof the run chose for this problem, and how it is known."""
    ids = {s.id for s in stats}
    summary = run.summary or {}
    for value, how in ((problem.meta.get("chosen_proof_id"), "chosen by the search"),
                       (summary.get("best_proof_id"), "chosen by the search"),
                       (summary.get("proof_id"), "the proof verified")):
        if value in ids:
            return value, how
    if len(stats) == 1:
        return stats[0].id, "the only proof"
    scored = [s for s in stats if s.mean_score is not None]
    if scored:
        return max(scored, key=lambda s: s.mean_score).id, "best mean score so far"
    return None, "no proof chosen yet"


def round_scores(stats: list[Q.ProofStats]) -> list[RoundScores]:
    by_round: dict[int, list[float]] = {}
    for s in stats:
        by_round.setdefault(s.round, [])
        if s.mean_score is not None:
            by_round[s.round].append(s.mean_score)
    return [RoundScores(r, means) for r, means in sorted(by_round.items())]


def chosen_view(store: Store, run_id: str, stats_by_id: dict[str, Q.ProofStats], chosen: str) -> dict[str, Any]:
    """The chosen proof's text, the issues its counted analyses found, and its lineage."""
    proof = Q.proof_text(store, run_id, chosen) or {}
    analyses = store.verifications(run_id, proof_id=chosen)
    metas = Q.meta_ratings(store, run_id, [a.id for a in analyses])
    issues: Counter[str] = Counter()
    for a in analyses:
        if a.status == "ok" and a.score is not None and not rejected(metas.get(a.id, [])):
            issues.update(dict.fromkeys(a.issues, 1))
    nodes = {pid: {"parents": s.parents} for pid, s in stats_by_id.items()}
    chain = lineage_of(nodes, chosen)
    shown = Q.refined_from(store, run_id, chain)
    return {"id": chosen, "stats": stats_by_id[chosen], "proof": proof,
            "html": render_markdown(proof.get("solution") or proof.get("raw") or ""),
            "self_evaluation_html": render_markdown(proof.get("self_evaluation") or ""),
            "issues": issues.most_common(), "lineage": [{"stats": stats_by_id[pid], "shown": shown.get(pid, [])}
                                                         for pid in chain]}


def rejected(ratings: list[dict[str, Any]]) -> bool:
    """The search's own rule (most valid meta ratings say the analysis's issues are not real)."""
    return meta_rejected([r["rating"] if r["status"] == "ok" else None for r in ratings])


def problem_view(store: Store, run: Run, problem: Any, *, page: int) -> dict[str, Any]:
    # A search's numbers are aggregated over every analysis (65,536 in a paper-size search):
    # read once per finished run, again whenever it is still going.
    stats = (settled_stats(store, run.id, problem.id, run.updated_at) if settled(run)
             else Q.proof_stats(store, run.id, problem.id))
    chosen, how = chosen_proof_id(run, problem, stats)
    where = pages(len(stats), PROOFS_PER_PAGE, page)
    if chosen is None:
        chosen_part = None
    elif settled(run):
        chosen_part = settled_chosen(store, run.id, problem.id, chosen, run.updated_at)
    else:
        chosen_part = chosen_view(store, run.id, {s.id: s for s in stats}, chosen)
    return {"problem": problem, "problem_html": render_markdown(problem.text), "how_chosen": how,
            "chart": score_chart(round_scores(stats)), "pool": stats[where["start"]:where["stop"]], "where": where,
            "rounds": len({s.round for s in stats}), "n_proofs": len(stats),
            "n_analyses": sum(s.n_analyses for s in stats), "n_rejected": sum(s.n_rejected for s in stats),
            "chosen": chosen_part}


def proof_view(store: Store, run: Run, proof: dict[str, Any], *, page: int) -> dict[str, Any]:
    """One proof and one page of its analyses, each with its meta-verification verdict."""
    ids = Q.analysis_ids(store, run.id, proof["id"])
    where = pages(len(ids), ANALYSES_PER_PAGE, page)
    wanted = ids[where["start"]:where["stop"]]
    analyses = Q.analysis_texts(store, run.id, wanted)  # only this page's are parsed
    metas = Q.meta_ratings(store, run.id, wanted)
    rows = [{"a": a, "html": render_markdown(a["analysis"] or a["raw"] or ""), "metas": metas.get(a["id"], []),
             "rejected": rejected(metas.get(a["id"], []))} for a in analyses]
    return {"proof": proof, "html": render_markdown(proof.get("solution") or proof.get("raw") or ""),
            "self_evaluation_html": render_markdown(proof.get("self_evaluation") or ""),
            "analyses": rows, "where": where, "children": Q.children(store, run.id, proof["id"]),
            "parents": Q.parents_of(store, run.id, proof["id"]),
            "shown": Q.refined_from(store, run.id, [proof["id"]]).get(proof["id"], [])}


# ---- bench -------------------------------------------------------------------------------


def bench_view(store: Store, run: Run, *, threshold: float, grader: str | None) -> dict[str, Any]:
    """Grades per problem by every grader, and the calibration of one automatic grader
    against the human grades (when there are any) at `threshold`."""
    grades = store.grades(run.id)
    names = list(dict.fromkeys(g.grader for g in grades))
    per = {name: proof_grades(grades, name) for name in names}
    problems = {p.id: p for p in store.problems(run.id)}
    chosen = {p.meta.get("chosen_proof_id") for p in problems.values()}
    items = [b for b in Q.proof_briefs(store, run.id) if b["id"] in chosen or b["meta"].get("imported")]
    rows = [{"problem": problems[b["problem_id"]].meta.get("problem_id") or problems[b["problem_id"]].name
             or str(b["problem_id"]), "proof": b, "grades": {n: per[n].get(b["id"]) for n in names}} for b in items]
    automatic = [n for n in names if n != "human"]
    primary = (run.config.get("grader") or {}).get("name")
    grader = grader if grader in automatic else primary if primary in automatic else (automatic or [None])[0]
    return {"rows": rows, "graders": names, "automatic": automatic, "grader": grader, "threshold": threshold,
            "human_accept": M.HUMAN_ACCEPT,
            "calibration": calibration(rows, grader, threshold) if grader and "human" in names else None}


def calibration(rows: list[dict[str, Any]], grader: str, threshold: float) -> dict[str, Any] | None:
    pairs = [(r["grades"][grader].normalised, r["grades"]["human"].normalised, f"{r['problem']} ({r['proof']['id']})")
             for r in rows if r["grades"].get(grader) and r["grades"].get("human")
             and r["grades"][grader].normalised is not None and r["grades"]["human"].normalised is not None]
    if not pairs:
        return None
    predicted = M.accepts([p for p, _, _ in pairs], threshold)
    human = M.accepts([h for _, h, _ in pairs], M.HUMAN_ACCEPT)
    c = M.binary_confusion(predicted, human)
    return {"n": len(pairs), "confusion": c, "precision": M.precision(c), "recall": M.recall(c),
            "accuracy": M.accuracy(c), "svg": scatter(pairs, threshold=threshold, human_accept=M.HUMAN_ACCEPT)}

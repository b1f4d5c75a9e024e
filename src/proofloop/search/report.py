"""The per-problem report of a pool search: the chosen proof, its verification scores, the
issues found, its lineage back to the initial proofs, and the tokens and cost spent.

`problem_result` turns a finished ProblemSearch into the ProblemResult every strategy
returns; the report sits in `result.meta["report"]`, so `result.summary()` (what the CLI
prints with --json and stores on the run) carries it.

    >>> lineage_of({"c": {"parents": ["b"]}, "b": {"parents": ["a"]}, "a": {"parents": []}}, "c")
    ['c', 'b', 'a']
"""

from __future__ import annotations

from typing import Any

from proofloop.search.base import ProblemResult, best_by_self_score
from proofloop.search.decisions import Candidate


def lineage_of(nodes: dict[str, dict[str, Any]], proof_id: str) -> list[str]:
    """Ids from `proof_id` back through its parents (breadth first; each id once)."""
    order, frontier, seen = [], [proof_id], set()
    while frontier:
        nxt = []
        for pid in frontier:
            if pid in seen or pid not in nodes:
                continue
            seen.add(pid)
            order.append(pid)
            nxt.extend(nodes[pid].get("parents", []))
        frontier = nxt
    return order


def _node(entry, params) -> dict[str, Any]:
    c = entry.candidate(params)
    return {"proof_id": entry.proof.id, "round": entry.round, "slot": entry.slot,
            "status": entry.proof.status.value, "self_score": entry.proof.self_score,
            "mean_score": c.mean, "n_scores": len(c.scores), "verifications": entry.finished,
            "parents": list(entry.proof.parents), "analyses_used": list(entry.proof.analyses_used)}


def build_report(search, chosen: Candidate | None, how: str, stop: str) -> dict[str, Any]:
    params = search.params
    entries = {e.proof.id: e for e in search.entries.values()}
    nodes = {pid: _node(e, params) for pid, e in entries.items()}
    report: dict[str, Any] = {
        "stop_reason": stop,
        "chosen_by": how,
        "rounds_reached": max((e.round for e in entries.values()), default=0),
        "proofs": len(entries),
        "proofs_verified": sum(1 for e in entries.values() if e.finished),
        "unusable_proofs": sum(1 for e in entries.values() if not search.usable(e)),
        "truncated_proofs": sum(1 for e in entries.values() if e.proof.status.value == "truncated"),
        "analyses": sum(len(e.analyses) for e in entries.values()),
        "failed_analyses": sum(1 for e in entries.values() for a in e.analyses.values() if not a.ok),
        "meta_rejected": sum(len(e.rejected()) for e in entries.values()),
        "usage": search.meter.as_dict(),
    }
    if chosen is None:
        return {**report, "chosen": None}
    entry = entries[chosen.id]
    rejected = entry.rejected()
    report["chosen"] = {
        **nodes[chosen.id],
        "verification_scores": [a.score for _, a in sorted(entry.analyses.items())],
        "rejected_analyses": sorted(rejected),
        "issues": list(dict.fromkeys(i for _, a in entry.usable() for i in a.issues)),
    }
    report["lineage"] = [nodes[pid] for pid in lineage_of(nodes, chosen.id)]
    return report


def problem_result(search, strategy: str, chosen: Candidate | None, how: str, stop: str,
                   detail: str | None = None, **extra: Any) -> ProblemResult:
    entries = [e for _, e in sorted(search.entries.items())]
    if chosen is None:  # no proof got a verification (e.g. a budget stop): fall back to the self score
        fallback = best_by_self_score([e.proof for e in entries], search.params.keep_truncated)
        if fallback is not None:
            chosen, how = search.entry(fallback.id).candidate(search.params), "self_score"
    best = search.entry(chosen.id) if chosen is not None else None
    verified = chosen is not None and bool(chosen.scores)
    return ProblemResult(
        problem=search.problem, strategy=strategy, best=best.proof if best else None,
        score=chosen.mean if verified else (chosen.self_score if chosen else None),
        score_kind="verification" if verified or chosen is None else "self",
        proofs=[e.proof for e in entries],
        verifications={e.proof.id: e.verification() for e in entries if e.analyses},
        stop_reason=stop, stop_detail=detail, meta={"report": build_report(search, chosen, how, stop), **extra})

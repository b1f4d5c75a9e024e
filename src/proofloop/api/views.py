"""What the API says about runs: one listing item, one detail, a page of runs, and the results
of a verify / grade batch. Read from the run store only (queries by column, no proof texts
unless asked for), so a listing stays fast on a store of paper-size runs.

    >>> from proofloop.store import Store
    >>> store = Store(":memory:")
    >>> run = store.create_run("prove", {"strategy": "single", "problem": "Show 1 + 1 = 2.", "api": {"service": True}})
    >>> item = run_item(store, store.get_run(run))
    >>> item["status"], item["progress"], item["problem"]
    ('queued', {'proofs': 0, 'analyses': 0, 'meta': 0, 'grades': 0}, 'Show 1 + 1 = 2.')
    >>> page = runs_page(store, limit=10)
    >>> [r["id"] for r in page["runs"]] == [run], page["next"]
    (True, None)
"""

from __future__ import annotations

from datetime import datetime
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from proofloop.errors import UserInputError
from proofloop.runs import run_usage
from proofloop.runs.workers import run_work
from proofloop.store import Store
from proofloop.store.derive import derived_fields
from proofloop.store.schema import CallRow, GradeRow, MetaVerificationRow, ProofRow, Run, RunRow, VerificationRow

from proofloop.api.events import from_micros, micros
from proofloop.api.workers import api_status

_COUNTED = {"proofs": ProofRow, "analyses": VerificationRow, "meta": MetaVerificationRow, "grades": GradeRow}
PROBLEM_PREVIEW = 200  # characters of the problem shown in a listing


def progress(store: Store, run_id: str) -> dict[str, int]:
    """Records stored so far, by kind."""
    with Session(store.engine) as s, s.begin():
        return {name: s.scalar(select(func.count()).select_from(table).where(table.run_id == run_id)) or 0
                for name, table in _COUNTED.items()}


def _preview(run: Run) -> str | None:
    text = run.config.get("problem") or run.config.get("dataset") or None
    if not text:
        return None
    text = str(text).strip()
    return text if len(text) <= PROBLEM_PREVIEW else text[:PROBLEM_PREVIEW - 1] + "…"


StatusOf = Callable[[Run], str]


def run_item(store: Store, run: Run, status_of: StatusOf = api_status) -> dict[str, Any]:
    """A run as listed: status, progress, tokens and cost."""
    return {"id": run.id, "kind": run.kind, "status": status_of(run), "strategy": run.config.get("strategy"),
            "created_at": run.created_at, "updated_at": run.updated_at, "problem": _preview(run),
            "progress": progress(store, run.id), "usage": run_usage(store, run.id), "error": run.error}


def best_proof(store: Store, run: Run) -> dict[str, Any] | None:
    """The best proof so far: the chosen one once the run is done, else the usable proof with
    the highest mean verifier score (then self score). Only its text is read."""
    with Session(store.engine) as s, s.begin():
        means = dict(s.execute(select(VerificationRow.proof_id, func.avg(VerificationRow.score))
                               .where(VerificationRow.run_id == run.id, VerificationRow.score.is_not(None))
                               .group_by(VerificationRow.proof_id)).all())
        rows = s.execute(select(ProofRow.id, ProofRow.self_score, ProofRow.status)
                         .where(ProofRow.run_id == run.id)).all()
    if not rows:
        return None
    chosen = (run.summary or {}).get("best_proof_id")
    best = max(rows, key=lambda r: (r.id == chosen, r.status == "ok", means.get(r.id, -1.0), r.self_score or -1.0))
    return {"id": best.id, "mean_score": means.get(best.id), "self_score": best.self_score,
            "status": best.status, "solution": proof_solution(store, run.id, best.id)}


def proof_solution(store: Store, run_id: str, proof_id: str) -> str | None:
    """One proof's solution text (re-derived from its call when stored that way)."""
    with Session(store.engine) as s, s.begin():
        row = s.execute(select(ProofRow.solution, CallRow.text, CallRow.reasoning, CallRow.finish_reason)
                        .outerjoin(CallRow, (CallRow.key == ProofRow.id) & ProofRow.from_call)
                        .where(ProofRow.run_id == run_id, ProofRow.id == proof_id)).one_or_none()
    if row is None:
        return None
    return derived_fields("proof", *row[1:])["solution"] if row[1] is not None else row[0]


def run_detail(store: Store, run: Run, status_of: StatusOf = api_status) -> dict[str, Any]:
    """A run in full: the listing item, its settings (no key), best proof so far and summary;
    for a run split over workers (--split), its `work` as `proofloop runs show` gives it."""
    settings = run.config.get("model") or {}
    detail = {**run_item(store, run, status_of),
              "config": {k: v for k, v in run.config.items() if k not in ("model", "api")},
              "model": {k: settings.get(k) for k in ("provider", "model", "base_url")},
              "best_proof": best_proof(store, run), "summary": run.summary,
              "owner": run.owner, "lease_expires_at": run.lease_expires_at}
    work = run_work(store, run.id)
    if work is not None:
        detail["work"] = work
    return detail


def _cursor(run: Run) -> str:
    return f"{micros(run.created_at)}_{run.id}"


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    stamp, sep, run_id = cursor.partition("_")
    if not sep or not stamp.isdigit() or not run_id or len(stamp) > 17:
        raise UserInputError(f"bad cursor {cursor[:60]!r}: pass the `next` value of the previous page")
    return from_micros(int(stamp)), run_id


def runs_page(store: Store, *, limit: int, kind: str | None = None, status: str | None = None,
              cursor: str | None = None, status_of: StatusOf = api_status) -> dict[str, Any]:
    """Newest first, `limit` at most; `next` is the cursor of the following page (None: last)."""
    after = _parse_cursor(cursor) if cursor else None
    found: list[Run] = []
    while len(found) <= limit:
        q = select(RunRow.id, RunRow.created_at).order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(4 * limit)
        if kind:
            q = q.where(RunRow.kind == kind)
        if after:
            q = q.where((RunRow.created_at < after[0]) | ((RunRow.created_at == after[0]) & (RunRow.id < after[1])))
        with Session(store.engine) as s, s.begin():
            rows = s.execute(q).all()
        for run_id, created in rows:
            run = store.get_run(run_id)
            if run is not None and (status is None or status_of(run) == status):
                found.append(run)
        if len(rows) < 4 * limit:
            break
        after = (rows[-1][1], rows[-1][0])
    page = found[:limit]
    return {"runs": [run_item(store, r, status_of) for r in page],
            "next": _cursor(page[-1]) if len(found) > limit else None}

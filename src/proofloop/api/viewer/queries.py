"""The viewer's reads from the run store: light queries that read numbers, ids and lineage
without the model texts, so a page over a paper-size search (64 proofs x 64 analyses x 16
rounds) aggregates in SQLite instead of parsing 65,536 analyses; texts are read only for the
few records a page shows.

An analysis counts in its proof's mean as the search counts it (search/decisions.py): scored,
and not rejected by most of its valid meta-verification ratings.

    >>> from proofloop.store import Store
    >>> store = Store(":memory:")
    >>> run = store.create_run("verify", {})
    >>> pid = store.add_problem(run, "P")
    >>> store.add_proof(run, "p1", problem_id=pid, raw="x", status="ok")
    >>> for i, score in enumerate([1.0, 0.5, 0.0]):
    ...     store.add_verification(run, f"v{i}", proof_id="p1", raw="", status="ok", score=score)
    >>> store.add_meta_verification(run, "m0", verification_id="v2", raw="", status="ok", rating=0.0)
    >>> row = proof_stats(store, run, pid)[0]
    >>> row.n_analyses, row.n_rejected, row.mean_score
    (3, 1, 0.75)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from proofloop.store import Store
from proofloop.store.derive import derived_fields
from proofloop.store.schema import (CallRow, LineageRow, MetaVerificationRow, ProblemRow, ProofRow, RefinedFromRow,
                                    VerificationRow)

CHUNK = 500  # SQLite caps bound parameters per statement


@contextmanager
def reading(store: Store) -> Iterator[Session]:
    """One read snapshot of the store (a deferred transaction: no lock taken)."""
    with Session(store.engine) as s, s.begin():
        yield s


def chunks(ids: Iterable[str]) -> Iterator[list[str]]:
    ids = list(ids)
    for i in range(0, len(ids), CHUNK):
        yield ids[i:i + CHUNK]


@dataclass
class ProofStats:
    """One proof of the pool as the pages show it: no text, its analyses counted."""

    id: str
    round: int
    thread: int | None
    status: str
    cause: str | None
    self_score: float | None
    n_analyses: int = 0
    n_valid: int = 0  # scored
    n_rejected: int = 0  # scored but rejected by the meta-verifier
    mean_score: float | None = None  # over scored, not rejected analyses
    parents: list[str] = field(default_factory=list)


def rejected_analyses(s: Session, run_id: str) -> list[str]:
    """Ids of the run's analyses most of whose valid meta ratings are 0 (search/decisions.py)."""
    M = MetaVerificationRow
    return list(s.scalars(select(M.verification_id)
                          .where(M.run_id == run_id, M.status == "ok", M.rating.is_not(None))
                          .group_by(M.verification_id)
                          .having(func.sum(case((M.rating == 0.0, 1), else_=0)) * 2 > func.count())))


def proof_stats(store: Store, run_id: str, problem_id: int) -> list[ProofStats]:
    """Every proof of one problem, in recorded order, with its analyses counted and its mean.
    Scores are summed in SQLite over all scored analyses; the few the meta-verifier rejected
    are then taken out of the sums (cheaper than joining 65,536 analyses to their ratings)."""
    V, P = VerificationRow, ProofRow
    scored = and_(V.status == "ok", V.score.is_not(None))
    mine = select(P.id).where(P.run_id == run_id, P.problem_id == problem_id)
    with reading(store) as s:
        rows = {pid: ProofStats(pid, rnd or 0, thread, status, cause, self_score)
                for pid, rnd, thread, status, cause, self_score in s.execute(
                    select(P.id, P.round, P.thread, P.status, P.cause, P.self_score)
                    .where(P.run_id == run_id, P.problem_id == problem_id).order_by(P.created_at, P.id))}
        sums: dict[str, float] = {}
        for pid, n, n_valid, total in s.execute(
                select(V.proof_id, func.count(), func.sum(case((scored, 1), else_=0)), func.sum(case((scored, V.score))))
                .where(V.run_id == run_id, V.proof_id.in_(mine)).group_by(V.proof_id)):
            if pid in rows:
                rows[pid].n_analyses, rows[pid].n_valid, sums[pid] = n, n_valid or 0, total or 0.0
        for part in chunks(rejected_analyses(s, run_id)):
            for pid, score in s.execute(select(V.proof_id, V.score).where(V.run_id == run_id, V.id.in_(part), scored)):
                if pid in rows:
                    rows[pid].n_rejected += 1
                    sums[pid] -= score
        for pid, total in sums.items():
            counted = rows[pid].n_valid - rows[pid].n_rejected
            rows[pid].mean_score = total / counted if counted else None
        for child, parent in s.execute(select(LineageRow.proof_id, LineageRow.parent_proof_id)
                                       .where(LineageRow.run_id == run_id, LineageRow.proof_id.in_(mine))
                                       .order_by(LineageRow.parent_proof_id)):
            if child in rows:
                rows[child].parents.append(parent)
    return list(rows.values())


def refined_from(store: Store, run_id: str, proof_ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """For each proof given, the analyses its refinement prompt showed: (analysis id, the id
    of the proof that analysis judged)."""
    out: dict[str, list[tuple[str, str]]] = {}
    R, V = RefinedFromRow, VerificationRow
    with reading(store) as s:
        for part in chunks(proof_ids):
            for child, vid, judged in s.execute(
                    select(R.proof_id, R.verification_id, V.proof_id)
                    .join(V, and_(V.run_id == R.run_id, V.id == R.verification_id))
                    .where(R.run_id == run_id, R.proof_id.in_(part)).order_by(R.verification_id)):
                out.setdefault(child, []).append((vid, judged))
    return out


def children(store: Store, run_id: str, proof_id: str) -> list[str]:
    """Proofs refined from this one."""
    with reading(store) as s:
        return list(s.scalars(select(LineageRow.proof_id).where(LineageRow.run_id == run_id,
                                                                LineageRow.parent_proof_id == proof_id)
                              .order_by(LineageRow.proof_id)))


def parents_of(store: Store, run_id: str, proof_id: str) -> list[str]:
    """Proofs this one was refined from."""
    with reading(store) as s:
        return list(s.scalars(select(LineageRow.parent_proof_id).where(LineageRow.run_id == run_id,
                                                                       LineageRow.proof_id == proof_id)
                              .order_by(LineageRow.parent_proof_id)))


def proof_text(store: Store, run_id: str, proof_id: str) -> dict[str, Any] | None:
    """One proof's stored fields with its texts (re-derived from its call when stored there)."""
    P = ProofRow
    with reading(store) as s:
        found = s.execute(select(P, CallRow.text, CallRow.reasoning, CallRow.finish_reason)
                          .outerjoin(CallRow, and_(CallRow.key == P.id, P.from_call))
                          .where(P.run_id == run_id, P.id == proof_id)).one_or_none()
        if found is None:
            return None
        row = found[0]
        fields = {c: getattr(row, c) for c in ("id", "problem_id", "raw", "reasoning", "solution", "self_evaluation",
                                              "self_score", "status", "cause", "finish_reason", "round", "thread",
                                              "attempt")}
        from_call = row.from_call
    if from_call and found[1] is not None:
        fields.update(derived_fields("proof", *found[1:]))
    return fields


def analysis_texts(store: Store, run_id: str, ids: Iterable[str]) -> list[dict[str, Any]]:
    """The given analyses with their texts, in recorded order: only these are parsed (a proof
    page shows 16 of a proof's 64)."""
    V = VerificationRow
    out = []
    with reading(store) as s:
        for part in chunks(ids):
            for row, *text in s.execute(select(V, CallRow.text, CallRow.reasoning, CallRow.finish_reason)
                                        .outerjoin(CallRow, and_(CallRow.key == V.id, V.from_call))
                                        .where(V.run_id == run_id, V.id.in_(part))):
                fields = {c: getattr(row, c) for c in ("id", "proof_id", "raw", "reasoning", "analysis", "score",
                                                      "status", "cause", "issues", "created_at")}
                if row.from_call and text[0] is not None:
                    fields.update(derived_fields("verification", *text))
                out.append(fields)
    return sorted(out, key=lambda a: (a["created_at"], a["id"]))


def analysis_ids(store: Store, run_id: str, proof_id: str) -> list[str]:
    V = VerificationRow
    with reading(store) as s:
        return list(s.scalars(select(V.id).where(V.run_id == run_id, V.proof_id == proof_id)
                              .order_by(V.created_at, V.id)))


def meta_ratings(store: Store, run_id: str, verification_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Meta-verification ratings (no texts) of the given analyses."""
    M = MetaVerificationRow
    out: dict[str, list[dict[str, Any]]] = {}
    with reading(store) as s:
        for part in chunks(verification_ids):
            for vid, mid, rating, status, cause in s.execute(
                    select(M.verification_id, M.id, M.rating, M.status, M.cause)
                    .where(M.run_id == run_id, M.verification_id.in_(part)).order_by(M.created_at, M.id)):
                out.setdefault(vid, []).append({"id": mid, "rating": rating, "status": status, "cause": cause})
    return out


def record_counts(store: Store, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
    """Problems, proofs and analyses stored so far per run."""
    out: dict[str, dict[str, int]] = {}
    with reading(store) as s:
        for part in chunks(run_ids):
            for name, row in (("problems", ProblemRow), ("proofs", ProofRow), ("analyses", VerificationRow)):
                for rid, n in s.execute(select(row.run_id, func.count()).where(row.run_id.in_(part))
                                        .group_by(row.run_id)):
                    out.setdefault(rid, {})[name] = n
    return out


def proof_briefs(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Every proof of a run without its texts: id, problem, self score, status, meta."""
    P = ProofRow
    with reading(store) as s:
        return [{"id": pid, "problem_id": problem_id, "self_score": self_score, "status": status, "meta": meta or {}}
                for pid, problem_id, self_score, status, meta in s.execute(
                    select(P.id, P.problem_id, P.self_score, P.status, P.meta).where(P.run_id == run_id)
                    .order_by(P.created_at, P.id))]

r"""Grading stored proofs: the paper's verifier (n votes, mean score), the reference-guided
autograder (0/1/6/7), and human grades imported from a file. Grading never regenerates a proof:
it reads proofs and writes grades (and, for the verifier, its analyses) to the run store.

Every grade row keeps what the judge said: the autograder's raw text per sample; for the
verifier, the n analyses are stored as verifications (raw text there) and the grade row holds
their mean, with their ids in `meta`. A failed judge is a grade with a status and a cause,
never a grade of 0.

    >>> import asyncio
    >>> from proofloop.store import Store
    >>> store = Store(":memory:")
    >>> run = store.create_run("bench-grade", {})
    >>> pid = store.add_problem(run, "Show that 2 + 2 = 4.")
    >>> store.add_proof(run, "p1", problem_id=pid, raw="2 + 2 = 4 by counting.", status="ok")
    >>> store.add_grade(run, **human_grade("p1", 6, 7, raw="6"))
    >>> {k: (v.normalised, v.n_ok) for k, v in proof_grades(store.grades(run), "human").items()}
    {'p1': (0.8571428571428571, 1)}
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from proofloop.bench.datasets import normalise_grade
from proofloop.errors import UserInputError
from proofloop.models.base import Sampling
from proofloop.models.batches import LoopBatch
from proofloop.models.wrapper import Model
from proofloop.protocol import Templates, proof_for_verification
from proofloop.protocol.autograde import MAX_POINTS, autograde_messages, parse_autograde
from proofloop.protocol.types import ParseStatus
from proofloop.roles import ProofRecord, verify
from proofloop.roles.records import Verification
from proofloop.store import Store
from proofloop.store.schema import Grade

AUTOMATIC_GRADERS = ("verifier", "autograder")
GRADERS = (*AUTOMATIC_GRADERS, "human")
# Graders whose grades come with a dataset rather than from a model call (dsm2's released
# 64-sample rating); reported like an automatic grader.
RELEASED_AUTO = "dsm2-auto"
# Grading calls use sample indices from here on. A search that verified a proof with the same
# model and sampling used indices 0..n-1; reusing those cached verdicts as the "grade" would
# grade the proof with the very votes it was selected on (a biased grade).
GRADE_START = 1_000_000


@dataclass
class GradeItem:
    """One stored proof to grade, with what the graders need to see."""

    proof_id: str
    problem: str
    proof: str  # the proof text as stored; reasoning and self evaluation are stripped before grading
    reference_solution: str | None = None
    guidelines: str | None = None


@dataclass
class ProofGrade:
    """A proof's grade under one grader: the mean normalised grade over its ok rows."""

    normalised: float | None
    n_ok: int
    n: int
    causes: list[str] = field(default_factory=list)


def shown_proof(text: str) -> str:
    """What a grader sees: the solution only, never reasoning or a self score."""
    return proof_for_verification(text).strip()


# ---------------------------------------------------------------------------- grade rows


def human_grade(proof_id: str, grade: float, max_points: float, *, raw: str | None = None,
                source: str | None = None, grader: str = "human") -> dict[str, Any]:
    """add_grade keyword arguments for an imported grade (a human's, or a released rating)."""
    try:
        normalised = normalise_grade(float(grade), float(max_points))
    except (TypeError, ValueError) as e:
        raise UserInputError(f"{grader} grade of {proof_id!r}: {e}") from None
    return dict(id=f"{grader}:{proof_id}", proof_id=proof_id, grader=grader,
                raw=raw if raw is not None else f"{grade:g}", grade=float(grade), max_grade=float(max_points),
                normalised=normalised, status="ok", cause=None, meta={"source": source} if source else {})


def verifier_grade(proof_id: str, v: Verification) -> dict[str, Any]:
    """add_grade keyword arguments for the mean of n verifier analyses."""
    scores = [a.score for a in v.valid]
    meta = {"n": len(v.analyses), "n_valid": len(scores), "scores": scores,
            "verification_ids": [a.id for a in v.analyses]}
    base = dict(id=f"verifier:{proof_id}", proof_id=proof_id, grader="verifier", raw=None, max_grade=1.0, meta=meta)
    if not scores:
        statuses = Counter(a.status.value for a in v.analyses)
        first = next((a.cause for a in v.analyses if a.cause), None)
        cause = (f"none of {len(v.analyses)} analyses gave a score ("
                 + ", ".join(f"{k}: {c}" for k, c in statuses.items()) + ")" + (f"; first cause: {first}" if first else ""))
        return {**base, "grade": None, "normalised": None, "status": "no_valid_analysis", "cause": cause}
    mean = sum(scores) / len(scores)
    return {**base, "grade": mean, "normalised": mean, "status": "ok", "cause": None}


def failed_grade(proof_id: str, grader: str, status: str, cause: str) -> dict[str, Any]:
    """A proof no grader could look at (e.g. it has no solution text)."""
    return dict(id=f"{grader}:{proof_id}", proof_id=proof_id, grader=grader, raw=None, grade=None,
                max_grade=MAX_POINTS if grader == "autograder" else 1.0, normalised=None,
                status=status, cause=cause, meta={})


def proof_grades(grades: Iterable[Grade], grader: str) -> dict[str, ProofGrade]:
    """Per proof id, the mean normalised grade over `grader`'s ok rows (n autograder samples
    are averaged; a verifier row is already a mean). Proofs with no ok row get None + causes."""
    rows: dict[str, list[Grade]] = {}
    for g in grades:
        if g.grader == grader:
            rows.setdefault(g.proof_id, []).append(g)
    out = {}
    for pid, gs in rows.items():
        ok = [g.normalised for g in gs if g.status == ParseStatus.OK.value and g.normalised is not None]
        out[pid] = ProofGrade(normalised=sum(ok) / len(ok) if ok else None, n_ok=len(ok), n=len(gs),
                              causes=[f"{g.status}: {g.cause}" for g in gs if g.status != ParseStatus.OK.value])
    return out


# ---------------------------------------------------------------------------- model graders


async def grade_with_verifier(model: Model, item: GradeItem, *, n: int, sampling: Sampling,
                              templates: Templates | None = None) -> tuple[Verification | None, dict[str, Any]]:
    """n verifier analyses of the proof -> (the analyses, add_grade arguments)."""
    text = shown_proof(item.proof)
    if not text:
        return None, failed_grade(item.proof_id, "verifier", ParseStatus.NO_SOLUTION.value, "the proof has no solution text")
    record = ProofRecord(id=item.proof_id, problem=item.problem, status=ParseStatus.OK, solution=text)
    v = await verify(model, item.problem, record, sampling=sampling, n=n, start=GRADE_START, templates=templates)
    return v, verifier_grade(item.proof_id, v)


async def grade_with_autograder(model: Model, item: GradeItem, *, n: int, sampling: Sampling,
                                template: str | None = None) -> list[dict[str, Any]]:
    """n autograder samples of the proof -> one add_grade argument dict per sample."""
    text = shown_proof(item.proof)
    if not text:
        return [failed_grade(item.proof_id, "autograder", ParseStatus.NO_SOLUTION.value, "the proof has no solution text")]
    if not (item.reference_solution and item.reference_solution.strip()):
        return [failed_grade(item.proof_id, "autograder", "no_reference", "the problem has no reference solution")]
    messages = autograde_messages(item.problem, text, item.reference_solution, item.guidelines, template)
    samples = await model.sample(messages, sampling, n, start=GRADE_START, tag="autograde")
    rows = []
    for s in samples:
        base = dict(id=s.key, proof_id=item.proof_id, grader="autograder", max_grade=MAX_POINTS)
        if s.error is not None:
            rows.append({**base, "raw": None, "grade": None, "normalised": None,
                         "status": ParseStatus.CALL_ERROR.value, "cause": str(s.error), "meta": {"sample": s.index}})
            continue
        c = s.completion
        g = parse_autograde(c.text, reasoning=c.reasoning, finish_reason=c.finish_reason)
        rows.append({**base, "raw": c.text, "grade": g.points, "normalised": g.normalised, "status": g.status.value,
                     "cause": g.cause, "meta": {"sample": s.index, "bucket": g.bucket, "finish_reason": c.finish_reason,
                                                "reasoning": g.reasoning}})
    return rows


async def grade_items(store: Store, run_id: str, items: Sequence[GradeItem], grader: str, model: Model, *,
                      n: int, sampling: Sampling, templates: Templates | None = None,
                      autograde_template: str | None = None,
                      on_grade: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Grade every item concurrently (the model wrapper caps requests per endpoint) and store
    each grade the moment it exists; returns the add_grade argument dicts."""
    if grader not in AUTOMATIC_GRADERS:
        raise UserInputError(f"unknown automatic grader {grader!r}; choose one of {', '.join(AUTOMATIC_GRADERS)}")
    if n < 1:
        raise UserInputError(f"a grader needs n >= 1 samples, got {n}")

    # The analyses and grades of the items that finish together go to the store in ONE
    # transaction (one per item was most of what POST /v1/verify added to the model's time:
    # bench/serve/RESULTS.md); each item waits for it, so its grade is stored before on_grade.
    writes = LoopBatch(lambda done: _store_graded(store, run_id, done))

    async def one(item: GradeItem) -> list[dict[str, Any]]:
        analyses: list[dict[str, Any]] = []
        if grader == "verifier":
            v, row = await grade_with_verifier(model, item, n=n, sampling=sampling, templates=templates)
            analyses = [dict(id=a.id, proof_id=item.proof_id, raw=a.raw or "", status=a.status.value,
                             reasoning=a.reasoning, analysis=a.analysis, score=a.score, cause=a.cause, issues=a.issues,
                             meta={"grader": "verifier"}) for a in (v.analyses if v else [])]
            rows = [row]
        else:
            rows = await grade_with_autograder(model, item, n=n, sampling=sampling, template=autograde_template)
        await writes((analyses, rows))
        for row in rows:
            if on_grade:
                on_grade(row)
        return rows

    results = await asyncio.gather(*(one(item) for item in items))
    return [row for rows in results for row in rows]


Graded = tuple[list[dict[str, Any]], list[dict[str, Any]]]  # an item's analyses (add_verification args), grades


def _store_graded(store: Store, run_id: str, done: list[Graded]) -> list[None]:
    """Store the analyses and grades of several graded items in one transaction."""
    store.add_records(run_id, verifications=[a for analyses, _ in done for a in analyses],
                      grades=[g for _, grades in done for g in grades])
    return [None] * len(done)

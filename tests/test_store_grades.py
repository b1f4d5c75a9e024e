"""The grades table: idempotent add_grade, queries by run / proof / grader, integrity."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from proofloop.store import Store
from proofloop.store.schema import Grade


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs.db") as s:
        yield s


def _run_with_proofs(store, ids=("p1", "p2")):
    run = store.create_run("bench-grade", {})
    pid = store.add_problem(run, "Show that 2 + 2 = 4.")
    for i in ids:
        store.add_proof(run, i, problem_id=pid, raw=f"proof {i}", status="ok")
    return run


def grade(**kw):
    base = dict(proof_id="p1", grader="autograder", raw="Here is my grading ... \\boxed{6}", grade=6.0, max_grade=7.0,
                normalised=6 / 7, status="ok", cause=None, meta={"sample": 0})
    return {**base, **kw}


def test_add_and_read_back_a_grade(store):
    run = _run_with_proofs(store)
    store.add_grade(run, "g1", **grade())
    [g] = store.grades(run)
    assert isinstance(g, Grade)
    assert (g.id, g.run_id, g.proof_id, g.grader, g.grade, g.max_grade, g.status, g.meta) == (
        "g1", run, "p1", "autograder", 6.0, 7.0, "ok", {"sample": 0})
    assert g.normalised == pytest.approx(6 / 7) and g.raw.endswith("\\boxed{6}")
    assert g.created_at.tzinfo is not None


def test_add_grade_is_idempotent_and_updates_in_place(store):
    run = _run_with_proofs(store)
    store.add_grade(run, "g1", **grade(status="call_error", grade=None, normalised=None, raw=None, cause="timeout"))
    first = store.grades(run)[0].created_at
    store.add_grade(run, "g1", **grade())  # the resumed call succeeded: same id, new content
    [g] = store.grades(run)
    assert g.status == "ok" and g.grade == 6.0 and g.cause is None
    assert g.created_at == first  # created_at keeps its first value


def test_queries_filter_by_run_proof_and_grader(store):
    run = _run_with_proofs(store)
    other = _run_with_proofs(store)
    store.add_grade(run, "a", **grade())
    store.add_grade(run, "b", **grade(proof_id="p2"))
    store.add_grade(run, "human:p1", **grade(grader="human", raw="7", grade=7.0, normalised=1.0, meta={}))
    store.add_grade(other, "a", **grade())  # the same id in another run is another row
    assert [g.id for g in store.grades(run)] == ["a", "b", "human:p1"]
    assert [g.id for g in store.grades(run, proof_id="p1")] == ["a", "human:p1"]
    assert [g.id for g in store.grades(run, grader="human")] == ["human:p1"]
    assert len(store.grades(proof_id="p1")) == 3  # across runs
    assert len(store.grades(other)) == 1
    with pytest.raises(ValueError):
        store.grades()


def test_a_grade_needs_its_proof(store):
    run = _run_with_proofs(store)
    with pytest.raises(IntegrityError):
        store.add_grade(run, "x", **grade(proof_id="no-such-proof"))
    assert store.grades(run) == []


def test_grades_survive_reopening(tmp_path):
    path = tmp_path / "g.db"
    with Store(path) as s:
        run = _run_with_proofs(s)
        s.add_grade(run, "g", **grade())
    with Store(path) as s:
        assert [g.grade for g in s.grades(run)] == [6.0]
        assert s.integrity_check() == "ok"

"""A run created with its inputs in one transaction (Store.create_run's problems and records),
read back with its records in one snapshot (Store.run_records), and the store's statements
built once with bound values: each run sees its own rows, whatever ran before."""

from __future__ import annotations

import pytest

from proofloop.store import Store


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "runs.db") as s:
        yield s


def proofs_of(pids, tag="x"):
    return {"proofs": [dict(id=f"{tag}-p{i}", problem_id=pid, raw=f"proof {i}", status="ok", solution=f"proof {i}")
                       for i, pid in enumerate(pids)],
            "grades": [dict(id=f"human:{tag}-p0", proof_id=f"{tag}-p0", grader="human", raw="7", grade=7.0,
                            max_grade=7.0, normalised=1.0, status="ok")]}


def test_create_run_stores_problems_proofs_and_grades_with_the_run(store):
    run = store.create_run("bench-grade", {"grader": {"name": "verifier"}},
                           problems=[("P one", {"set": "a"}, "one"), ("P two", None, None)], records=proofs_of)
    found = store.run_records(run, problems=True, proofs=True, grades=True)
    assert found.run.id == run and found.run.config == {"grader": {"name": "verifier"}}
    assert [(p.text, p.name, p.meta) for p in found.problems] == [("P one", "one", {"set": "a"}), ("P two", None, {})]
    assert [(p.id, p.problem_id) for p in found.proofs] == [("x-p0", found.problems[0].id),
                                                            ("x-p1", found.problems[1].id)]
    assert [(g.id, g.normalised) for g in found.grades] == [("human:x-p0", 1.0)]


def test_a_run_whose_records_fail_is_not_created(store):
    def broken(pids):
        raise RuntimeError("no records")

    with pytest.raises(RuntimeError, match="no records"):
        store.create_run("bench-grade", {}, run_id="r-broken", problems=[("P", None, None)], records=broken)
    assert store.get_run("r-broken") is None
    assert store.problems("r-broken") == []


def test_create_run_with_a_given_id_twice_stores_its_inputs_once(store):
    for _ in range(2):
        store.create_run("bench-grade", {}, run_id="r-1", problems=[("P", None, None)], records=proofs_of)
    found = store.run_records("r-1", problems=True, proofs=True, grades=True)
    assert (len(found.problems), len(found.proofs), len(found.grades)) == (1, 1, 1)


def test_run_records_reads_only_what_is_asked_and_only_that_run(store):
    runs = [store.create_run("bench-grade", {}, problems=[(f"P {tag}", None, None)],
                             records=lambda pids, tag=tag: proofs_of(pids, tag)) for tag in ("a", "b")]
    store.add_verification(runs[1], "b-v0", proof_id="b-p0", raw="ok", status="ok", score=0.5, issues=["gap"])
    assert store.run_records("r-none") is None
    bare = store.run_records(runs[0])
    assert (bare.problems, bare.proofs, bare.verifications, bare.grades) == ([], [], [], [])
    for run, tag in zip(runs, ("a", "b")):  # the same statements, each run's own rows
        found = store.run_records(run, problems=True, proofs=True, verifications=True, grades=True)
        assert [p.text for p in found.problems] == [f"P {tag}"]
        assert [p.id for p in found.proofs] == [f"{tag}-p0"]
        assert [g.proof_id for g in found.grades] == [f"{tag}-p0"]
        assert [(v.id, v.score, v.issues) for v in found.verifications] == ([("b-v0", 0.5, ["gap"])] if tag == "b" else [])


def test_run_records_leaves_out_lineage_only_when_asked(store):
    run = store.create_run("prove", {})
    pid = store.add_problem(run, "P")
    store.add_proof(run, "p1", problem_id=pid, raw="a", status="ok")
    store.add_verification(run, "v1", proof_id="p1", raw="ok", status="ok", score=0.0)
    store.add_proof(run, "p2", problem_id=pid, raw="b", status="ok", parents=["p1"], refined_from_analyses=["v1"])
    full = store.run_records(run, proofs=True).proofs
    assert [(p.parents, p.refined_from_analyses) for p in full] == [([], []), (["p1"], ["v1"])]
    assert full == store.proofs(run)
    bare = store.run_records(run, proofs=True, lineage=False).proofs
    assert [p.model_copy(update={"parents": q.parents, "refined_from_analyses": q.refined_from_analyses})
            for p, q in zip(bare, full)] == full
    assert [(p.parents, p.refined_from_analyses) for p in bare] == [([], []), ([], [])]


def test_releasing_without_a_summary_keeps_the_stored_one(store):
    run = store.create_run("prove", {})
    store.acquire_run(run, "me", 60).release("finished", summary={"score": 1})
    store.acquire_run(run, "me", 60).release("interrupted", error="stopped")  # another shape of the statement
    got = store.get_run(run)
    assert (got.status.value, got.summary, got.error, got.owner) == ("interrupted", {"score": 1}, "stopped", None)
    other = store.create_run("prove", {})
    store.acquire_run(other, "you", 60).release("finished", summary={"score": 0})
    assert store.get_run(run).summary == {"score": 1} and store.get_run(other).summary == {"score": 0}


def test_run_usage_and_derived_ids_are_per_run(store):
    runs = [store.create_run("prove", {}) for _ in range(2)]
    pid = store.add_problem(runs[0], "P")
    store.add_proof(runs[0], "d", problem_id=pid, raw="a", status="ok", meta={"derived": True})
    store.add_proof(runs[0], "i", problem_id=pid, raw="a", status="ok", meta={"imported": True})
    store.record_failure(["k1"], namespace=runs[1], attempt=1, error=TimeoutError("slow"))
    assert store.derived_ids(runs[0])["proof"] == ["d"] and store.derived_ids(runs[1])["proof"] == []
    assert (store.run_usage(runs[0]).failures, store.run_usage(runs[1]).failures) == (0, 1)


def test_the_lineage_of_one_problems_proofs_is_that_problems(store):
    run = store.create_run("prove", {})
    for name in ("a", "b"):
        pid = store.add_problem(run, f"P {name}")
        store.add_proof(run, f"{name}1", problem_id=pid, raw="x", status="ok")
        store.add_verification(run, f"{name}v", proof_id=f"{name}1", raw="ok", status="ok", score=0.0)
        store.add_proof(run, f"{name}2", problem_id=pid, raw="y", status="ok", parents=[f"{name}1"],
                        refined_from_analyses=[f"{name}v"])
    a, b = (p.id for p in store.problems(run))
    assert [(p.id, p.parents, p.refined_from_analyses) for p in store.proofs(run, problem_id=b)] == [
        ("b1", [], []), ("b2", ["b1"], ["bv"])]
    assert [(p.id, p.parents) for p in store.proofs(run, problem_id=a)] == [("a1", []), ("a2", ["a1"])]
    assert [p.parents for p in store.proofs(run)] == [[], ["a1"], [], ["b1"]]

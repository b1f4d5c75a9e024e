"""`proofloop bench`: run, grade, agreement and report, end to end through the CLI's main()
against real HTTP servers on 127.0.0.1 (the scripted server), the released DeepSeekMath-V2
outputs, and (slow) the local SmolLM2 model."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from proofloop.sim.http import Fault, Faults
from proofloop.store import Store
from support.servers import running_server
from test_bench_grading import PROOF_GRADE, grading_responder

DATA = Path(os.environ.get("PROOFLOOP_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(not (DATA / "dsm2" / "outputs").is_dir(), reason=f"shared data not found at {DATA}")


@pytest.fixture
def bench(tmp_path, monkeypatch, capsys):
    """Run `proofloop bench ...` in-process through cli.main(); returns (exit code, stdout, stderr)."""
    from proofloop import cli

    for k in list(os.environ):
        if k.startswith(("PROOFLOOP_", "OPENAI_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("PROOFLOOP_DB", str(tmp_path / "runs.db"))
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["proofloop", *args])
        capsys.readouterr()
        try:
            cli.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return call


def ok_json(result: tuple[int, str, str]) -> dict:
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}"
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out[-2000:]  # --json prints exactly one JSON object
    return json.loads(lines[0])


def write_problems(path: Path, n: int = 3) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"P{i}", "statement": f"Prove that claim {i} holds for every n.",
                                "reference_solution": f"Induction on n for claim {i}.",
                                "grading_guidelines": "(Partial) 1. Base case.",
                                "category": ("Algebra", "Geometry")[i % 2], "level": "IMO-easy"}) + "\n")
    return path


# ---------------------------------------------------------------------------- agreement


@needs_data
def test_dsm2_agreement_reproduces_the_paper(bench):
    r = ok_json(bench("bench", "agreement", "--dataset", "dsm2-outputs", "--data-dir", str(DATA),
                      "--threshold", "0.75", "--n-resamples", "200", "--json"))
    o = r["overall"]
    assert r["n"] == o["n"] == 84
    assert round(o["precision"], 2) == 0.91 and round(o["recall"], 2) == 1.00
    assert o["confusion"] == {"tp": 68, "fp": 7, "fn": 0, "tn": 9}
    per_set = {k: (v["n"], v["confusion"]["fp"]) for k, v in r["groups"].items()}
    assert per_set == {"IMO-ProofBench-Basic": (30, 0), "IMO-ProofBench-Advanced": (30, 4), "IMO2025": (6, 1),
                       "CMO2024": (6, 1), "Putnam2024": (12, 1)}
    assert "IMO2025-6" in {x["id"] for x in r["false_accepts"]}
    assert o["ci"]["precision"]["low"] < o["precision"] <= o["ci"]["precision"]["high"]


def test_agreement_from_files_and_bad_input(bench, tmp_path):
    pred = tmp_path / "pred.jsonl"
    pred.write_text("\n".join(json.dumps({"id": i, "score": s}) for i, s in
                              [("a", 1.0), ("b", 0.9), ("c", 0.2), ("d", 0.8), ("z", 0.5)]))
    human = tmp_path / "human.csv"
    with human.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "score", "set"])
        w.writerows([("a", 7, "s1"), ("b", 0, "s1"), ("c", 0, "s2"), ("d", 6, "s2")])
    r = ok_json(bench("bench", "agreement", "--pred", str(pred), "--human", str(human), "--human-max-points", "7",
                      "--group-field", "set", "--n-resamples", "100", "--json"))
    assert r["n"] == 4 and r["overall"]["precision"] == pytest.approx(2 / 3) and r["overall"]["recall"] == 1.0
    assert set(r["groups"]) == {"s1", "s2"} and r["unmatched"]["missing_in_human"] == ["z"]
    code, out, err = bench("bench", "agreement", "--pred", str(pred), "--human", str(human), "--n-resamples", "50")
    assert code == 2 and "outside the scale" in err and err.count("\n") == 1  # 7 points on a 0..1 scale
    code, _, err = bench("bench", "agreement", "--pred", str(pred))
    assert code == 2 and "--human" in err
    code, _, err = bench("bench", "agreement", "--dataset", "imo2025")
    assert code == 2 and "dsm2-outputs" in err
    code, _, err = bench("bench", "agreement")
    assert code == 2 and "choose one of" in err


# ---------------------------------------------------------------------------- bench run


def test_bench_run_end_to_end_over_http_and_resume_repeats_nothing(bench, tmp_path):
    problems = write_problems(tmp_path / "problems.jsonl", 3)
    faults = Faults()
    with running_server(faults=faults) as (server, log):
        # The 6th request is refused with 401: the run stops half way, like a killed process.
        # One request at a time, so every request the server answered before was stored by the client.
        faults.by_request[6] = Fault(kind="auth")
        args = ["bench", "run", "--dataset", str(problems), "--strategy", "single", "--k", "2", "--grader", "verifier",
                "-n", "2", "--grade-all", "--base-url", server.base_url, "--model", "scripted",
                "--max-tokens", "600", "--verify-max-tokens", "600", "--parallel-problems", "1",
                "--max-concurrency", "1", "--json"]
        code, out, err = bench(*args)
        assert code == 2 and "invalid api key" in err.lower()
        with Store(tmp_path / "runs.db") as store:
            [run] = store.list_runs(kind="bench")
            assert run.status.value == "failed"
            assert run.config["dataset"] == str(problems.resolve()) and run.config["grader"]["n"] == 2
            assert run.config["strategy"] == "single" and run.config["options"] == {"k": 2}
        # Requests answered before the failure were stored; one sent after it (in flight when the
        # run stopped) may be asked for again, exactly like a call cut off by a kill.
        ok_before = {e["fingerprint"] for e in log if e["outcome"] == "ok" and e["number"] < 6}
        assert len(ok_before) == 5
        faults.by_request.clear()
        n_before = len(log)
        summary = ok_json(bench("resume", run.id, "--json"))
        resumed = log[n_before:]
        # Nothing that had finished was asked for again.
        assert not ok_before & {e["fingerprint"] for e in resumed}
        n_after = len(log)
        again = ok_json(bench("resume", run.id, "--json"))
        assert len(log) == n_after  # a finished run replays entirely from the call cache
    assert summary["kind"] == "bench" and summary["grader"] == "verifier"
    assert summary["items"] == 3 and summary["graded"] == 3 and summary["ungraded"] == []
    assert [p["problem"] for p in summary["per_problem"]] == ["P0", "P1", "P2"]
    assert [p["proofs"] for p in summary["per_problem"]] == [2, 2, 2]
    assert summary["percent"]["low"] <= summary["percent"]["estimate"] <= summary["percent"]["high"]
    assert again["per_problem"] == summary["per_problem"]
    with Store(tmp_path / "runs.db") as store:
        grades = store.grades(run.id, grader="verifier")
        assert len(grades) == 6  # --grade-all: both proofs of each problem
        assert all(g.status == "ok" and len(g.meta["verification_ids"]) == 2 for g in grades)
        problems_meta = [p.meta for p in store.problems(run.id)]
        assert [m["category"] for m in problems_meta] == ["Algebra", "Geometry", "Algebra"]
        assert store.get_run(run.id).status.value == "finished"
    # a problem's grade is the stored verifier grade of the proof it chose; the mean is theirs
    by_proof = {g.proof_id: g.normalised for g in grades}
    chosen = [by_proof[m["chosen_proof_id"]] for m in problems_meta]
    assert [p["grade"] for p in summary["per_problem"]] == pytest.approx(chosen)
    assert summary["mean_score"]["estimate"] == pytest.approx(sum(chosen) / 3)


def test_bench_run_with_the_autograder_and_a_report(bench, tmp_path):
    problems = write_problems(tmp_path / "problems.jsonl", 2)
    with running_server(grading_responder()) as (server, log):
        s = ok_json(bench("bench", "run", "--dataset", str(problems), "--strategy", "sequential", "--attempts", "2",
                          "--threads", "2", "--grader", "autograder", "-n", "1", "--base-url", server.base_url,
                          "--model", "scripted", "--max-tokens", "600", "--verify-max-tokens", "600", "--json"))
    assert s["grader"] == "autograder" and s["graded"] == 2
    with Store(tmp_path / "runs.db") as store:
        grades = store.grades(s["run_id"], grader="autograder")
        assert len(grades) == 2 and all(AUTOGRADE_OK(g.raw) for g in grades)
        # the scripted grader gives 7 / 6 / 0 points for a proof scripted as grade 1 / 0.5 / 0
        proofs = {p.id: p.raw for p in store.proofs(s["run_id"])}
        for g in grades:
            scripted = PROOF_GRADE.findall(proofs[g.proof_id])[-1][0]
            assert (g.grade, g.max_grade) == ({"1": 7, "0.5": 6, "0": 0}[scripted], 7)
    paths = ok_json(bench("bench", "report", s["run_id"], "-o", str(tmp_path / "rep"), "--n-resamples", "100", "--json"))
    assert Path(paths["html"]).is_file() and "histogram" in paths["figures"] and "by_category" in paths["figures"]


def AUTOGRADE_OK(raw: str | None) -> bool:
    from proofloop.protocol.autograde import AUTOGRADE_FINAL_PHRASE

    return bool(raw) and AUTOGRADE_FINAL_PHRASE in raw


def test_bench_run_rejects_bad_input_before_creating_a_run(bench, tmp_path):
    problems = write_problems(tmp_path / "p.jsonl", 2)
    no_ref = tmp_path / "noref.jsonl"
    no_ref.write_text(json.dumps({"id": "x", "statement": "Prove it."}) + "\n")
    cases = [
        (["--dataset", "no-such-set"], "unknown dataset"),
        (["--dataset", str(problems), "--id", "P9"], "unknown problem id"),
        (["--dataset", str(problems), "--strategy", "magic"], "unknown strategy"),
        (["--dataset", str(problems), "--grader", "oracle"], "unknown grader"),
        (["--dataset", str(no_ref), "--grader", "autograder"], "reference solution"),
        (["--dataset", str(problems), "--limit", "0"], "--limit"),
    ]
    for extra, message in cases:
        code, _, err = bench("bench", "run", *extra, "--provider", "sim", "--json")
        assert code == 2 and message in err, (extra, err)
    with Store(tmp_path / "runs.db") as store:
        assert store.list_runs() == []


@needs_data
def test_bench_run_refuses_graded_proofs_as_problems(bench):
    code, _, err = bench("bench", "run", "--dataset", "dsm2-outputs", "--data-dir", str(DATA), "--provider", "sim")
    assert code == 2 and "bench grade --dataset" in err


# ---------------------------------------------------------------------------- bench grade


def test_grade_a_proofs_file_with_the_autograder_then_agreement_with_stored_human_grades(bench, tmp_path):
    proofs = tmp_path / "proofs.jsonl"
    rows = [{"id": f"q{i}", "problem": f"Prove claim {i}.", "proof": f"Our argument (true grade {g}). Step 1.",
             "reference_solution": "A reference.", "guidelines": "(Almost) minor slip.", "human_grade": h,
             "category": "Algebra"}
            for i, (g, h) in enumerate([(7, 7), (6, 7), (0, 0), (7, 1), (1, 0)])]
    proofs.write_text("\n".join(json.dumps(r) for r in rows))
    with running_server(grading_responder()) as (server, log):
        s = ok_json(bench("bench", "grade", "--proofs", str(proofs), "--grader", "autograder", "-n", "1",
                          "--base-url", server.base_url, "--model", "scripted", "--json"))
        sent = len(log)
        again = ok_json(bench("resume", s["run_id"], "--json"))
        assert len(log) == sent
    assert s["graded"] == 5 and again["graded"] == 5
    assert s["agreement"]["autograder"]["n"] == 5
    with Store(tmp_path / "runs.db") as store:
        proofs_stored = {p.id: p.raw for p in store.proofs(s["run_id"])}
        assert proofs_stored == {r["id"]: r["proof"] for r in rows}  # stored as given, never regenerated
        assert {g.proof_id: g.grade for g in store.grades(s["run_id"], grader="autograder")} == {
            "q0": 7, "q1": 6, "q2": 0, "q3": 7, "q4": 1}
        assert {g.proof_id: g.grade for g in store.grades(s["run_id"], grader="human")}["q3"] == 1
    r = ok_json(bench("bench", "agreement", "--run", s["run_id"], "--n-resamples", "100", "--json"))
    # Accepted by the autograder (>= 0.75, i.e. 6 or 7 points): q0, q1, q3; by experts: q0, q1.
    assert r["overall"]["confusion"] == {"tp": 2, "fp": 1, "fn": 0, "tn": 2}
    assert [x["id"] for x in r["false_accepts"]] == ["q3"]
    human = tmp_path / "human.csv"
    human.write_text("id,score\nq0,0\nq2,7\n")
    r2 = ok_json(bench("bench", "agreement", "--run", s["run_id"], "--human", str(human), "--human-max-points", "7",
                       "--n-resamples", "50", "--json"))
    assert r2["n"] == 2 and r2["overall"]["confusion"] == {"tp": 0, "fp": 1, "fn": 1, "tn": 0}


@needs_data
def test_regrade_released_proofs_with_the_verifier(bench, tmp_path):
    with running_server() as (server, log):
        s = ok_json(bench("bench", "grade", "--dataset", "dsm2-outputs", "--data-dir", str(DATA), "--limit", "4",
                          "--grader", "verifier", "-n", "2", "--base-url", server.base_url, "--model", "scripted",
                          "--json"))
    assert s["graded"] == 4 and len(log) == 4
    # The stored run compares three graders: ours, the released 64-sample rating, and the experts.
    assert set(s["agreement"]) == {"verifier", "dsm2-auto"}
    with Store(tmp_path / "runs.db") as store:
        assert len(store.grades(s["run_id"], grader="human")) == 4
        assert len(store.verifications(s["run_id"])) == 8


def test_grade_human_imports_and_regrades_another_run(bench, tmp_path):
    proofs = tmp_path / "proofs.csv"
    proofs.write_text("id,statement,proof,human_grade,max_points\nh1,Prove A.,Proof A.,18,21\nh2,Prove B.,Proof B.,3,21\n")
    s = ok_json(bench("bench", "grade", "--proofs", str(proofs), "--grader", "human", "--json"))
    assert s["graded"] == 2 and s["mean_score"]["estimate"] == pytest.approx((18 + 3) / 42)
    with running_server() as (server, log):
        r = ok_json(bench("bench", "grade", "--run", s["run_id"], "--which", "all", "--grader", "verifier", "-n", "1",
                          "--base-url", server.base_url, "--model", "scripted", "--json"))
    assert r["graded"] == 2 and len(log) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("id,statement,proof\nz,Prove C.,Proof C.\n")
    code, _, err = bench("bench", "grade", "--proofs", str(bad), "--grader", "human")
    assert code == 2 and "human grade" in err
    code, _, err = bench("bench", "grade", "--proofs", str(bad), "--dataset", "dsm2-outputs")
    assert code == 2 and "exactly one source" in err
    code, _, err = bench("bench", "grade", "--run", "r-nope", "--provider", "sim")
    assert code == 2 and "no run" in err


# ---------------------------------------------------------------------------- the local model


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")  # with the other users of the `smollm2` fixture (conftest.py)
def test_bench_run_on_the_local_smollm2(bench, smollm2, tmp_path):
    problems = write_problems(tmp_path / "one.jsonl", 1)
    s = ok_json(bench("bench", "run", "--dataset", str(problems), "--strategy", "single", "--k", "1", "-n", "1",
                      "--provider", "local", "--max-tokens", "24", "--verify-max-tokens", "24", "--seed", "0", "--json"))
    assert s["kind"] == "bench" and s["items"] == 1 and len(s["per_problem"]) == 1
    # one proof; 24 tokens cut it off, and a cut-off proof is never chosen, so none is verified
    assert s["usage"]["calls"] == 1 and s["per_problem"][0]["chosen_proof_id"] is None
    with Store(tmp_path / "runs.db") as store:
        [proof] = store.proofs(s["run_id"])
        # a real (tiny) model wrote something; 24 tokens cannot hold a proof (seeded, reproducible)
        assert proof.raw and proof.status == "truncated"
    # not graded, and the report says exactly why: never a silent 0
    assert s["graded"] == 0 and s["ungraded"][0]["cause"]


def test_a_run_budget_is_shared_by_all_problems_and_stops_them(bench, tmp_path):
    """--budget-tokens caps the whole run: every problem's search stops with a budget reason,
    which is reported with the problem."""
    from proofloop.sim.model import make_problems

    path = tmp_path / "sim.jsonl"
    path.write_text("".join(json.dumps({"id": f"s{i}", "statement": p}) + "\n"
                            for i, p in enumerate(make_problems(3, seed=1))))
    common = ["bench", "run", "--dataset", str(path), "--provider", "sim", "--strategy", "pool",
              "-o", "preset=release", "-o", "initial=4", "-o", "verifications=4", "-o", "top_k=2", "-o", "rounds=2",
              "--max-tokens", "100000", "--verify-max-tokens", "100000", "--seed", "1", "--json"]
    free = ok_json(bench(*common))
    capped = ok_json(bench(*common, "--budget-tokens", "30000"))
    assert all(not row["stop_reason"].startswith("budget") for row in free["per_problem"])
    assert all(row["stop_reason"].startswith("budget") for row in capped["per_problem"])
    assert capped["usage"]["completion_tokens"] < free["usage"]["completion_tokens"]
    # stopped before any verification: each problem still returns a proof, chosen by self score
    assert all(row["chosen_proof_id"] for row in capped["per_problem"])

"""Stored runs through the real CLI, as subprocesses, against scripted servers on 127.0.0.1:
two fresh runs with one seed are the same run; `runs list | show | export` read well and agree
on the cost with the store; a run finishes on a server that moved without sending a finished
call again; `bench report` of a run without grades says so in one line."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from proofloop.models.pricing import PRICES
from proofloop.sim.http import Choice, Reply, fingerprint
from proofloop.store import Store
from support.cli import CLI, cli_env, stored_calls, run_cli, run_json
from support.scripted import ServerProcess
from support.servers import closed_port, running_server

PROBLEM = "Prove that for every positive integer $n$, the number $n^3 - n$ is divisible by $6$."
PRICED_MODEL = "gpt-4o-mini"
assert PRICED_MODEL in PRICES  # the cost test needs a model the price table knows

# A pool search small enough for a test: 3 proofs, 3 analyses each, 2 refined per round, 2
# rounds, and every round runs (no early acceptance) so that refinement prompts exist.
POOL = ["--strategy", "pool", "-o", "initial=3", "-o", "verifications=3", "-o", "top_k=2", "-o", "rounds=2",
        "-o", "analyses_per_prompt=2", "-o", "samples_per_prompt=1", "-o", "accept=false",
        "--max-tokens", "4000", "--verify-max-tokens", "4000"]


@pytest.fixture
def problem(tmp_path: Path) -> str:
    (tmp_path / "problem.md").write_text(PROBLEM)
    return str(tmp_path / "problem.md")


def one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-4000:])
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("proofloop: error: "), r.stderr
    return lines[0]


# ---------------------------------------------------------------------------- reproducible runs


def _what_a_run_did(store: Store, run_id: str, summary: dict) -> dict:
    """Everything a pool run decided, independent of its run id and of timing."""
    refine_prompts = sorted(json.dumps(c.messages, sort_keys=True) for c in store.calls(run_id) if c.tag == "refine")
    proofs = {p.id: p.raw for p in store.proofs(run_id)}  # ids differ between runs, texts must not
    return {"proofs": sorted(proofs.values()),
            "refine_prompts": refine_prompts,
            "analyses": sorted((proofs[v.proof_id], v.raw) for v in store.verifications(run_id=run_id)),
            "chosen": (summary["proof"], summary["score"], summary["self_score"], summary["proofs"])}


def test_two_fresh_runs_with_one_seed_are_the_same_run(tmp_path: Path, problem: str):
    db = tmp_path / "runs.db"
    with running_server() as (server, _):
        env = cli_env(db, server.base_url)
        first = run_json(["prove", problem, *POOL, "--seed", "0"], env)
        second = run_json(["prove", problem, *POOL, "--seed", "0"], env)
        other = run_json(["prove", problem, *POOL, "--seed", "1"], env)
    assert len({first["run_id"], second["run_id"], other["run_id"]}) == 3
    store = Store(db)
    a, b, c = (_what_a_run_did(store, s["run_id"], s) for s in (first, second, other))
    assert a["refine_prompts"], "no refinement happened: the test would prove nothing"
    assert len(a["proofs"]) == 3 + 2 * 2
    assert a == b
    assert a["proofs"] != c["proofs"] and a["refine_prompts"] != c["refine_prompts"]


# ---------------------------------------------------------------------------- runs list / show / export


def test_runs_list_show_export_read_well_and_agree_on_the_cost(tmp_path: Path, problem: str):
    db = tmp_path / "runs.db"
    with running_server(models=[PRICED_MODEL]) as (server, _):
        env = cli_env(db, server.base_url)
        summary = run_json(["prove", problem, "--strategy", "single", "--k", "3", "--model", PRICED_MODEL,
                            "--seed", "2"], env)
    run_id = summary["run_id"]
    store = Store(db)
    calls = store.calls(run_id)
    assert len(calls) == summary["usage"]["calls"] and all(isinstance(c.cost_usd, float) for c in calls)
    cost = summary["usage"]["cost_usd"]
    assert isinstance(cost, float) and cost > 0
    shown = run_json(["runs", "show", run_id], env)
    assert shown["usage"]["cost_usd"] == cost
    assert sum(c.cost_usd for c in calls) == pytest.approx(cost, rel=1e-9, abs=1e-15)

    listed = run_cli(["runs", "list"], env)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["run", "kind", "status", "strategy", "best", "cost", "created", "(UTC)", "problem"]
    [row] = rows
    assert row.split()[:4] == [run_id, "prove", "finished", "single"]
    assert f"${cost:.4f}" in row and PROBLEM[:20] in row

    text = run_cli(["runs", "show", run_id], env)
    assert text.returncode == 0, text.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.stdout)
    assert "status finished" in text.stdout
    usage = [line for line in text.stdout.splitlines() if line.startswith(f"run: {run_id}")]
    assert len(usage) == 1 and f"cost: ${cost:.4f}" in usage[0] and f"samples: {len(calls)}" in usage[0]

    out = tmp_path / "run.jsonl"
    exported = run_cli(["runs", "export", run_id, "-o", str(out)], env)
    assert exported.returncode == 0 and exported.stdout == "", exported
    lines = out.read_text().splitlines()
    assert exported.stderr.strip() == f"wrote {out}: {len(lines)} lines (1 run header + {len(lines) - 1} problems)"
    assert json.loads(lines[0])["type"] == "run" and len(json.loads(lines[1])["proofs"]) == 3


# ---------------------------------------------------------------------------- resume on a moved server

# Server A answers the run's first 2 requests and holds the rest (a slow fault, until the client
# is gone), so it goes away with exactly 2 of the run's 6 calls stored however slowly the machine
# runs; before, the kill had to come within the run's last second of streaming.
HELD = {"stream_delay_s": 0.02, "stream_chunk_chars": 16,
        "faults": {"by_request": {str(n): {"kind": "slow", "delay_s": 300} for n in range(3, 13)}}}
SEQUENTIAL = ["--threads", "3", "--attempts", "3", "--seed", "11", "--max-concurrency", "2", "--max-tokens", "8192"]




def _stored_calls(store: Store, run_id: str) -> dict[str, str]:
    return {c.key: c.completion.text for c in store.calls(run_id)}


def _sent_samples(log: list[dict]) -> list[tuple[str, int]]:
    """(messages, seed) of every sample a server was asked for: a request of n covers seed..seed+n-1."""
    return [(e["messages_sha"], e["seed"] + i) for e in log if "messages_sha" in e for i in range(e.get("n") or 1)]


def test_resume_on_a_server_that_moved_sends_no_finished_call_again(tmp_path: Path, problem: str):
    db = tmp_path / "runs.db"
    with ServerProcess(script=HELD, request_log=tmp_path / "a.jsonl") as server_a:
        env = cli_env(db, server_a.base_url)
        proc = subprocess.Popen(CLI + ["prove", problem, *SEQUENTIAL, "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while stored_calls(db) < 2:  # of 6 (this seed: see test_resume.py)
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server_a.kill()  # the server goes away mid-run
        out, err = proc.communicate(timeout=120)
    store = Store(db)
    [run] = store.list_runs()
    assert proc.returncode == 2 and err.splitlines()[-1].startswith("proofloop: error: "), err
    assert run.status.value == "failed" and "unreachable" in run.error
    before = _stored_calls(store, run.id)
    assert len(before) == 2  # the held requests never finished
    done_before = {(fingerprint({"messages": c.messages}), c.sampling["seed"] + c.index) for c in store.calls(run.id)}

    one_line_error(run_cli(["resume", run.id, "--model", "another-model"], env))
    one_line_error(run_cli(["resume", run.id, "--base-url", "notaurl"], env))
    assert Store(db).get_run(run.id).config["model"]["base_url"] == server_a.base_url  # refusals change nothing

    with running_server() as (server_b, log_b):
        resumed = run_json(["resume", run.id, "--base-url", server_b.base_url], env)
    assert resumed["run_id"] == run.id
    assert Store(db).get_run(run.id).status.value == "finished"
    sent = _sent_samples(log_b)
    assert sent and not done_before & set(sent), "a call finished on server A was sent to server B"
    after = _stored_calls(Store(db), run.id)
    assert {k: after[k] for k in before} == before  # no stored call changed or lost its key
    assert len(after) == resumed["usage"]["calls"] > len(before)
    assert Store(db).get_run(run.id).config["model"]["base_url"] == server_b.base_url


# ---------------------------------------------------------------------------- bench report without grades


def _write_problems(path: Path) -> str:
    path.write_text("".join(json.dumps({"id": f"p{i}", "statement": f"Prove that {i} + {i} is even.",
                                        "category": "Algebra"}) + "\n" for i in range(2)))
    return str(path)


def _write_proofs(path: Path) -> str:
    path.write_text("".join(json.dumps({"id": f"q{i}", "statement": f"Prove that {i} + {i} is even.",
                                        "proof": f"{i} + {i} = 2 * {i}."}) + "\n" for i in range(2)))
    return str(path)


async def _no_score(req) -> Reply:
    """A grader that answers, but never with a score."""
    return Reply([Choice(text="I would rather not say.") for _ in range(req.n)], prompt_tokens=5)


def test_bench_report_of_a_run_without_grades_is_one_line(tmp_path: Path):
    db = tmp_path / "runs.db"
    env = cli_env(db)
    # A bench run whose grader server is gone: proofs exist, grades do not.
    r = run_cli(["bench", "run", "--dataset", _write_problems(tmp_path / "problems.jsonl"), "--provider", "sim",
                 "--k", "2", "-n", "2", "--seed", "0", "--grader-base-url", f"http://127.0.0.1:{closed_port()}/v1",
                 "--grader-model", "x", "--json"], env)
    assert r.returncode == 2 and r.stderr.splitlines()[-1].startswith("proofloop: error: unreachable"), r.stderr
    [failed] = Store(db).list_runs()
    assert failed.kind == "bench" and failed.status.value == "failed" and Store(db).proofs(failed.id)
    line = one_line_error(run_cli(["bench", "report", failed.id, "-o", str(tmp_path / "rep1")], env))
    assert "no grades" in line and f"proofloop resume {failed.id}" in line
    assert not (tmp_path / "rep1").exists()

    # A bench-grade run whose grader answered every time, never with a score.
    with running_server(_no_score) as (server, _):
        graded = run_cli(["bench", "grade", "--proofs", _write_proofs(tmp_path / "proofs.jsonl"), "--grader",
                          "verifier", "-n", "2", "--base-url", server.base_url, "--model", "judge", "--json"], env)
    assert graded.returncode in (0, 2), graded.stderr
    [grade_run] = Store(db).list_runs(kind="bench-grade")
    line = one_line_error(run_cli(["bench", "report", grade_run.id, "-o", str(tmp_path / "rep2")], env))
    assert "no grades" in line
    assert not (tmp_path / "rep2").exists()

    # Not a bench run at all.
    (tmp_path / "p.md").write_text(PROBLEM)
    prove = run_cli(["prove", str(tmp_path / "p.md"), "--provider", "sim", "--strategy", "single",
                     "--k", "1", "--json"], env)
    assert prove.returncode == 0, prove.stderr
    prove_id = json.loads(prove.stdout)["run_id"]
    assert "bench report takes bench" in one_line_error(run_cli(["bench", "report", prove_id], env))

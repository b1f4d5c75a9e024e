"""The bench and train commands take several servers of one model where they take a server
URL, as `--base-url` does (repeated and/or comma-separated; models/replicas.py spreads the
requests): `bench run --grader-base-url A --grader-base-url B` grades on both (the store's
llm_calls.endpoint says which answered), `train serve-rewards --judge-base-url A --judge-base-url
B` judges on both (the servers' request logs). The CLI runs as subprocesses against simulated
servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx

from proofloop.sim import make_problems
from proofloop.sim.app import make_sim_app
from proofloop.sim.http import ServerThread
from proofloop.store import Store

CLI = [sys.executable, "-m", "proofloop.cli"]
PROOF = ("## Solution\n\nBy induction on n.\n\n## Self Evaluation\n\nHere is my evaluation of the solution: "
         "complete.\n\nBased on my evaluation, the final overall score should be: \\boxed{1}")


def test_bench_grades_on_every_grader_replica(tmp_path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"id": f"P{i}", "statement": s}) + "\n"
                                for i, s in enumerate(make_problems(24, seed=2))))
    db = str(tmp_path / "runs.db")
    with ServerThread(make_sim_app(seed=0)) as prover, ServerThread(make_sim_app(seed=0)) as a, \
            ServerThread(make_sim_app(seed=0)) as b:
        done = subprocess.run(CLI + ["bench", "run", "--dataset", str(problems), "--provider", "openai",
                                     "--base-url", prover.base_url, "--model", "sim-1", "--api-key", "x",
                                     "--strategy", "single", "--k", "1", "-n", "2", "--seed", "0",
                                     "--grader-base-url", a.base_url, "--grader-base-url", b.base_url,
                                     "--grader-model", "sim-1", "--json", "--db", db],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PROOFLOOP_GRADER_API_KEY": "x"})
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    with Store(db) as store:
        grader = store.get_run(run_id).config["grader"]["model"]
        calls = store.calls(run_id)
    assert grader["base_url"] == f"{a.base_url},{b.base_url}"
    graders = {a.base_url.rstrip("/"), b.base_url.rstrip("/")}
    by_endpoint = {c.endpoint for c in calls}
    assert by_endpoint == {prover.base_url.rstrip("/"), *graders}  # 24 proofs: all on one replica by chance ~2^-23


def test_serve_rewards_judges_on_every_judge_replica(tmp_path):
    logs: dict[str, list[dict]] = {"a": [], "b": []}
    url_file = tmp_path / "url"
    with ServerThread(make_sim_app(seed=0, request_log=logs["a"])) as a, \
            ServerThread(make_sim_app(seed=0, request_log=logs["b"])) as b:
        proc = subprocess.Popen(CLI + ["train", "serve-rewards", "--port", "0", "--judge-base-url", a.base_url,
                                       "--judge-base-url", b.base_url, "--judge-model", "sim-1", "--judge-api-key",
                                       "x", "-n", "2", "--url-file", str(url_file)], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not url_file.exists():
                assert proc.poll() is None and time.monotonic() < deadline, "the reward server did not start"
                time.sleep(0.05)
            items = [{"problem": p, "completion": PROOF} for p in make_problems(32, seed=4)]
            answer = httpx.post(url_file.read_text().strip() + "/rewards", json={"task": "generator", "items": items},
                                timeout=120)
        finally:
            proc.terminate()
            proc.wait(10)
    results = answer.json()["results"]
    assert len(results) == 32 and all(r["total"] is not None for r in results), results
    assert all(len(entries) >= 1 for entries in logs.values()), {k: len(v) for k, v in logs.items()}

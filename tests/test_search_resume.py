"""kill -9 of `proofloop prove --strategy pool` mid-round, then `proofloop resume`: the run
completes, no call stored before the kill is sent again, and the decisions equal those of an
uninterrupted run (same seed: the simulated server's sampling is a function of the seed)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
import subprocess
from pathlib import Path

import pytest

from proofloop.sim.http import read_request_log
from support.samples import kill_9_when, sent_samples, stored_samples
from support.scripted import ServerProcess
from proofloop.store import Store
from support.cli import CLI, cli_env, run_json

OPTIONS = ["--strategy", "pool", "-o", "preset=release", "-o", "initial=6", "-o", "verifications=6",
           "-o", "top_k=2", "-o", "samples_per_prompt=2", "-o", "rounds=3", "-o", "accept=false",
           "--max-tokens", "200000", "--verify-max-tokens", "200000", "--seed", "3", "--max-concurrency", "8"]
# ~0.2 s per generation and ~0.1 s per verification request at this time scale
SCRIPT = {"responder": {"seed": 0, "time_scale": 2000.0}}
FACTORY = "proofloop.sim.app:responder_factory"


def _env(db: Path, url: str) -> dict[str, str]:
    return {**cli_env(db, url), "PROOFLOOP_MODEL": "sim-1"}


def _round_reached(db: Path) -> int:
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return con.execute("select coalesce(max(round), -1) from proofs").fetchone()[0]
    except sqlite3.OperationalError:
        return -1


def _decisions(summary: dict) -> tuple:
    r = summary["report"]
    return (summary["best_proof_id"] is not None, r["chosen"]["mean_score"], r["chosen"]["slot"],
            [n["slot"] for n in r["lineage"]], r["proofs"], r["analyses"], summary["stop_reason"])


@pytest.fixture(scope="module")
def problem_file(tmp_path_factory) -> Path:
    from proofloop.sim import make_problems

    p = tmp_path_factory.mktemp("problem") / "problem.md"
    p.write_text(make_problems(1, seed=6, mix="hard")[0])
    return p


def test_kill_9_mid_round_then_resume(tmp_path: Path, problem_file):
    log_path = tmp_path / "log.jsonl"
    with ServerProcess(script=SCRIPT, responder_factory=FACTORY, request_log=log_path) as server:
        whole = run_json(["prove", str(problem_file), *OPTIONS], _env(tmp_path / "whole.db", server.base_url))

        db = tmp_path / "killed.db"
        env = _env(db, server.base_url)
        proc = subprocess.Popen(CLI + ["prove", str(problem_file), *OPTIONS, "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # round 2's refined proofs exist: its verifications are in flight
        killed_at = kill_9_when(proc, lambda: _round_reached(db) >= 2)

        store = Store(db)
        run = store.list_runs()[0]
        assert run.status.value == "interrupted"  # killed mid-run: its process is gone, so the lease is void
        stored_before = stored_samples(store, run.id)
        store.close()
        resumed = run_json(["resume", run.id], env)

    sent_after = sent_samples(read_request_log(log_path), since=killed_at)
    assert sent_after, "nothing was left to do after the kill: the test proves nothing"
    assert not stored_before & set(sent_after), "a call stored before the kill was sent again"
    assert len(sent_after) == len(set(sent_after))
    assert Store(db).get_run(run.id).status.value == "finished"
    assert resumed["stop_reason"] == "round_limit" and resumed["report"]["rounds_reached"] == 3
    assert _decisions(resumed) == _decisions(whole)

"""kill -9 of `proofloop prove --strategy pool` mid-round, then `proofloop resume`: the run
completes, no call stored before the kill is sent again, and the decisions equal those of an
uninterrupted run (same seed: the simulated server's sampling is a function of the seed).

The killed run cannot end before the kill: the server answers all but its last 3 requests (as
many as the uninterrupted run sent) and holds those (a gate file) until the kill is done."""

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


def gated_server(gate: Path, log_path: Path) -> ServerProcess:
    """The simulator (SCRIPT) behind support.scripted's gate: while `gate` holds a number N,
    requests numbered above N wait."""
    return ServerProcess(script={"responder": {**SCRIPT["responder"], "gate": str(gate), "responder": FACTORY}},
                         responder_factory="support.scripted:gated_responder", request_log=log_path)


def hold_the_last(gate: Path, log_path: Path, held: int) -> None:
    """Let the next run (as long as the one in the log) have all but its last `held` requests
    answered."""
    sent = max(e["number"] for e in read_request_log(log_path))
    gate.write_text(str(2 * sent - held))


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
    log_path, gate = tmp_path / "log.jsonl", tmp_path / "gate"
    with gated_server(gate, log_path) as server:
        whole = run_json(["prove", str(problem_file), *OPTIONS], _env(tmp_path / "whole.db", server.base_url))
        hold_the_last(gate, log_path, 3)  # round 3's verifications: round 2 is done by then

        db = tmp_path / "killed.db"
        env = _env(db, server.base_url)
        proc = subprocess.Popen(CLI + ["prove", str(problem_file), *OPTIONS, "--json"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:  # round 2's refined proofs exist: its verifications are in flight (or held)
            killed_at = kill_9_when(proc, lambda: _round_reached(db) >= 2)
        finally:
            gate.unlink()

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

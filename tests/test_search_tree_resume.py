"""kill -9 of `proofloop prove --strategy tree` against the simulator over HTTP, then
`proofloop resume`: the run completes, no call stored before the kill is sent again, and the
explored tree equals that of an uninterrupted run (same seed). The killed run cannot end
before the kill: the server holds its last 3 requests (a gate file) until the kill is done."""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

from proofloop.sim.http import read_request_log
from proofloop.store import Store
from support.cli import CLI, cli_env, run_json
from support.samples import kill_9_when, sent_samples, stored_samples
from test_search_resume import gated_server, hold_the_last

OPTIONS = ["--strategy", "tree", "-o", "k=3", "-o", "step_verifications=3", "-o", "verifications=4",
           "-o", "max_expansions=8", "--max-tokens", "200000", "--verify-max-tokens", "200000", "--seed", "3",
           "--max-concurrency", "8"]


def _nodes(db: Path) -> int:
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return con.execute("select count(*) from proofs").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _explored(summary: dict) -> tuple:
    r = summary["report"]
    return r["tree"], r["expansions"], r["nodes"], r["finished"], summary["stop_reason"], summary["score"]


def test_kill_9_mid_tree_then_resume(tmp_path: Path):
    from proofloop.sim import make_problems

    problem = tmp_path / "problem.md"
    problem.write_text(make_problems(1, seed=6, mix="hard")[0])
    log_path, gate = tmp_path / "log.jsonl", tmp_path / "gate"
    with gated_server(gate, log_path) as server:
        env_of = lambda db: {**cli_env(db, server.base_url), "PROOFLOOP_MODEL": "sim-1"}  # noqa: E731
        whole = run_json(["prove", str(problem), *OPTIONS], env_of(tmp_path / "whole.db"))
        assert whole["report"]["expansions"] >= 4, "the run is too short to be killed in the middle"
        hold_the_last(gate, log_path, 3)  # the last expansion's: the first two are stored by then

        db = tmp_path / "killed.db"
        proc = subprocess.Popen(CLI + ["prove", str(problem), *OPTIONS, "--json"], env=env_of(db),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:  # two expansions recorded: the third one's calls are in flight
            killed_at = kill_9_when(proc, lambda: _nodes(db) >= 7)
        finally:
            gate.unlink()

        store = Store(db)
        run = store.list_runs()[0]
        assert run.status.value == "interrupted"
        stored_before = stored_samples(store, run.id)
        store.close()
        resumed = run_json(["resume", run.id], env_of(db))

    sent_after = sent_samples(read_request_log(log_path), since=killed_at)
    assert sent_after, "nothing was left to do after the kill: the test proves nothing"
    assert not stored_before & set(sent_after), "a call stored before the kill was sent again"
    assert len(sent_after) == len(set(sent_after))
    assert Store(db).get_run(run.id).status.value == "finished"
    assert _explored(resumed) == _explored(whole)

"""kill -9 of a running `proofloop prove` at several points, then `proofloop resume`.

The server answers deterministically per request (the scripted responder), logs every request
to a file. The server of the killed run holds every request after the first `kill_after` until
its client is gone (a slow fault), so the kill lands mid-run whatever the machine's speed; the
resume then finishes on a second server of the same answers, whose log holds only its
requests. Checks: no call that was stored before the kill is sent again after it, and the final
record equals an uninterrupted run's."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from proofloop.sim.http import fingerprint, read_request_log
from support.scripted import ServerProcess
from proofloop.store import Store
from support.cli import CLI, cli_env, stored_calls, run_json

ARGS = ["--threads", "3", "--attempts", "3", "--seed", "11", "--max-concurrency", "2", "--max-tokens", "8192"]
SCRIPT = {"stream_delay_s": 0.02, "stream_chunk_chars": 16}  # about 0.3-0.6 s per request


def _record(store: Store, run_id: str) -> list[tuple]:
    """What a run produced, independent of its run id (call keys include the run id)."""
    return sorted((p.thread, p.attempt, p.status, p.solution, p.self_score, p.cause) for p in store.proofs(run_id))




def _sent(entries: list[dict], since: float = 0.0) -> list[tuple[str, int]]:
    return [(e["messages_sha"], e["seed"]) for e in entries if e.get("t_start", 0) >= since and "messages_sha" in e]


def _stored(store: Store, run_id: str) -> set[tuple[str, int]]:
    """(messages, seed sent) of every stored call: the client sends seed + first index of a request."""
    return {(fingerprint({"messages": c.messages}), c.sampling["seed"] + c.index) for c in store.calls(run_id)}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, problem_file):
    tmp = tmp_path_factory.mktemp("whole")
    with ServerProcess(script=SCRIPT, request_log=tmp / "log.jsonl") as server:
        out = run_json(["prove", str(problem_file)] + ARGS, cli_env(tmp / "db", server.base_url))
    return Store(tmp / "db"), out


@pytest.fixture(scope="module")
def problem_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("problem") / "problem.md"
    p.write_text("Prove that the sum of two odd integers is even.")
    return p


# The run makes 6 calls, 2 at a time. Its server answers the first `kill_after` requests and
# holds the rest (a slow fault, until the client is gone), so the kill lands with exactly
# `kill_after` calls stored, however slowly this machine polls. (Before, the run went on at full
# speed and the kill had to beat its end: 0.4 s after the 4th call, none after the 6th.)
@pytest.mark.parametrize("kill_after", [1, 3, 4])
def test_kill_9_then_resume_repeats_no_finished_call(tmp_path: Path, problem_file, uninterrupted, kill_after):
    log_path = tmp_path / "log.jsonl"
    db = tmp_path / "db"
    held = {str(n): {"kind": "slow", "delay_s": 300} for n in range(kill_after + 1, 13)}
    with ServerProcess(script={**SCRIPT, "faults": {"by_request": held}}) as server:
        proc = subprocess.Popen(CLI + ["prove", str(problem_file)] + ARGS + ["--json"],
                                env=cli_env(db, server.base_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        deadline = time.monotonic() + 120
        while stored_calls(db) < kill_after:  # kill once this many calls are safely stored
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    killed_at = time.time()

    store = Store(db)
    run = store.list_runs()[0]
    assert run.status.value == "interrupted"  # killed: its process is gone, so `runs list` says so at once
    stored_before = _stored(store, run.id)
    assert len(stored_before) == kill_after  # the other requests were held: none finished
    store.close()

    with ServerProcess(script=SCRIPT, request_log=log_path) as server:
        resumed = run_json(["resume", run.id, "--base-url", server.base_url], cli_env(db, server.base_url))

    sent_after = _sent(read_request_log(log_path), since=killed_at)
    assert not stored_before & set(sent_after), "a call stored before the kill was sent again"
    assert len(sent_after) == len(set(sent_after))
    whole_store, whole = uninterrupted
    assert len(sent_after) == whole["usage"]["calls"] - kill_after  # every call not stored, once

    store = Store(db)
    assert store.get_run(run.id).status.value == "finished"
    assert _record(store, run.id) == _record(whole_store, whole["run_id"])
    assert resumed["proof"] == whole["proof"] and resumed["self_score"] == whole["self_score"]
    assert resumed["usage"]["calls"] == whole["usage"]["calls"]

"""`proofloop serve` runs that stop: cancelled (queued or mid-run), or the server killed with
kill -9 mid-run and started again, which resumes the run without sending a finished call
again. The model is the scripted server, logging every request it receives. It answers the
first requests and holds the later ones (a gate file, or a slow fault) until the stop is done,
so the stop lands mid-run with a known number of calls stored however slowly the machine runs;
a restarted run then gets its answers (the gate deleted)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from proofloop.sim.http import fingerprint, read_request_log
from proofloop.store import Store
from support.api import ApiServer, read_events, wait_for
from support.cli import stored_calls
from support.scripted import ServerProcess

pytest.importorskip("prometheus_client")

SCRIPT = {"stream_delay_s": 0.02, "stream_chunk_chars": 16}
GATED = "support.scripted:gated_responder"
SERVE = ["--max-concurrency", "2", "--max-tokens", "8192"]
PROVE = {"problem": "Prove that the sum of two odd integers is even.", "strategy": "sequential",
         "options": {"threads": 3, "attempts": 3}, "sampling": {"seed": 11}}


def sent(log: Path, since: float = 0.0) -> list[tuple[str, int]]:
    return [(e["messages_sha"], e["seed"]) for e in read_request_log(log)
            if e.get("t_start", 0) >= since and "messages_sha" in e]


def stored(db: Path, run_id: str) -> set[tuple[str, int]]:
    """(messages, seed sent) of every stored call: the client sends seed + first index of a request."""
    store = Store(db)
    try:
        return {(fingerprint({"messages": c.messages}), c.sampling["seed"] + c.index) for c in store.calls(run_id)}
    finally:
        store.close()


def status(client, run_id: str) -> str:
    return client.get(f"/v1/runs/{run_id}").json()["status"]


def test_kill_9_mid_run_then_restart_resumes_without_repeating_a_finished_call(tmp_path):
    db, log, gate = tmp_path / "db", tmp_path / "log.jsonl", tmp_path / "gate"
    gate.write_text("3")  # requests after the 3rd wait until the kill is done
    script = {**SCRIPT, "responder": {"gate": str(gate)}}
    with ServerProcess(script=script, responder_factory=GATED, request_log=log) as model:
        try:
            first = ApiServer(db, SERVE, model_url=model.base_url).start()
            with first.client() as c:
                run_id = c.post("/v1/prove", json=PROVE).json()["id"]
                wait_for(lambda: stored_calls(db) >= 3)
            first.kill()
            killed_at = time.time()
        finally:
            gate.unlink()
        before = stored(db, run_id)
        assert len(before) == 3  # the run was held mid-way: 3 of its 6 calls

        with ApiServer(db, SERVE, model_url=model.base_url) as second, second.client() as c:
            run = wait_for(lambda: (r := c.get(f"/v1/runs/{run_id}").json())["status"] == "finished" and r)
            events = read_events(c, run_id)
        first.stop()

    after = sent(log, since=killed_at)
    assert len(after) == run["usage"]["calls"] - len(before) > 0, "every call not stored is sent once after"
    assert not before & set(after), "a call stored before the kill was sent again"
    assert len(after) == len(set(after))
    assert run["usage"]["calls"] == len(stored(db, run_id)) and run["summary"]["proof"]
    assert [e["event"] for e in events].count("proof") == run["progress"]["proofs"]
    assert events[-1]["data"]["status"] == "finished"


def test_cancel_queued_and_running_runs_and_a_restart_leaves_them(tmp_path):
    db, log = tmp_path / "db", tmp_path / "log.jsonl"
    held = {str(n): {"kind": "slow", "delay_s": 300} for n in range(2, 13)}  # until the client is gone
    with ServerProcess(script={**SCRIPT, "faults": {"by_request": held}}, request_log=log) as model:
        with ApiServer(db, SERVE + ["--workers", "1"], model_url=model.base_url) as server, server.client() as c:
            running = c.post("/v1/prove", json=PROVE).json()["id"]
            queued = c.post("/v1/prove", json={**PROVE, "sampling": {"seed": 12}}).json()["id"]
            wait_for(lambda: stored_calls(db) >= 1)  # the others are held: it runs until cancelled
            assert status(c, queued) == "queued" and status(c, running) == "running"

            assert c.post(f"/v1/runs/{queued}/cancel").json() == {"id": queued, "status": "cancelled"}
            assert c.post(f"/v1/runs/{running}/cancel").status_code == 200
            wait_for(lambda: status(c, running) == "cancelled" and not c.get("/metrics").text.count(
                "proofloop_runs_executing 1.0"))
            end = read_events(c, running, timeout=30)[-1]
            assert end["event"] == "end" and end["data"]["status"] == "cancelled"
            assert c.post(f"/v1/runs/{running}/cancel").status_code == 409  # nothing left to cancel
            assert c.get(f"/v1/runs/{queued}").json()["progress"]["proofs"] == 0
            assert 'proofloop_runs{kind="prove",status="cancelled"} 2.0' in c.get("/metrics").text
            cancelled_at = time.time()
        with ApiServer(db, SERVE, model_url=model.base_url) as again, again.client() as c:
            time.sleep(1.0)  # a restarted server would have picked them up by now
            assert status(c, running) == status(c, queued) == "cancelled"
    assert sent(log, since=cancelled_at) == [], "a cancelled run sent requests after it was cancelled"


def test_a_stopped_server_stores_its_runs_interrupted_and_finishes_them_when_started_again(tmp_path):
    db, log, gate = tmp_path / "db", tmp_path / "log.jsonl", tmp_path / "gate"
    gate.write_text("1")  # requests after the first wait until the stop is done
    script = {**SCRIPT, "responder": {"gate": str(gate)}}
    with ServerProcess(script=script, responder_factory=GATED, request_log=log) as model:
        try:
            first = ApiServer(db, SERVE, model_url=model.base_url).start()
            with first.client() as c:
                run_id = c.post("/v1/prove", json={**PROVE, "options": {"threads": 2, "attempts": 2}}).json()["id"]
                wait_for(lambda: stored_calls(db) >= 1)
            first.stop()  # SIGTERM: a clean stop
        finally:
            gate.unlink()
        stopped_at, before = time.time(), stored(db, run_id)
        assert len(before) == 1
        store = Store(db)
        run = store.get_run(run_id)
        store.close()
        assert (run.status.value, run.owner) == ("interrupted", None) and "server stopped" in run.error
        with ApiServer(db, SERVE, model_url=model.base_url) as second, second.client() as c:
            done = wait_for(lambda: (r := c.get(f"/v1/runs/{run_id}").json())["status"] == "finished" and r)
    assert done["summary"]["proof"] and done["usage"]["calls"] == len(stored(db, run_id)) > len(before)
    assert not before & set(sent(log, since=stopped_at)), "a call stored before the stop was sent again"

"""What keeps a run's event stream cheap and prompt (bench/serve/RESULTS.md), checked without
timing it: a record stored by the server's process wakes its streams (an event arrives though
the poll interval is set far beyond the test's patience); each look at the store reads the
records by time from an index, not by sorting every record of the run; the store migrates to
those indexes; a look parses only the analyses it sends."""

from __future__ import annotations

import sqlite3
import threading
import time

import httpx
import pytest
import uvicorn
from sqlalchemy import event

from proofloop.api import events, routes
from proofloop.api.app import create_app
from proofloop.api.settings import ServeSettings
from proofloop.models.base import Completion
from proofloop.models.cache import CallRecord
from proofloop.store import Store
from proofloop.store.derive import derived_fields
from proofloop.store.schema import SCHEMA_VERSION, TIME_INDEXES

NO_POLL_S = 60.0  # the streams' poll interval in these tests: longer than any wait below
PATIENCE_S = 20.0


class Served:
    """The app on a real uvicorn in a thread of this process (so the test writes to its store)."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + PATIENCE_S
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        return "http://127.0.0.1:%d" % self.server.servers[0].sockets[0].getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(PATIENCE_S)


def stream_lines(url: str, run_id: str, out: list[tuple[float, str]]) -> None:
    with httpx.Client(base_url=url, timeout=PATIENCE_S * 3) as c, c.stream("GET", f"/v1/runs/{run_id}/events") as r:
        for line in r.iter_lines():
            out.append((time.monotonic(), line))
            if line == "event: end":
                return


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_a_stored_record_wakes_the_stream_without_waiting_for_a_poll(tmp_path, monkeypatch):
    monkeypatch.setattr(routes, "POLL_S", NO_POLL_S)
    app = create_app(ServeSettings(db=tmp_path / "s.db", resume_unfinished=False, viewer=False, rewards=False))
    services = app.state.services
    store = services.store
    run_id = store.create_run("verify", {"api": {"service": True}})  # queued: a live run
    problem = store.add_problem(run_id, "P")
    lines: list[tuple[float, str]] = []
    with Served(app) as url:
        reader = threading.Thread(target=stream_lines, args=(url, run_id, lines), daemon=True)
        reader.start()
        wait_until(lambda: services.writes.waiters, "the stream to wait for news")
        store.add_proof(run_id, "p1", problem_id=problem, raw="x", status="ok")
        wait_until(lambda: "event: proof" in [line for _, line in lines], "the proof's event")
        wait_until(lambda: services.writes.waiters, "the stream to wait again")
        store.set_run_status(run_id, "finished")
        reader.join(PATIENCE_S)
    seen = [line for _, line in lines]
    assert seen.count("event: proof") == 1 and seen[-1] == "event: end"


async def test_a_wait_returns_at_once_for_a_write_during_the_look(tmp_path):
    store = Store(tmp_path / "s.db")
    writes = events.StoreWrites(store)
    seen = writes.count
    store.create_run("verify", {})  # stored while the stream looked: its wait must not sleep
    assert await writes.wait(seen, timeout=NO_POLL_S) is True
    assert writes.count == seen + 1


def test_reads_do_not_count_as_writes(tmp_path):
    store = Store(tmp_path / "s.db")
    writes = events.StoreWrites(store)
    run_id = store.create_run("verify", {})
    before = writes.count
    store.get_run(run_id)
    events.record_events(store, run_id)
    assert writes.count == before == 1


def plans(store: Store, run_id: str, after: str | None) -> list[str]:
    """SQLite's plan for each statement record_events runs."""
    statements: list[tuple[str, tuple]] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        events.record_events(store, run_id, after)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    with sqlite3.connect(store.path) as con:
        return [" | ".join(row[-1] for row in con.execute("EXPLAIN QUERY PLAN " + sql, params))
                for sql, params in statements]


def test_a_look_at_the_store_reads_each_table_by_time_from_its_index(tmp_path):
    store = Store(tmp_path / "s.db")
    run_id = store.create_run("verify", {})
    problem = store.add_problem(run_id, "P")
    store.add_proof(run_id, "p1", problem_id=problem, raw="x", status="ok")
    store.add_verification(run_id, "v1", proof_id="p1", raw="", status="ok", score=1.0)
    after = events.record_events(store, run_id)[0].id
    found = plans(store, run_id, after)
    for table, index in TIME_INDEXES.items():
        mine = [p for p in found if f" {table} USING" in p]
        assert len(mine) == 1 and f"INDEX {index} (run_id=? AND created_at>?)" in mine[0], found
        assert "TEMP B-TREE" not in mine[0], mine


def test_a_store_at_revision_0004_gets_the_time_indexes(tmp_path):
    path = tmp_path / "v4.db"
    with Store(path):
        pass
    with sqlite3.connect(path) as con:  # as a store written before revision 0005 left it
        for index in TIME_INDEXES.values():
            con.execute(f"DROP INDEX {index}")
        con.execute("UPDATE alembic_version SET version_num = '0004'")
        con.execute("PRAGMA user_version = 4")
    with Store(path):
        pass
    with sqlite3.connect(path) as con:
        names = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert con.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    assert set(TIME_INDEXES.values()) <= names


def test_a_look_parses_only_the_analyses_it_sends(tmp_path, monkeypatch):
    store = Store(tmp_path / "s.db")
    run_id = store.create_run("verify", {})
    problem = store.add_problem(run_id, "P")
    store.add_proof(run_id, "p1", problem_id=problem, raw="x", status="ok")
    text = ("Here is my evaluation of the solution: the bound in step 2 is used without proof.\n\n"
            "Based on my evaluation, the final overall score should be: \\boxed{0}")
    parsed = derived_fields("verification", text, None, "stop")
    for i in range(30):
        store.put_many([CallRecord(key=f"v{i:02d}", namespace=run_id, model="m", provider="sim", sampling={},
                                   messages=[{"role": "user", "content": "q"}], index=0, completion=Completion(text),
                                   tag="verify")])
        store.add_verification(run_id, f"v{i:02d}", proof_id="p1", raw=text, status="ok", score=0.0,
                               reasoning=parsed["reasoning"], analysis=parsed["analysis"], issues=parsed["issues"])
    assert store.verifications(run_id)[0].issues == parsed["issues"]  # stored in the call, derived again
    calls = []
    monkeypatch.setattr(events, "derived_fields", lambda *a: calls.append(a) or derived_fields(*a))
    sent = events.record_events(store, run_id, limit=5)
    assert [e.event for e in sent] == ["proof"] + ["analysis"] * 4
    assert len(calls) == 4
    assert [e.data["issues"] for e in sent[1:]] == [parsed["issues"]] * 4

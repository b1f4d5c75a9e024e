"""The run store: SQLite settings, idempotent records, the call cache, crash safety, export.

Tests taking the `store` or `db` fixture run twice: on an SQLite file and on a PostgreSQL
database (tests/support/postgres.py); the others are about SQLite files."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from sqlalchemy.exc import IntegrityError

from proofloop.errors import RateLimitError, ServerError
from proofloop.models.base import Completion
from proofloop.models.cache import CallCache, CallRecord
from proofloop.protocol.types import ParsedAnalysis, ParsedProof, ParseStatus
from proofloop.store import RunStatus, Store, StoreError, export_run, export_run_jsonl, messages_sha


@pytest.fixture
def store(db):
    with Store(db) as s:
        yield s


def count(store: Store, table: str) -> int:
    with store.engine.connect() as con:
        return con.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()


def record(key: str, *, namespace="ns", messages=None, index=0, text="out", tag="generate", tokens=5,
           cost=None):
    return CallRecord(key=key, namespace=namespace, model="m-1", provider="sim",
                      sampling={"temperature": 1.0, "top_p": 0.95}, index=index,
                      messages=messages or [{"role": "user", "content": "prove it"}],
                      completion=Completion(text=text, reasoning="think", finish_reason="stop",
                                            completion_tokens=tokens),
                      prompt_tokens=10, completion_tokens=tokens, cached_prompt_tokens=4, latency_s=0.5, tag=tag,
                      cost_usd=cost, attempt=2, request_size=4)


def test_sqlite_settings(tmp_path):
    store = Store(tmp_path / "runs.db")
    with sqlite3.connect(store.path) as con:  # WAL is a property of the file, seen by any client
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with store.engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") >= 1000
    assert store.integrity_check() == "ok"
    store.close()


def test_in_memory_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Store(":memory:") as s:
        run = s.create_run("prove", {})
        pid = s.add_problem(run, "P")
        s.add_proof(run, "g", problem_id=pid, raw="x", status="ok")
        assert [p.id for p in s.proofs(run)] == ["g"]
    assert list(tmp_path.iterdir()) == []  # nothing written to disk


def test_default_path(tmp_path, monkeypatch):
    monkeypatch.delenv("PROOFLOOP_DB", raising=False)
    monkeypatch.chdir(tmp_path)
    assert Store.default_path() == tmp_path / ".proofloop" / "proofloop.db"
    with Store(Store.default_path()):
        assert (tmp_path / ".proofloop" / "proofloop.db").exists()
    monkeypatch.setenv("PROOFLOOP_DB", str(tmp_path / "elsewhere.db"))
    assert Store.default_path() == tmp_path / "elsewhere.db"


def test_newer_schema_is_refused(tmp_path):
    Store(tmp_path / "a.db").close()
    with sqlite3.connect(tmp_path / "a.db") as con:
        con.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema v99"):
        Store(tmp_path / "a.db")


def test_runs(store):
    a = store.create_run("prove", {"strategy": "single", "problems": ["p1"]})
    assert re.fullmatch(r"r-\d{8}-[0-9a-f]{6}", a)
    b = store.create_run("bench", {})
    assert a != b
    run = store.get_run(a)
    assert (run.kind, run.status, run.config) == ("prove", RunStatus.RUNNING, {"strategy": "single", "problems": ["p1"]})
    assert run.created_at.tzinfo is not None
    assert [r.id for r in store.list_runs()] == [b, a]
    assert [r.id for r in store.list_runs(kind="prove")] == [a]
    assert len(store.list_runs(limit=1)) == 1

    assert store.update_run_config(a, {"rounds": 3}) == {"strategy": "single", "problems": ["p1"], "rounds": 3}
    assert store.get_run(a).config["rounds"] == 3
    store.set_run_status(a, "failed", summary={"proofs": 2}, error="rate_limit: slow down")
    run = store.get_run(a)
    assert (run.status, run.summary, run.error) == (RunStatus.FAILED, {"proofs": 2}, "rate_limit: slow down")
    assert run.updated_at >= run.created_at
    store.set_run_status(a, RunStatus.FINISHED)  # summary/error untouched when not given
    assert store.get_run(a).summary == {"proofs": 2}

    assert store.get_run("r-missing") is None
    with pytest.raises(KeyError):
        store.set_run_status("r-missing", "finished")
    with pytest.raises(ValueError):
        store.set_run_status(a, "done")
    # a caller-chosen id is idempotent
    assert store.create_run("bench", {"x": 1}, run_id="bench-1") == "bench-1"
    assert store.create_run("bench", {"x": 2}, run_id="bench-1") == "bench-1"
    assert store.get_run("bench-1").config == {"x": 1}


def add_tree(store, run):
    """A problem, two proofs (the second refined from the first), analyses, a meta-verification."""
    pid = store.add_problem(run, "Prove that there are infinitely many primes.", {"source": "euclid"}, name="p1")
    store.add_proof(run, "g1", problem_id=pid, raw="<think>hm</think>## Solution A", finish_reason="stop",
                    round=1, thread=0, attempt=0, meta={"temperature": 1.0},
                    **ParsedProof(status=ParseStatus.OK, reasoning="hm", solution="A", self_evaluation="fine",
                                  self_score=0.5).model_dump())
    store.add_verification(run, "v1", proof_id="g1", raw="analysis 1",
                           **ParsedAnalysis(status=ParseStatus.OK, analysis="gap in step 2", score=0.0,
                                            issues=["step 2"]).model_dump())
    store.add_verification(run, "v2", proof_id="g1", raw="cut", status=ParseStatus.TRUNCATED,
                           cause="finish_reason length")
    store.add_meta_verification(run, "m1", verification_id="v1", raw="meta", status="ok", analysis="valid",
                                rating=1.0)
    store.add_proof(run, "g2", problem_id=pid, raw="## Solution B", status="ok", solution="B", self_score=1.0,
                    round=2, parents=["g1"])
    store.link_lineage(run, "g2", analyses=["v1"])
    return pid


def test_records_and_queries(store):
    run = store.create_run("prove", {})
    pid = add_tree(store, run)
    p1, p2 = store.proofs(run)
    assert (p1.id, p1.problem_id, p1.status, p1.self_score, p1.reasoning, p1.round, p1.meta) == \
        ("g1", pid, "ok", 0.5, "hm", 1, {"temperature": 1.0})
    assert (p2.parents, p2.refined_from_analyses, p1.parents) == (["g1"], ["v1"], [])
    assert [p.id for p in store.proofs(run, problem_id=pid)] == ["g1", "g2"]
    assert store.proofs(run, problem_id=pid + 1) == []

    v1, v2 = store.verifications(proof_id="g1")
    assert (v1.score, v1.issues, v1.status) == (0.0, ["step 2"], "ok")
    assert (v2.score, v2.status, v2.cause) == (None, "truncated", "finish_reason length")  # no score, a cause
    assert [v.id for v in store.verifications(run_id=run)] == ["v1", "v2"]
    (m,) = store.meta_verifications(verification_id="v1")
    assert (m.rating, m.analysis) == (1.0, "valid")
    assert store.meta_verifications(run_id=run) == [m]
    (problem,) = store.problems(run)
    assert (problem.name, problem.meta) == ("p1", {"source": "euclid"})
    with pytest.raises(ValueError):
        store.verifications()


def test_every_add_is_idempotent(store):
    run = store.create_run("prove", {})
    pid = add_tree(store, run)
    before = {t: count(store, t) for t in ("problems", "proofs", "verifications", "meta_verifications",
                                                  "proof_lineage", "proof_refined_from_analyses")}
    assert before == {"problems": 1, "proofs": 2, "verifications": 2, "meta_verifications": 1,
                      "proof_lineage": 1, "proof_refined_from_analyses": 1}
    first_created = store.proofs(run)[0].created_at
    assert add_tree(store, run) == pid  # a resume replays the same records
    after = {t: count(store, t) for t in before}
    assert after == before
    assert store.proofs(run)[0].created_at == first_created

    # re-adding an id updates it in place
    store.add_proof(run, "g1", problem_id=pid, raw="## Solution A2", status="ok", self_score=1.0)
    store.add_verification(run, "v2", proof_id="g1", raw="full", status="ok", score=1.0)
    store.add_meta_verification(run, "m1", verification_id="v1", raw="meta", status="ok", rating=0.5)
    assert add_problem_again(store, run) == pid
    assert (store.proofs(run)[0].raw, store.proofs(run)[0].self_score) == ("## Solution A2", 1.0)
    assert store.verifications(proof_id="g1")[1].score == 1.0
    assert store.meta_verifications(run_id=run)[0].rating == 0.5
    assert store.problems(run)[0].meta == {"source": "other"}
    assert {t: count(store, t) for t in before} == before


def add_problem_again(store, run):
    return store.add_problem(run, "Prove that there are infinitely many primes.", {"source": "other"})


def test_same_ids_in_two_runs_stay_apart(store):
    # call keys are run-agnostic: a second run replaying the cache records the same ids
    a, b = store.create_run("prove", {}), store.create_run("prove", {})
    add_tree(store, a)
    add_tree(store, b)
    store.add_proof(b, "g1", problem_id=store.problems(b)[0].id, raw="changed in b", status="ok")
    assert store.proofs(a)[0].raw == "<think>hm</think>## Solution A"
    assert store.proofs(b)[0].raw == "changed in b"
    assert store.problems(a)[0].id != store.problems(b)[0].id
    assert len(store.verifications(proof_id="g1")) == 4
    assert len(store.verifications(run_id=a, proof_id="g1")) == 2


def test_references_are_enforced(store):
    run = store.create_run("verify", {})
    with pytest.raises(IntegrityError):
        store.add_verification(run, "v", proof_id="no-such-proof", raw="x", status="ok")
    with pytest.raises(IntegrityError):
        store.add_proof("r-missing", "g", problem_id=1, raw="x", status="ok")
    pid = store.add_problem(run, "P")
    store.add_proof(run, "g", problem_id=pid, raw="x", status="ok")
    with pytest.raises(IntegrityError):
        store.link_lineage(run, "g", parents=["no-such-parent"])
    with pytest.raises(IntegrityError):  # the proof and its links are one transaction
        store.add_proof(run, "g2", problem_id=pid, raw="y", status="ok", refined_from_analyses=["no-such-v"])
    assert [(p.id, p.parents) for p in store.proofs(run)] == [("g", [])]  # failures left nothing behind


def test_call_cache_round_trip_and_message_dedup(store):
    long_prompt = [{"role": "system", "content": "rules " * 2000}, {"role": "user", "content": "prove"}]
    same = [record(f"k{i}", messages=long_prompt, index=i, text=f"sample {i}") for i in range(64)]
    other = record("other", messages=[{"role": "user", "content": "verify"}], tag="verify")
    store.put_many([*same, other])
    assert count(store, "llm_calls") == 65
    assert count(store, "prompts") == 2  # one copy of the long prompt for 64 samples

    assert isinstance(store, CallCache)
    got = store.get("k7")
    assert got == same[7]  # every field, messages and completion included
    assert got.completion == Completion(text="sample 7", reasoning="think", finish_reason="stop", completion_tokens=5)
    assert store.get("missing") is None

    # a key already stored keeps its first record
    store.put_many([record("k7", messages=long_prompt, index=7, text="a different text")])
    assert store.get("k7").completion.text == "sample 7"
    assert count(store, "llm_calls") == 65

    assert {c.key for c in store.calls(keys=["other", "k1", "nope"])} == {"other", "k1"}
    assert len(store.calls()) == 65
    assert store.calls(namespace="elsewhere") == []
    assert messages_sha(long_prompt) == messages_sha([dict(reversed(m.items())) for m in long_prompt])


def test_put_many_is_atomic(store):
    bad = record("bad")
    bad.messages = [{"role": "user", "content": object()}]  # not JSON: fails mid-batch
    with pytest.raises(TypeError):
        store.put_many([record("a"), bad, record("c")])
    assert count(store, "llm_calls") == 0 and count(store, "prompts") == 0


def test_failures_and_run_usage(store):
    run = store.create_run("prove", {})
    store.put_many([record("g1", namespace=run, tokens=7, cost=0.25), record("g2", namespace=run, tokens=3),
                    record("v1", namespace=run, tag="verify", tokens=11, cost=0.5),
                    record("x", namespace="other-run", cost=9.0)])
    store.record_failure(["g3", "g4"], namespace=run, model="m-1", tag="generate", attempt=1,
                         error=RateLimitError("slow down", status=429, retry_after=2.0), latency_s=0.1)
    store.record_failure("v2", namespace=run, model="m-1", tag="verify", attempt=3, error=ServerError("boom", status=502))
    store.record_failure("y", namespace="other-run", attempt=1, error=ServerError("boom"))

    f = store.failures(run)
    # One row per failed request attempt, with every sample key it asked for.
    assert [(x.keys, x.n_keys, x.key, x.kind, x.status, x.retry_after, x.attempt, x.retryable) for x in f] == [
        (["g3", "g4"], 2, "g3", "rate_limit", 429, 2.0, 1, True),
        (["v2"], 1, "v2", "server_error", 502, None, 3, True)]
    assert f[0].message == "slow down" and f[0].latency_s == 0.1
    assert len(store.failures()) == 3

    usage = store.run_usage(run)
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens, usage.cached_prompt_tokens,
            usage.failures) == (3, 30, 21, 12, 2)  # failures count requests, not samples
    assert usage.latency_s == pytest.approx(1.5)
    assert (usage.cost_usd, usage.unpriced_calls) == (0.75, 1)  # an unknown price is not 0
    assert (usage.by_tag["generate"].calls, usage.by_tag["generate"].completion_tokens,
            usage.by_tag["generate"].failures) == (2, 10, 1)
    assert (usage.by_tag["verify"].calls, usage.by_tag["verify"].failures) == (1, 1)
    assert store.run_usage("r-no-calls").calls == 0


def test_export(store, tmp_path):
    run = store.create_run("prove", {"strategy": "pool"})
    pid = add_tree(store, run)
    store.add_problem(run, "An unsolved problem.", name="p2")
    store.put_many([record("g1", namespace=run, tokens=9), record("v1", namespace=run, tag="verify")])
    store.set_run_status(run, "finished", summary={"best": "g2"})

    lines = list(export_run(store, run))
    head, first, second = lines
    assert (head["type"], head["id"], head["status"], head["summary"]) == ("run", run, "finished", {"best": "g2"})
    assert head["usage"]["calls"] == 2
    assert (first["type"], first["id"], first["name"]) == ("problem", pid, "p1")
    g1, g2 = first["proofs"]
    assert (g1["id"], g1["call"]["completion_tokens"], g2["call"]) == ("g1", 9, None)
    assert (g2["parents"], g2["refined_from_analyses"]) == (["g1"], ["v1"])
    v1, v2 = g1["verifications"]
    assert (v1["score"], v1["call"]["model"], v1["meta_verifications"][0]["rating"]) == (0.0, "m-1", 1.0)
    assert (v2["status"], v2["score"], v2["meta_verifications"]) == ("truncated", None, [])
    assert (second["name"], second["proofs"]) == ("p2", [])

    out = io.StringIO()
    assert export_run_jsonl(store, run, out) == 3
    assert [json.loads(line) for line in out.getvalue().splitlines()] == json.loads(json.dumps(lines))
    path = tmp_path / "run.jsonl"
    export_run_jsonl(store, run, path)
    assert path.read_text(encoding="utf-8") == out.getvalue()
    with pytest.raises(KeyError):
        list(export_run(store, "r-missing"))


# A writer process: each iteration stores two calls in one transaction, then a proof and its
# analysis, then prints the iteration number (so every printed number is committed).
WRITER = r"""
import sys, time
from proofloop.models.base import Completion
from proofloop.models.cache import CallRecord
from proofloop.store import Store

path, run, n, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
store = Store(path)
pid = store.add_problem(run, "P")
body = "x" * 20000  # large enough that a kill can land inside a page write
msgs = [{"role": "user", "content": "prove P"}]
for i in range(n):
    recs = [CallRecord(key=f"c{i}-{j}", namespace=run, model="m", provider="sim", sampling={}, messages=msgs,
                       index=j, completion=Completion(text=f"{i}-{j}:" + body), prompt_tokens=1,
                       completion_tokens=1, cached_prompt_tokens=0, latency_s=0.0, tag="t") for j in (0, 1)]
    store.put_many(recs)
    store.add_proof(run, f"c{i}-0", problem_id=pid, raw=f"{i}:" + body, status="ok")
    store.add_verification(run, f"v{i}", proof_id=f"c{i}-0", raw=f"v{i}", status="ok", score=1.0)
    print(i, flush=True)
    time.sleep(pause)
"""


def start_writer(tmp_path, db, run, n, pause=0.0):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(db), run, str(n), str(pause)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill_9_loses_at_most_the_transaction_in_flight(tmp_path, db):
    with Store(db) as s:
        run = s.create_run("prove", {})
    writer = start_writer(tmp_path, db, run, n=100_000)
    committed = []
    deadline = time.monotonic() + 60
    while len(committed) < 60 and time.monotonic() < deadline:
        line = writer.stdout.readline()
        assert line, writer.stderr.read()
        committed.append(int(line))
    os.kill(writer.pid, signal.SIGKILL)
    rest, _ = writer.communicate()
    committed += [int(x) for x in rest.split()]
    assert writer.returncode == -signal.SIGKILL and len(committed) >= 60

    with Store(db) as s:
        assert s.integrity_check() == "ok"
        body = "x" * 20000
        proofs = {p.id: p for p in s.proofs(run)}
        for i in committed:
            for j in (0, 1):
                assert s.get(f"c{i}-{j}").completion.text == f"{i}-{j}:" + body
            assert proofs[f"c{i}-0"].raw == f"{i}:" + body
            assert [v.id for v in s.verifications(proof_id=f"c{i}-0")] == [f"v{i}"]
        # whatever got further than the last print is whole too: calls come in committed pairs
        assert len(s.calls(run)) % 2 == 0
        assert len(s.calls(run)) // 2 in (len(committed), len(committed) + 1)
        # and the file takes new writes
        s.put_many([record("after-crash")])
        assert s.get("after-crash") is not None


def test_readers_run_while_a_writer_writes(tmp_path):
    db = tmp_path / "runs.db"
    with Store(db) as s:
        run = s.create_run("prove", {})
    n = 40
    # A reader holding an open snapshot must not block the writer (it would, without WAL).
    held = sqlite3.connect(db, isolation_level=None)
    held.execute("BEGIN")
    assert held.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 0

    writer = start_writer(tmp_path, db, run, n=n, pause=0.002)
    seen = []
    with Store(db) as reader:
        while writer.poll() is None:
            calls = len(reader.calls(run))
            assert calls % 2 == 0  # never half a transaction
            seen.append(calls)
            reader.proofs(run)
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
        assert seen == sorted(seen)
        assert len(reader.calls(run)) == 2 * n and len(reader.proofs(run)) == n
    assert held.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 0  # its snapshot is stable
    held.execute("COMMIT")
    assert held.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 2 * n
    held.close()

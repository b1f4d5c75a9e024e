"""Store schema v2: run leases, one failure row per request, each model output stored once,
the migration from v1 files, and the streaming export.

Tests taking the `store`, `db` or `new_db` fixture run on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import json
import sqlite3
from contextlib import closing
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sqlalchemy import text

from proofloop.errors import ServerError
from proofloop.models.base import Completion
from proofloop.models.cache import CallRecord
from proofloop.protocol import parse_meta_verification, parse_proof, parse_verification
from proofloop.store import RunStatus, Store, export_run_jsonl
from proofloop.store.checks import RunBusy
from proofloop.store.lease import Heartbeat
from proofloop.store.migrate import HEAD
from proofloop.store.schema import SCHEMA_VERSION, USAGE_INDEX

V1_SQL = Path(__file__).parent / "data" / "store_v1.sql"

PROOF = ("<think>first I try small cases</think>## Solution\nBy induction on n. " + "Step. " * 40
         + "\n## Self Evaluation\nHere is my evaluation of the solution: sound.\n"
         "Based on my evaluation, the final overall score should be: \\boxed{1}")
ANALYSIS = ("Here is my evaluation of the solution: the base case is missing. There is a gap in step 2.\n"
            "Based on my evaluation, the final overall score should be: \\boxed{0.5}")
META = ("Here is my analysis of the evaluation: the issue is real.\n"
        "Based on my analysis, I will rate the evaluation as: \\boxed{1}")


@pytest.fixture
def store(db):
    with Store(db) as s:
        yield s


def call(key, text, *, namespace="ns", tag="generate", reasoning=None, finish_reason="stop"):
    return CallRecord(key=key, namespace=namespace, model="m-1", provider="sim", sampling={}, index=0,
                      messages=[{"role": "user", "content": f"prompt for {tag}"}],
                      completion=Completion(text=text, reasoning=reasoning, finish_reason=finish_reason,
                                            completion_tokens=7), prompt_tokens=3, completion_tokens=7, tag=tag)


def column(store: Store, sql: str, **params):
    with store.engine.connect() as con:
        return [tuple(row) for row in con.execute(text(sql), params)]


def sqlite_column(path, sql):
    with closing(sqlite3.connect(path)) as con:
        return con.execute(sql).fetchall()


# ---- leases ------------------------------------------------------------------------------------


def test_one_owner_at_a_time_and_an_expired_lease_reads_as_interrupted(store):
    run = store.create_run("prove", {})
    lease = store.acquire_run(run, "a", ttl_s=600)
    assert (store.get_run(run).status, store.get_run(run).owner) == (RunStatus.RUNNING, "a")
    with pytest.raises(RunBusy, match=f"^run {run} is in use by a "):
        store.acquire_run(run, "b", ttl_s=600)
    assert store.acquire_run(run, "a", ttl_s=600).owner == "a"  # the owner may take it again

    store.renew_lease(run, "a", ttl_s=-1)  # as if a's process died and its lease ran out
    assert store.get_run(run).status is RunStatus.INTERRUPTED  # computed ...
    assert [r.status for r in store.list_runs()] == [RunStatus.INTERRUPTED]
    assert column(store, "SELECT status FROM runs") == [("running",)]  # ... not stored

    taken = store.acquire_run(run, "b", ttl_s=600)  # an expired lease can be taken over
    assert store.get_run(run).status is RunStatus.RUNNING
    with pytest.raises(RunBusy, match="lost its lease"):
        lease.renew()
    with pytest.raises(RunBusy, match="no longer holds"):
        lease.release("failed")
    taken.release("finished", summary={"best": "g1"})
    after = store.get_run(run)
    assert (after.status, after.owner, after.lease_expires_at, after.summary) == (
        RunStatus.FINISHED, None, None, {"best": "g1"})
    with pytest.raises(KeyError):
        store.acquire_run("r-missing", "a", ttl_s=1)


def test_a_run_without_a_lease_keeps_its_stored_status(store):
    run = store.create_run("prove", {})
    assert store.get_run(run).status is RunStatus.RUNNING and store.get_run(run).lease_expires_at is None


ACQUIRE = r"""
import sys, time
from proofloop.store import Store
from proofloop.store.checks import RunBusy
store = Store(sys.argv[1])
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
try:
    store.acquire_run(sys.argv[2], owner=sys.argv[4], ttl_s=600)
    print("won")
except RunBusy:
    print("busy")
"""


def test_two_processes_never_both_acquire(tmp_path):
    # SQLite; on PostgreSQL four processes take one run's lease in tests/test_store_postgres.py.
    db = str(tmp_path / "runs.db")
    run = Store(db).create_run("prove", {})
    script = tmp_path / "acquire.py"
    script.write_text(ACQUIRE)
    start = str(time.time() + 2.0)  # all of them try at about the same moment
    procs = [subprocess.Popen([sys.executable, str(script), db, run, start, f"p{i}"],
                              stdout=subprocess.PIPE, text=True) for i in range(4)]
    answers = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    assert answers == ["busy", "busy", "busy", "won"]


def test_heartbeat_renews_and_reports_a_lost_lease(store):
    run = store.create_run("prove", {})
    lease = store.acquire_run(run, "a", ttl_s=600)
    first = lease.expires_at
    lost: list[BaseException] = []
    with Heartbeat(lease, every_s=0.01, on_lost=lost.append) as beat:
        deadline = time.monotonic() + 30
        while lease.expires_at == first and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lease.expires_at > first
        # Another process takes the run over (as after an expiry); a compare-and-set through the
        # store itself would race the heartbeat, which keeps renewing "a" every 10 ms.
        with store.engine.begin() as con:
            con.execute(text("UPDATE runs SET owner = 'b' WHERE id = :run"), {"run": run})
        while not lost and time.monotonic() < deadline:
            time.sleep(0.01)
    assert isinstance(beat.error, RunBusy) and lost == [beat.error]


# ---- failures per request ----------------------------------------------------------------------


def test_a_failed_request_is_one_row_with_all_its_keys(store):
    run = store.create_run("prove", {})
    store.record_failure(["k1", "k2", "k3"], namespace=run, model="m", tag="verify", attempt=2,
                         error=ServerError("boom", status=503), latency_s=1.5)
    store.record_failure("k4", namespace=run, model="m", tag="verify", attempt=1, error=ServerError("boom"),
                         latency_s=0.5)
    assert [(f.keys, f.n_keys, f.attempt) for f in store.failures(run)] == [(["k1", "k2", "k3"], 3, 2), (["k4"], 1, 1)]
    assert store.run_usage(run).failures == 2
    assert column(store, "SELECT count(*) FROM call_failures") == [(2,)]


# ---- each output stored once -------------------------------------------------------------------


def _record_all(store, run, *, with_calls: bool):
    if with_calls:
        store.put_many([call("g1", PROOF, namespace=run), call("v1", ANALYSIS, namespace=run, tag="verify"),
                        call("m1", META, namespace=run, tag="meta_verify")])
    pid = store.add_problem(run, "Show it.", name="p1")
    store.add_proof(run, "g1", problem_id=pid, raw=PROOF, finish_reason="stop", round=1,
                    **parse_proof(PROOF, finish_reason="stop").model_dump())
    store.add_verification(run, "v1", proof_id="g1", raw=ANALYSIS,
                           **parse_verification(ANALYSIS, finish_reason="stop").model_dump())
    store.add_meta_verification(run, "m1", verification_id="v1", raw=META,
                                **{k.replace("score", "rating"): v for k, v in
                                   parse_meta_verification(META, finish_reason="stop").model_dump().items()
                                   if k != "issues"})
    return pid


def _comparable(records):
    return [r.model_dump(exclude={"run_id", "created_at"}) for r in records]


def test_rows_made_by_a_call_keep_their_text_only_in_the_call(new_db):
    with Store(new_db()) as a, Store(new_db()) as b:
        run_a, run_b = a.create_run("prove", {}, run_id="r-1"), b.create_run("prove", {}, run_id="r-1")
        _record_all(a, run_a, with_calls=True)
        _record_all(b, run_b, with_calls=False)
        # Same records either way ...
        assert _comparable(a.proofs(run_a)) == _comparable(b.proofs(run_b))
        assert _comparable(a.verifications(run_a)) == _comparable(b.verifications(run_b))
        assert _comparable(a.meta_verifications(run_a)) == _comparable(b.meta_verifications(run_b))
        assert a.verifications(run_a)[0].issues and a.proofs(run_a)[0].solution.startswith("By induction")
        # ... but the text is stored once, in the call row.
        for table in ("proofs", "verifications", "meta_verifications"):
            assert column(a, f"SELECT raw, reasoning, from_call FROM {table}") == [("", None, 1)]
        assert column(b, "SELECT raw = :proof, from_call FROM proofs", proof=PROOF) == [(1, 0)]


def test_a_row_that_differs_from_its_call_keeps_its_own_text(store):
    run = store.create_run("prove", {})
    store.put_many([call("g1", PROOF, namespace=run)])
    pid = store.add_problem(run, "P")
    store.add_proof(run, "g1", problem_id=pid, raw="a proof the user typed", status="ok", solution="typed")
    assert (store.proofs(run)[0].raw, store.proofs(run)[0].solution) == ("a proof the user typed", "typed")
    store.add_proof(run, "g1", problem_id=pid, raw=PROOF, status="ok", solution="parsed another way")
    assert store.proofs(run)[0].solution == "parsed another way"
    assert column(store, "SELECT from_call FROM proofs") == [(0,)]


# ---- migration from v1 -------------------------------------------------------------------------


def test_a_v1_store_opens_and_upgrades(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as con:
        con.executescript(V1_SQL.read_text())
        con.execute("PRAGMA user_version = 1")
        con.execute("INSERT INTO runs VALUES ('r-old', 'prove', 'running', '2026-01-01 00:00:00', "
                    "'2026-01-01 00:00:00', '{}', NULL, NULL)")
        con.execute("INSERT INTO problems VALUES (1, 'r-old', 'sha', 'p1', 'P', '{}', '2026-01-01 00:00:00')")
        con.execute("INSERT INTO proofs VALUES ('r-old', 'g1', 1, 'old raw', NULL, 'sol', NULL, 1.0, 'ok', NULL, "
                    "'stop', 1, NULL, NULL, '{}', '2026-01-01 00:00:00')")
        con.execute("INSERT INTO call_failures VALUES (1, 'k1', 'r-old', 'm', 'generate', 1, 'timeout', NULL, "
                    "'slow', 1, NULL, 2.0, 1.0)")
    with Store(path) as s:
        assert sqlite_column(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
        # Brought to v3 by the ALTERs, then recorded at Alembic's baseline, which added what v1 lacked.
        assert sqlite_column(path, "SELECT version_num FROM alembic_version") == [(HEAD,)]
        assert sqlite_column(path, f"SELECT count(*) FROM sqlite_master WHERE name = '{USAGE_INDEX}'") == [(1,)]
        assert [(p.raw, p.solution) for p in s.proofs("r-old")] == [("old raw", "sol")]
        assert [(f.keys, f.n_keys) for f in s.failures("r-old")] == [(["k1"], 1)]
        assert s.get_run("r-old").status is RunStatus.RUNNING  # no lease: the stored status
        s.acquire_run("r-old", "a", ttl_s=60).release("finished")
        assert s.get_run("r-old").status is RunStatus.FINISHED
    with Store(path) as s:  # opening again is a no-op
        assert s.integrity_check() == "ok" and sqlite_column(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


# ---- export --------------------------------------------------------------------------------------


def export_in_memory(store, run_id):
    """The export as it was written before streaming (the whole run in memory): the reference."""
    run = store.get_run(run_id)
    yield {"type": "run", **run.model_dump(mode="json", exclude={"owner", "lease_expires_at"}),
           "usage": store.run_usage(run_id).model_dump(mode="json")}
    proofs, verifications = store.proofs(run_id), store.verifications(run_id=run_id)
    metas = store.meta_verifications(run_id=run_id)
    calls = {c.key: {"model": c.model, "provider": c.provider, "namespace": c.namespace,
                     "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                     "cached_prompt_tokens": c.cached_prompt_tokens, "latency_s": c.latency_s,
                     "cost_usd": c.cost_usd, "finish_reason": c.completion.finish_reason}
             for c in store.calls(keys=[x.id for x in [*proofs, *verifications, *metas]])}
    metas_of, verifications_of, proofs_of = {}, {}, {}
    for m in metas:
        metas_of.setdefault(m.verification_id, []).append({**m.model_dump(mode="json"), "call": calls.get(m.id)})
    for v in verifications:
        verifications_of.setdefault(v.proof_id, []).append(
            {**v.model_dump(mode="json"), "call": calls.get(v.id), "meta_verifications": metas_of.get(v.id, [])})
    for p in proofs:
        proofs_of.setdefault(p.problem_id, []).append(
            {**p.model_dump(mode="json"), "call": calls.get(p.id), "verifications": verifications_of.get(p.id, [])})
    for problem in store.problems(run_id):
        yield {"type": "problem", **problem.model_dump(mode="json"), "proofs": proofs_of.get(problem.id, [])}


def test_streaming_export_is_byte_identical_to_the_in_memory_one(store):
    run = store.create_run("prove", {"strategy": "pool"})
    pid = _record_all(store, run, with_calls=True)
    store.put_many([call("g2", PROOF.replace("Step", "Stage"), namespace=run)])
    store.add_proof(run, "g2", problem_id=pid, raw=PROOF.replace("Step", "Stage"), status="ok",
                    parents=["g1"], refined_from_analyses=["v1"])
    other = store.add_problem(run, "Another.", name="p2")
    store.add_proof(run, "u1", problem_id=other, raw="user proof", status="ok", solution="user proof")
    store.add_verification(run, "v2", proof_id="u1", raw="plain", status="no_final_phrase", issues=["x"])
    store.add_problem(run, "Unsolved.", name="p3")
    store.acquire_run(run, "a", ttl_s=600).release("finished", summary={"best": "g1"})
    expected = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in export_in_memory(store, run))
    out = io.StringIO()
    assert export_run_jsonl(store, run, out) == 4
    assert out.getvalue() == expected
    assert '"raw": "' + json.dumps(PROOF)[1:-1] in expected  # the text came back from the call


def test_export_asks_for_one_problem_at_a_time(store, monkeypatch):
    run = store.create_run("prove", {})
    for name in ("a", "b"):
        store.add_problem(run, name, name=name)
    asked: list = []
    original = Store.proofs
    monkeypatch.setattr(Store, "proofs",
                        lambda self, r, problem_id=None: asked.append(problem_id) or original(self, r, problem_id))
    assert export_run_jsonl(store, run, io.StringIO()) == 3
    assert None not in asked and len(asked) == 2


def test_run_usage_is_answered_from_the_covering_index(tmp_path):
    # The viewer's run page sums a run's usage on every view; on a paper-size search walking
    # every call row (texts included) took 4x longer than reading the covering index.
    from proofloop.store.schema import USAGE_INDEX
    path = tmp_path / "s.db"
    with Store(path):
        pass
    with sqlite3.connect(path) as con:
        plan = con.execute(
            "EXPLAIN QUERY PLAN SELECT tag, count(*), sum(prompt_tokens), sum(completion_tokens), "
            "sum(cached_prompt_tokens), sum(latency_s), sum(cost_usd) FROM llm_calls "
            "WHERE namespace = 'r' GROUP BY tag").fetchall()
    assert any(f"COVERING INDEX {USAGE_INDEX}" in row[-1] for row in plan), plan

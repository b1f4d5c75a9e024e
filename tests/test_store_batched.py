"""Batched record writes (runs.context.StoreRecorder, Store.add_records) on SQLite and
PostgreSQL: how many write transactions one verified proof costs (counted, not timed), that a
read sees every record handed over, that a failed batch is raised, and that batches stay
idempotent and in order."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event

from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.roles import generate, verify
from proofloop.runs.context import StoreRecorder
from proofloop.sim.provider import SimProvider
from proofloop.store import Store

PROBLEM = "Prove that the sum of two even integers is even."
SAMPLING = Sampling(seed=0, max_tokens=200_000)


class WriteCounter:
    """Counts committed transactions that wrote something (INSERT, UPDATE or DELETE)."""

    def __init__(self, store: Store):
        self.count = 0
        event.listen(store.engine, "before_cursor_execute", self.saw_statement)
        event.listen(store.engine, "commit", self.committed)

    def saw_statement(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            conn.info["wrote"] = True

    def committed(self, conn):
        if conn.info.pop("wrote", False):
            self.count += 1


@pytest.fixture
def setup(db):
    store = Store(db)
    run = store.create_run("bench", {})
    yield store, run, Model(SimProvider(seed=0), namespace=run, cache=store), StoreRecorder(store, run)
    store.close()


def test_a_verified_proof_costs_four_write_transactions(setup):
    store, run, model, recorder = setup
    recorder.problem_id(PROBLEM)
    writes = WriteCounter(store)

    async def prove_and_verify():
        proof = (await generate(model, PROBLEM, sampling=SAMPLING))[0]
        recorder.proof(PROBLEM, proof)
        verified = await verify(model, PROBLEM, proof, n=8, sampling=SAMPLING)
        for a in verified.analyses:
            recorder.analysis(PROBLEM, a)
        await asyncio.sleep(0)  # the held analyses are written when the search yields
        return proof, verified.analyses

    proof, analyses = asyncio.run(prove_and_verify())
    # the proof's call, the proof, the 8 analyses' calls (one request), the 8 analyses:
    # 4 transactions (one per record and per call before batching: 11)
    assert writes.count == 4
    assert [v.id for v in store.verifications(run, proof_id=proof.id)] == [a.id for a in analyses]
    assert writes.count == 4  # the read found nothing held back


def test_a_read_sees_every_record_handed_over_and_on_record_follows_the_write(setup):
    store, run, model, _ = setup
    seen: list[tuple[str, int]] = []
    recorder = StoreRecorder(store, run, on_record=lambda kind, record: seen.append(
        (kind, len(store.verifications(run)))))

    async def record_then_read():
        proof = (await generate(model, PROBLEM, sampling=SAMPLING))[0]
        recorder.proof(PROBLEM, proof)
        analyses = (await verify(model, PROBLEM, proof, n=3, sampling=SAMPLING)).analyses
        for a in analyses:
            recorder.analysis(PROBLEM, a)
        return [v.id for v in store.verifications(run)], [a.id for a in analyses]  # no yield in between

    stored, handed = asyncio.run(record_then_read())
    assert stored == handed
    assert seen == [("proof", 0), ("analysis", 3), ("analysis", 3), ("analysis", 3)]


def test_a_failed_batch_is_raised_at_the_next_record(setup, monkeypatch):
    store, run, model, recorder = setup

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    async def record_twice():
        proof = (await generate(model, PROBLEM, sampling=SAMPLING))[0]
        monkeypatch.setattr(store, "add_records", broken)
        recorder.proof(PROBLEM, proof)
        await asyncio.sleep(0)  # the batch fails inside the event loop
        with pytest.raises(RuntimeError, match="disk full"):
            recorder.proof(PROBLEM, proof)

    asyncio.run(record_twice())


def test_one_batch_holding_a_record_twice_stores_it_once_with_the_last_values(setup):
    store, run, model, recorder = setup

    async def record():
        proof = (await generate(model, PROBLEM, sampling=SAMPLING))[0]
        recorder.proof(PROBLEM, proof)
        analyses = (await verify(model, PROBLEM, proof, n=2, sampling=SAMPLING)).analyses
        for a in analyses + analyses:  # a replay within one stretch
            recorder.analysis(PROBLEM, a)
        recorder.analysis(PROBLEM, analyses[0].model_copy(update={"score": None, "status": analyses[0].status}))
        return proof, analyses

    proof, analyses = asyncio.run(record())
    recorder.flush()
    stored = store.verifications(run, proof_id=proof.id)
    assert [v.id for v in stored] == [a.id for a in analyses]
    assert stored[0].score is None and stored[1].score == analyses[1].score


def test_outside_an_event_loop_each_record_is_written_at_once(setup):
    store, run, model, recorder = setup
    proof = asyncio.run(generate(model, PROBLEM, sampling=SAMPLING))[0]
    recorder.problem_id(PROBLEM)
    writes = WriteCounter(store)
    recorder.proof(PROBLEM, proof)
    assert writes.count == 1 and recorder.pending == {"proofs": [], "verifications": [], "metas": []}


def test_the_store_does_not_keep_a_recorder_alive(setup):
    import gc
    import weakref

    store, run, _, _ = setup
    gone = weakref.ref(StoreRecorder(store, run))
    gc.collect()
    assert gone() is None
    assert store.proofs(run) == []  # a read after it is gone still works


def test_a_status_written_after_records_follows_them(setup):
    store, run, model, recorder = setup

    async def record_then_finish():
        proof = (await generate(model, PROBLEM, sampling=SAMPLING))[0]
        recorder.proof(PROBLEM, proof)  # held: the loop has not yielded yet
        store.set_run_status(run, "finished")
        return proof, list(recorder.pending["proofs"])

    proof, held_after_status = asyncio.run(record_then_finish())
    assert held_after_status == []
    assert [p.id for p in store.proofs(run)] == [proof.id]


def test_many_problems_in_one_transaction_get_the_ids_add_problem_gives(setup):
    store, run, _, _ = setup
    before = store.add_problem(run, "P1", meta={"v": 0}, name="one")
    writes = WriteCounter(store)
    ids = store.add_problems(run, [("P2", {"v": 2}, "two"), ("P1", {"v": 1}, None), ("P2", {"v": 3}, "two'")])
    assert writes.count == 1
    assert ids[1] == before and ids[0] == ids[2] != before  # a text has one id per run, in the given order
    by_id = {p.id: p for p in store.problems(run)}
    assert (by_id[before].meta, by_id[before].name) == ({"v": 1}, "one")  # no name given: kept
    assert (by_id[ids[0]].meta, by_id[ids[0]].name) == ({"v": 3}, "two'")  # the last of a text wins
    assert store.add_problems(run, []) == []


def test_a_verify_batch_of_64_pairs_costs_a_handful_of_transactions_to_create(db):
    from proofloop.bench.runs import create_grade_run
    from proofloop.models.factory import ModelSettings
    from proofloop.runs import ModelSetup

    store = Store(db)
    writes = WriteCounter(store)
    rows = [{"id": f"p{i}", "statement": f"Problem {i % 8}", "proof": f"Proof {i}"} for i in range(64)]
    run_id = create_grade_run(store, ModelSetup(ModelSettings(provider="sim")), grader="verifier", n=4, rows=rows)
    assert writes.count <= 4  # the run, its problems, its proofs (two per pair before)
    assert len(store.proofs(run_id)) == 64 and len(store.problems(run_id)) == 8
    store.close()

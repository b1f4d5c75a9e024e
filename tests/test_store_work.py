"""Work items: a run's work split over several worker processes, each unit claimed with an
expiring lease (Store.add_work / claim_work / renew_work / finish_work), on SQLite and on
PostgreSQL (the `db` fixture). A worker killed with kill -9 loses nothing: its claims expire
and another worker finishes them, and no finished call is made again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from proofloop.store import Store


@pytest.fixture
def store(db):
    with Store(db) as s:
        yield s


def test_claims_are_disjoint_expire_and_finish_once(store):
    run = store.create_run("bench", {})
    items = [f"p{i:02d}" for i in range(6)]
    store.add_work(run, items)
    store.add_work(run, items[:2])  # adding again changes nothing
    assert store.work_status(run) == {"done": 0, "held": 0, "free": 6}

    a = store.claim_work(run, "a", ttl_s=600, limit=2)
    b = store.claim_work(run, "b", ttl_s=600, limit=3)
    assert (a, b) == (items[:2], items[2:5])
    assert store.claim_work(run, "a", ttl_s=600, limit=5) == [*items[:2], items[5]]  # its own, and the free one
    assert store.claim_work(run, "c", ttl_s=600) == []  # all held
    assert store.work_status(run) == {"done": 0, "held": 6, "free": 0}

    assert store.finish_work(run, items[2], "b") and not store.finish_work(run, items[2], "b")  # once
    assert store.renew_work(run, "b", ttl_s=-1) == 2  # as if b's process died: its claims run out
    assert store.work_status(run) == {"done": 1, "held": 3, "free": 2}
    assert store.claim_work(run, "c", ttl_s=600, limit=5) == items[3:5]  # b's expired claims
    assert not store.finish_work(run, items[3], "b")  # b lost it: nothing changes
    assert store.finish_work(run, items[3], "c")
    assert store.claim_work(run, "b", ttl_s=600, limit=5) == []  # done items are never claimed again
    assert store.work_status(run) == {"done": 2, "held": 4, "free": 0}
    assert store.claim_work("r-other", "a", ttl_s=600) == []



def test_claims_count_each_new_holder_once(store):
    from sqlalchemy import select

    from proofloop.store.schema import WorkRow

    run = store.create_run("bench", {})
    store.add_work(run, ["p0", "p1"])
    for _ in range(3):  # a worker asking again gets what it holds: not a new claim
        assert store.claim_work(run, "a", ttl_s=600, limit=2) == ["p0", "p1"]
    store.renew_work(run, "a", ttl_s=-1)
    assert store.claim_work(run, "b", ttl_s=600) == ["p0"]  # taken over: a second claim
    with store.engine.connect() as conn:
        counts = dict(conn.execute(select(WorkRow.item, WorkRow.claims).where(WorkRow.run_id == run)).all())
    assert counts == {"p0": 2, "p1": 1}

# A worker: claims one item at a time, makes its "call" unless the store has it (a resumed
# item repeats no finished call), stores it, finishes the item. Prints one JSON line per event.
# The worker named "crash" stops for good after claiming its second item (the test kills it).
WORKER = r"""
import json, os, sys, time
from proofloop.models.base import Completion
from proofloop.models.cache import CallRecord
from proofloop.store import Store
target, run, me, go = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
store = Store(target)
while not os.path.exists(f"{go}-{me}"):  # the test says when each worker may start claiming
    time.sleep(0.01)
ttl_s = 1.0 if me == "crash" else 600.0  # the dead one's claims expire soon; the others' never, mid-test
claimed = 0
while True:
    items = store.claim_work(run, me, ttl_s=ttl_s)
    if not items:
        if store.work_status(run)["held"] == 0:
            break
        time.sleep(0.1)  # another worker holds the rest: wait for it to finish or to die
        continue
    (item,) = items
    claimed += 1
    print(json.dumps({"claimed": item, "by": me}), flush=True)
    if me == "crash" and claimed == 2:
        time.sleep(3600)
    key = f"{run}:{item}"
    if store.get(key) is None:
        print(json.dumps({"called": item, "by": me}), flush=True)
        store.put_many([CallRecord(key=key, namespace=run, model="m", provider="sim", sampling={}, index=0,
                                   messages=[{"role": "user", "content": item}], completion=Completion(text=me))])
    store.finish_work(run, item, me)
"""


def test_three_workers_one_killed_every_item_done_once_no_call_repeated(db, tmp_path):
    with Store(db) as store:
        run = store.create_run("bench", {})
        items = [f"p{i:02d}" for i in range(24)]
        store.add_work(run, items)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    names = ["crash", "w1", "w2"]
    go = tmp_path / "go"
    procs = {name: subprocess.Popen([sys.executable, str(script), db, run, name, str(go)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name in names}
    events = []
    crash = procs["crash"]
    # The crashing worker starts alone, so it surely gets to its second item however slowly
    # its process starts; the others start once it is dead.
    (tmp_path / "go-crash").touch()
    while True:  # read the crashing worker until it has claimed its second item, then kill -9 it
        line = crash.stdout.readline()
        assert line, crash.stderr.read()
        events.append(json.loads(line))
        if sum(1 for e in events if "claimed" in e) == 2:
            break
    os.kill(crash.pid, signal.SIGKILL)
    crash.wait(30)
    lost = events[-1]["claimed"]  # claimed, never called nor finished
    for name in names[1:]:
        (tmp_path / f"go-{name}").touch()
    for name in names[1:]:
        out, err = procs[name].communicate(timeout=240)
        assert procs[name].returncode == 0, err
        events += [json.loads(line) for line in out.splitlines()]

    called = [e["called"] for e in events if "called" in e]
    assert sorted(called) == items  # every item's call made once: none repeated, none missing
    with Store(db) as store:
        assert store.work_status(run) == {"done": 24, "held": 0, "free": 0}
        assert len(store.calls(run)) == 24
        claimed_twice = [e["claimed"] for e in events if "claimed" in e and e["by"] != "crash"
                         and e["claimed"] == lost]
        assert claimed_twice == [lost]  # another worker took the dead one's item over

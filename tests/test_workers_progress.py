"""A split run's work progress (runs/workers.py `work_progress`, shown by `proofloop runs show`):
items total / done / claimed (by whom, until when) / pending, and how many each worker did;
the API's run view (api/views.py `run_detail`) and the viewer's run page give the same.
The pure sum is checked on every shape of item (hypothesis); `runs show`, text and JSON, on a
run whose items are in every state, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime

from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from proofloop.api.viewer import viewer_router
from proofloop.api.views import run_detail
from proofloop.runs.workers import render_progress, work_progress
from proofloop.store import Store, WorkItem
from support.work import label_split_run

CLI = [sys.executable, "-m", "proofloop.cli"]
NOW = 1_000_000.0

owners = st.sampled_from(["a", "b", "c"])
items = st.lists(st.builds(WorkItem, item=st.text(min_size=1, max_size=3), owner=st.none() | owners,
                           expires_at=st.none() | st.floats(NOW - 100, NOW + 100), claims=st.integers(0, 3),
                           done_by=st.none() | owners), max_size=12)


@given(items)
def test_every_item_is_counted_once_in_exactly_one_state(work):
    p = work_progress(work, now=NOW)
    assert p["total"] == len(work) == p["done"] + len(p["claimed"]) + p["pending"]
    assert sum(p["by_worker"].values()) == p["done"] == sum(1 for w in work if w.done_by)
    live = [w for w in work if not w.done_by and w.owner and w.expires_at is not None and w.expires_at >= NOW]
    assert [(c["item"], c["worker"]) for c in p["claimed"]] == [(w.item, w.owner) for w in live]
    assert all(c["expires_in_s"] >= 0 for c in p["claimed"])
    assert 0 <= p["expired_claims"] <= p["pending"]
    assert render_progress(p)[0].startswith(f"work items: {len(work)} in all, {p['done']} done")


def test_progress_of_items_in_every_state():
    work = [WorkItem(item="p0", owner="a", expires_at=NOW + 30, claims=1, done_by=None),  # claimed by a
            WorkItem(item="p1", owner="b", expires_at=NOW - 1, claims=1, done_by=None),  # b died: pending
            WorkItem(item="p2", owner=None, expires_at=None, claims=0, done_by=None),  # never claimed
            WorkItem(item="p3", owner="a", expires_at=None, claims=1, done_by="a"),
            WorkItem(item="p4", owner="c", expires_at=None, claims=2, done_by="c"),
            WorkItem(item="p5", owner="a", expires_at=None, claims=1, done_by="a")]
    p = work_progress(work, now=NOW)
    assert p == {"total": 6, "done": 3, "pending": 2, "expired_claims": 1, "by_worker": {"a": 2, "c": 1},
                 "claimed": [{"item": "p0", "worker": "a", "expires_at": "1970-01-12T13:47:10+00:00",
                              "expires_in_s": 30.0}]}
    assert render_progress(p) == [
        "work items: 6 in all, 3 done, 1 claimed, 2 pending (1 of them from expired claims)",
        "   p0 claimed by a until 1970-01-12T13:47:10+00:00 (30 s more)",
        "done by worker: a 2, c 1"]
    many = [WorkItem(item=f"q{i:02d}", owner="a", expires_at=NOW + 5, claims=1, done_by=None) for i in range(13)]
    lines = render_progress(work_progress(many, now=NOW), most=10)
    assert len(lines) == 1 + 10 + 1 and lines[-1] == "   ... and 3 more claimed"


def test_runs_show_reports_the_work_of_a_split_run(db, tmp_path):
    run = label_split_run(db, tmp_path, proofs=5)
    with Store(db) as store:
        assert store.claim_work(run, "host-a:1", ttl_s=600, limit=2) == ["q0", "q1"]
        assert store.finish_work(run, "q0", "host-a:1")
        assert store.claim_work(run, "host-b:2", ttl_s=-1) == ["q2"]  # b died holding q2: its claim expired
        assert store.claim_work(run, "host-c:3", ttl_s=600) == ["q2"]  # c took it over
        assert store.finish_work(run, "q2", "host-c:3")
        assert store.claim_work(run, "host-b:4", ttl_s=-1) == ["q3"]  # expired, not yet taken over

    shown = subprocess.run(CLI + ["runs", "show", run, "--json", "--db", db], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    work = json.loads(shown.stdout)["work"]
    with Store(db) as store:  # the API's run view (GET /v1/runs/{id}) says the same
        api_work = run_detail(store, store.get_run(run))["work"]
    assert {**api_work, "claimed": None} == {**work, "claimed": None}
    assert [(c["item"], c["worker"], c["expires_at"]) for c in api_work["claimed"]] == \
        [(c["item"], c["worker"], c["expires_at"]) for c in work["claimed"]]
    (claim,) = work["claimed"]
    # 600 s claimed; up to two minutes gone by the time the CLI reads it on a loaded machine
    assert (claim["item"], claim["worker"]) == ("q1", "host-a:1") and 480 < claim["expires_in_s"] <= 600
    assert datetime.fromisoformat(claim["expires_at"]).tzinfo is not None
    assert {k: work[k] for k in ("total", "done", "pending", "expired_claims", "by_worker")} == \
        {"total": 5, "done": 2, "pending": 2, "expired_claims": 1, "by_worker": {"host-a:1": 1, "host-c:3": 1}}

    text = subprocess.run(CLI + ["runs", "show", run, "--db", db], capture_output=True, text=True)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "work items: 5 in all, 2 done, 1 claimed, 2 pending (1 of them from expired claims)" in lines
    assert any(line.startswith("   q1 claimed by host-a:1 until ") for line in lines)
    assert "done by worker: host-a:1 1, host-c:3 1" in lines

    app = FastAPI()  # the viewer's run page lists the same lines
    app.include_router(viewer_router(db), prefix="/ui")
    with TestClient(app) as client:
        page = client.get(f"/ui/runs/{run}")
    assert page.status_code == 200
    shown = re.findall(r"<li>([^<]*)</li>", page.text.split('<section class="work">')[1].split("</section>")[0])
    assert shown[0] == "work items: 5 in all, 2 done, 1 claimed, 2 pending (1 of them from expired claims)"
    assert shown[1].startswith("q1 claimed by host-a:1 until ") and shown[2] == "done by worker: host-a:1 1, host-c:3 1"

    with Store(db) as store:  # a run that was not split shows no work
        other = store.create_run("prove", {"model": {"provider": "sim"}})
    shown = subprocess.run(CLI + ["runs", "show", other, "--json", "--db", db], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "work" not in json.loads(shown.stdout)
    with Store(db) as store:
        assert "work" not in run_detail(store, store.get_run(other))
    with TestClient(app) as client:
        assert '<section class="work">' not in client.get(f"/ui/runs/{other}").text

"""`proofloop resume RUN` of a split run (runs/execute.py): it finishes the run's unfinished
work items like one more worker, so that the run's status and its work items agree at the end.

- kill -9 of the only worker mid-run, then `proofloop resume`: the killed worker's item is
  taken over once its claim expires, every item ends done exactly once, no call stored before
  the kill is sent again (the simulator's request log), the run is finished;
- a resume beside other workers' claims: a live claim is waited for (its item is not done
  twice), an expired one is taken over.

On SQLite and on PostgreSQL (the `db` fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from proofloop.sim.http import read_request_log
from proofloop.store import Store
from support.samples import kill_9_when, sent_samples, stored_samples
from support.scripted import ServerProcess
from support.work import label_split_run, sim_problems_file, work_table

PROBLEMS = 6
# Long enough that a live worker stalled by a loaded machine keeps its claims (renewed every
# TTL_S / 3); a killed worker's claim is taken over after this long (production: 60 s).
TTL_S = 4.0
ENV = {**os.environ, "PROOFLOOP_CLAIM_TTL_S": str(TTL_S)}
CLI = [sys.executable, "-m", "proofloop.cli"]


def mid_run(db: str, run: str, pid: int) -> bool:
    """The worker `pid` holds an unfinished item and some item is done."""
    state = work_table(db, run)
    held = [i for i, (owner, done_by, _) in state.items() if (owner or "").endswith(f":{pid}") and not done_by]
    return bool(held) and any(done_by for _, done_by, _ in state.values())


def test_resume_after_the_worker_was_killed_finishes_every_item_once_repeating_no_call(db, tmp_path):
    log = tmp_path / "requests.jsonl"
    with ServerProcess(responder_factory="proofloop.sim.app:responder_factory", request_log=log,
                       script={"responder": {"time_scale": 400.0}}) as server:
        made = subprocess.run(CLI + ["bench", "run", "--dataset", str(sim_problems_file(tmp_path, PROBLEMS)), "--provider", "openai",
                                     "--base-url", server.base_url, "--model", "sim-1", "--seed", "3",
                                     "--strategy", "single", "--k", "2", "-n", "2", "--parallel-problems", "2",
                                     "--split", "--json", "--db", db], capture_output=True, text=True, env=ENV)
        assert made.returncode == 0, made.stderr
        run = json.loads(made.stdout)["run_id"]
        with (tmp_path / "worker.err").open("w") as err:
            worker = subprocess.Popen(CLI + ["bench", "run", "--worker", run, "--json", "--db", db], env=ENV,
                                      stdout=subprocess.DEVNULL, stderr=err)
        killed_at = kill_9_when(worker, lambda: mid_run(db, run, worker.pid))
        before = work_table(db, run)
        lost = sorted(i for i, (owner, done_by, _) in before.items() if owner and not done_by)
        with Store(db) as store:
            stored_before = stored_samples(store, run)
            assert store.get_run(run).status.value == "running"  # no lease: a split run's status says nothing
        resumed = subprocess.run(CLI + ["resume", run, "--json", "--db", db], capture_output=True, text=True,
                                 env=ENV, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert sorted(row["problem"] for row in summary["per_problem"]) == [f"P{i}" for i in range(PROBLEMS)]

    after = work_table(db, run)
    resumer = {done_by for _, done_by, _ in after.values()} - {done_by for _, done_by, _ in before.values()}
    assert len(resumer) == 1 and not next(iter(resumer)).endswith(f":{worker.pid}")  # one new finisher: resume
    assert lost and all(after[i][1] in resumer and after[i][2] == 2 for i in lost)  # the lost items taken over
    assert all(after[i] == before[i] for i, (_, done_by, _) in before.items() if done_by)  # done ones left alone
    with Store(db) as store:
        assert store.get_run(run).status.value == "finished"
        assert store.work_status(run) == {"done": PROBLEMS, "held": 0, "free": 0}
        assert len(store.problems(run)) == PROBLEMS
        calls = store.calls(run)
        assert len(calls) == len({c.key for c in calls})
    sent_after = sent_samples(read_request_log(log), since=killed_at)
    assert sent_after, "nothing was left to do after the kill: the test proves nothing"
    assert not stored_before & set(sent_after), "a call stored before the kill was sent again"
    assert len(sent_after) == len(set(sent_after))


def work_status(db: str, run: str) -> dict[str, int]:
    with Store(db) as store:
        return store.work_status(run)


def wait_for(what, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_resume_waits_for_a_live_claim_and_takes_over_an_expired_one(db, tmp_path):
    run = label_split_run(db, tmp_path, proofs=5)
    with Store(db) as store:  # two workers on another host hold q0 and q1 (never judged gone from here)
        assert store.claim_work(run, "elsewhere:1", ttl_s=600) == ["q0"]
        assert store.claim_work(run, "elsewhere:2", ttl_s=600) == ["q1"]
    resume = subprocess.Popen(CLI + ["resume", run, "--json", "--db", db], env=ENV, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: work_status(db, run) == {"done": 3, "held": 2, "free": 0})  # the free ones
    with Store(db) as store:
        store.renew_work(run, "elsewhere:2", ttl_s=-1)  # q1's worker stops renewing: its claim runs out
    wait_for(lambda: work_table(db, run)["q1"][1] is not None)
    time.sleep(2 * TTL_S)  # resume keeps waiting for q0's live claim meanwhile
    assert resume.poll() is None and work_table(db, run)["q0"] == ("elsewhere:1", None, 1)
    with Store(db) as store:
        assert store.finish_work(run, "q0", "elsewhere:1")  # the live worker finishes its item
    out, err = resume.communicate(timeout=120)
    assert resume.returncode == 0, err

    state = work_table(db, run)
    me = state["q2"][1]
    assert me.endswith(f":{resume.pid}")
    assert state["q0"] == ("elsewhere:1", "elsewhere:1", 1)  # never claimed by resume
    assert state["q1"] == (me, me, 2)  # taken over
    assert all(state[f"q{i}"] == (me, me, 1) for i in (2, 3, 4))
    assert json.loads(out)["proofs"] == 5
    with Store(db) as store:
        assert store.get_run(run).status.value == "finished"
    assert [json.loads(line)["id"] for line in (tmp_path / "labels.jsonl").read_text().splitlines()] == \
        [f"q{i}" for i in range(5)]

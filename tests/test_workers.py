"""Many workers (runs/workers.py): `bench run --split` stores a run and its problems as work
items, three `bench run --worker RUN` processes (the CLI, as subprocesses) share the work on one
store, one of them is killed with kill -9 while it holds a problem. The run finishes with every
problem done once and no finished call sent to the server again (the simulator over HTTP keeps
a request log with each request's body fingerprint); on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from proofloop.sim.http import read_request_log
from proofloop.store import Store
from support.samples import sent_samples, stored_samples
from support.scripted import ServerProcess
from support.work import label_split_run, sim_problems_file, work_table

PROBLEMS = 9
# Long enough that a live worker stalled by a loaded machine keeps its claims (renewed every
# TTL_S / 3); the killed worker's claim is taken over after this long (production: 60 s).
TTL_S = 6.0


def cli(err: Path, *args: str) -> subprocess.Popen:
    """The CLI in a subprocess; its stderr (progress lines) goes to the file `err`, so a full
    pipe never stalls it; stdout is one JSON line."""
    env = {**os.environ, "PROOFLOOP_CLAIM_TTL_S": str(TTL_S)}
    with err.open("w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "proofloop.cli", *args], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=stderr)


def kill_while_holding(victim: subprocess.Popen, db: str, run: str, timeout_s: float = 60) -> tuple[str, float]:
    """SIGKILL `victim` once it holds an unfinished problem and some problem is done (mid-run)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = work_table(db, run)
        held = [i for i, (owner, done_by, _) in state.items() if owner and owner.endswith(f":{victim.pid}") and not done_by]
        if held and any(done_by for _, done_by, _ in state.values()):
            os.kill(victim.pid, signal.SIGKILL)
            return held[0], time.time()
        assert victim.poll() is None, "the victim stopped on its own"
        time.sleep(0.05)
    raise AssertionError(f"the victim never held a problem mid-run: {work_table(db, run)}")


def test_three_workers_one_killed_every_problem_done_once_no_finished_call_repeated(db, tmp_path):
    log = tmp_path / "requests.jsonl"
    with ServerProcess(responder_factory="proofloop.sim.app:responder_factory", request_log=log,
                       script={"responder": {"time_scale": 400.0}}) as server:
        made = subprocess.run([sys.executable, "-m", "proofloop.cli", "bench", "run", "--dataset", str(sim_problems_file(tmp_path, PROBLEMS)),
                               "--provider", "openai", "--base-url", server.base_url, "--model", "sim-1", "--seed", "3",
                               "--strategy", "single", "--k", "2", "-n", "2", "--parallel-problems", "2",
                               "--split", "--json", "--db", db], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        run = json.loads(made.stdout)["run_id"]
        # The victim starts alone, so it surely holds a problem mid-run however slowly the
        # machine runs; the survivors start once it is dead.
        workers = [cli(tmp_path / "w0.err", "bench", "run", "--worker", run, "--json", "--db", db)]
        lost, killed_at = kill_while_holding(workers[0], db, run)
        workers[0].wait(10)
        with Store(db) as store:
            stored_before = stored_samples(store, run)  # finished calls: none may be sent again
        workers += [cli(tmp_path / f"w{i}.err", "bench", "run", "--worker", run, "--json", "--db", db) for i in (1, 2)]
        outputs = [w.communicate(timeout=120) for w in workers[1:]]
    for i, w in enumerate(workers[1:], 1):
        assert w.returncode == 0, (tmp_path / f"w{i}.err").read_text()

    summaries = [json.loads(out.splitlines()[-1]) for out, _ in outputs]
    finished = [s for s in summaries if s.get("kind") == "bench"]
    assert len(finished) >= 1  # a survivor finished the run and printed its summary
    assert sorted(row["problem"] for row in finished[0]["per_problem"]) == sorted(f"P{i}" for i in range(PROBLEMS))

    state = work_table(db, run)
    assert all(done_by for _, done_by, _ in state.values())  # every problem done...
    owner, done_by, times = state[lost]
    assert not done_by.endswith(f":{workers[0].pid}") and times >= 2  # ...the lost one by a survivor
    with Store(db) as store:
        assert store.get_run(run).status == "finished"
        assert store.work_status(run) == {"done": PROBLEMS, "held": 0, "free": 0}
        assert len(store.problems(run)) == PROBLEMS  # each problem stored once
        calls = store.calls(run)
        assert len(calls) == len({c.key for c in calls}) > 0

    # No finished call sent again: a sample is asked for again only when its first answer died
    # with the killed worker (in flight, or answered but not yet stored, at the kill).
    entries = read_request_log(log)
    assert not stored_before & set(sent_samples(entries, since=killed_at)), "a stored call was sent again"
    by_body = defaultdict(list)
    for entry in entries:
        if entry.get("outcome") == "ok":
            by_body[entry["fingerprint"]].append(entry)
    repeated = {fp: sorted(e["t_start"] for e in es) for fp, es in by_body.items() if len(es) > 1}
    assert all(ts[0] < killed_at for ts in repeated.values()), repeated  # first sent by the killed worker
    print(f"requests {sum(map(len, by_body.values()))}, bodies sent again {len(repeated)}, lost problem {lost}")
    assert len(repeated) <= 8  # at most the killed worker's requests in flight


def test_two_label_workers_share_the_proofs_and_the_last_writes_the_output(tmp_path):
    out, db = tmp_path / "labels.jsonl", str(tmp_path / "p.db")
    run = label_split_run(db, tmp_path, proofs=12)
    workers = [cli(tmp_path / f"w{i}.err", "label", "--worker", run, "--json", "--db", db) for i in range(2)]
    results = [w.communicate(timeout=120) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [(tmp_path / f"w{i}.err").read_text() for i in range(2)]

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(12)]  # every proof once, in input order
    assert all(len(r["analyses"]) == 3 for r in rows if r["status"] != "error")
    summaries = [json.loads(o.splitlines()[-1]) for o, _ in results]
    assert sum(s.get("kind") == "label" for s in summaries) >= 1
    done_by = {done for _, done, _ in work_table(db, run).values()}
    assert None not in done_by  # every proof done
    with Store(db) as store:
        assert store.get_run(run).status == "finished"
        calls = store.calls(run)
        assert len(calls) == len({c.key for c in calls}) > 0


def test_work_claims_do_each_item_once_take_over_expired_claims_and_give_back(db):
    import asyncio

    from proofloop.runs.workers import WorkClaims

    with Store(db) as store:
        run = store.create_run("bench", {})
        items = {f"p{i}": i for i in range(7)}
        store.add_work(run, items)
        assert store.claim_work(run, "dead", ttl_s=-1.0) == ["p0"]  # a worker that died holding p0
        stopping = WorkClaims(store, run, "stopping", poll_s=0.01, notice=lambda _: None)
        assert stopping.claim() == "p0"  # the expired claim is taken over
        assert stopping.claim() == "p1"  # a second slot gets a new item, not its own p0 again
        stopping.give_back()  # it stops: p0 and p1 are free at once
        seen: list[int] = []

        async def do(x: int) -> int:
            seen.append(x)
            await asyncio.sleep(0)  # let the other slots claim meanwhile
            return x * 10

        a = WorkClaims(store, run, "a", poll_s=0.01, notice=lambda _: None)
        results = asyncio.run(a.each(items, do, parallel=3))
        assert sorted(seen) == list(range(7)) and sorted(results) == [x * 10 for x in range(7)]  # each once
        assert sorted(a.done) == sorted(items) and a.in_flight == set()
        assert store.work_status(run) == {"done": 7, "held": 0, "free": 0}
        assert not store.finish_work(run, "p0", "dead") and not store.finish_work(run, "p1", "stopping")

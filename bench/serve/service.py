"""Service benchmark: what `proofloop serve` adds to the model's time on `POST /v1/verify`, and
how long a stored record takes to reach an event-stream client. The app runs on a real uvicorn
on 127.0.0.1 in this process (a thread), with the simulator as model, so the benchmark can also
write to the server's store itself.

    PYTHONPATH=src .venv/bin/python bench/serve/service.py            # both, printed as JSON
    PYTHONPATH=src .venv/bin/python bench/serve/service.py --quick    # smaller, seconds

/v1/verify: the same batches (problem, proof pairs; n verifier analyses each) three ways:
through the API (HTTP, validation, the run stored, a worker thread, the results read back),
through the run layer directly (create_grade_run + execute: what the CLI does), and the
model's own time (the requests' recorded latency: the simulator answers at once, so this is
its CPU time and every millisecond the service adds shows). Each stored call carries its
request's latency, so a request of n samples is counted once (latency / request size per
call), not n times; `model_ms_per_call_sum` keeps the n-times sum the first figures used.
Every repeat uses new texts: nothing replays from the call cache.

Events: a live run on the server; a thread stores a record every `gap` seconds through the
server's own store (as a worker does); a client follows /v1/runs/{id}/events. Latency: the
client's clock when the event arrived minus the record's stored time (in its event id). Twice:
as served (a write in the server's process wakes the streams), and polling only (what a write
by another process, a CLI resume of the same store, gets: found at the next look, POLL_S).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from proofloop.api import routes
from proofloop.api.app import create_app
from proofloop.api.events import parse_event_id
from proofloop.api.settings import Limits, ServeSettings
from proofloop.bench.runs import create_grade_run
from proofloop.runs import execute
from proofloop.store import Store

PROOF = ("## Solution\n\nWe have $n^3 - n = (n-1)n(n+1)$, a product of three consecutive integers: one of them "
         "is even and one is divisible by $3$, so $6 \\mid n^3 - n$ (case {i}, variant {v}).\n\n"
         "## Self Evaluation\n\nHere is my evaluation of the solution: complete.\n\n"
         "Based on my evaluation, the final overall score should be: \\boxed{{1}}")


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The app on uvicorn on 127.0.0.1 (a free port), in a thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)


def pairs_for(size: int, variant: str) -> list[dict[str, str]]:
    return [{"id": f"pair-{i}", "problem": f"Prove that $6 \\mid n^3 - n$ for every integer $n$ (item {i}).",
             "proof": PROOF.format(i=i, v=variant)} for i in range(size)]


def ms_stats(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {"p50_ms": round(statistics.median(values), 2),
            "p95_ms": round(values[min(len(values) - 1, int(0.95 * len(values)))], 2),
            "max_ms": round(values[-1], 2), "n": len(values)}


# ---- /v1/verify overhead ---------------------------------------------------------------------


def model_seconds(store: Store, run_id: str) -> float:
    """The time the model spent on a run's requests: each request once (its n calls each
    carry the request's latency)."""
    return sum(c.latency_s / max(1, c.request_size) for c in store.calls(run_id))


def verify_overhead(db: Path, sizes: list[int], n: int, repeats: int) -> list[dict[str, Any]]:
    """Per batch size: wall time through the API and through the run layer, the model's time,
    and the overhead per pair of each over the model's time (medians over `repeats`)."""
    settings = ServeSettings(db=db, resume_unfinished=False, viewer=False, rewards=False,
                             limits=Limits(sync_max_pairs=max(sizes)))
    app = create_app(settings)
    store: Store = app.state.services.store
    out = []
    with serving(app) as url, httpx.Client(base_url=url, timeout=600) as client:
        client.post("/v1/verify", json={"pairs": pairs_for(1, "warm-up"), "n": n, "wait": True}).raise_for_status()
        for size in sizes:
            api, direct, model_api, model_direct, api_cpu, direct_cpu, per_call = [], [], [], [], [], [], []
            for rep in range(repeats):
                t, c = time.perf_counter(), time.process_time()
                r = client.post("/v1/verify", json={"pairs": pairs_for(size, f"api-{rep}"), "n": n, "wait": True})
                api.append(time.perf_counter() - t)
                api_cpu.append(time.process_time() - c)  # server and client: one process
                r.raise_for_status()
                body = r.json()
                assert body["status"] == "finished" and len(body["results"]) == size, body
                model_api.append(model_seconds(store, body["id"]))
                per_call.append(store.run_usage(body["id"]).latency_s)
                t, c = time.perf_counter(), time.process_time()
                run_id = create_grade_run(store, settings.model_setup(), grader="verifier", n=n,
                                          rows=[{"id": p["id"], "statement": p["problem"], "proof": p["proof"]}
                                                for p in pairs_for(size, f"direct-{rep}")])
                execute(store, run_id, notice=lambda line: None)
                direct.append(time.perf_counter() - t)
                direct_cpu.append(time.process_time() - c)
                model_direct.append(model_seconds(store, run_id))
            api_s, direct_s = statistics.median(api), statistics.median(direct)
            model_s = statistics.median(model_api)
            out.append({"pairs": size, "n": n, "repeats": repeats, "calls": size * n,
                        "api_wall_ms": round(api_s * 1000, 1), "direct_wall_ms": round(direct_s * 1000, 1),
                        "model_ms": round(model_s * 1000, 1),
                        "model_ms_per_call_sum": round(statistics.median(per_call) * 1000, 1),
                        "api_cpu_ms": round(statistics.median(api_cpu) * 1000, 1),
                        "direct_cpu_ms": round(statistics.median(direct_cpu) * 1000, 1),
                        "overhead_per_pair_ms": round((api_s - model_s) / size * 1000, 2),
                        "cpu_overhead_per_pair_ms": round((statistics.median(api_cpu) - model_s) / size * 1000, 2),
                        "api_over_direct_per_pair_ms": round((api_s - direct_s) / size * 1000, 2),
                        "direct_over_model_per_pair_ms": round((direct_s - statistics.median(model_direct))
                                                               / size * 1000, 2)})
    store.close()
    return out


# ---- event latency ---------------------------------------------------------------------------


def follow(url: str, run_id: str, arrived: list[tuple[float, str]]) -> None:
    """Read the run's events until `end`, noting when each arrived (wall clock, as stored times)."""
    with httpx.Client(base_url=url, timeout=120) as c, c.stream("GET", f"/v1/runs/{run_id}/events") as r:
        for line in r.iter_lines():
            if line.startswith("id: "):
                arrived.append((time.time(), line[4:]))
            if line == "event: end":
                return


def event_latency(db: Path, records: int, gap_s: float, wake: bool) -> dict[str, Any]:
    """Store `records` analyses, one every `gap_s`, while a client follows the run's events."""
    app = create_app(ServeSettings(db=db, resume_unfinished=False, viewer=False, rewards=False))
    services = app.state.services
    if not wake:  # what a write by another process gets: found at the next poll
        async def poll_only(seen: int, timeout: float) -> bool:
            await asyncio.sleep(timeout)
            return False
        services.writes.wait = poll_only
    store: Store = services.store
    run_id = store.create_run("verify", {"api": {"service": True}})  # no worker: stays live until we finish it
    problem = store.add_problem(run_id, "P")
    store.add_proof(run_id, "p", problem_id=problem, raw="x", status="ok")
    arrived: list[tuple[float, str]] = []
    with serving(app) as url:
        reader = threading.Thread(target=follow, args=(url, run_id, arrived), daemon=True)
        reader.start()
        while not arrived:  # the stream is open and has sent what was there
            time.sleep(0.01)
        for k in range(records):
            time.sleep(gap_s)
            store.add_verification(run_id, f"v{k:04d}", proof_id="p", raw="ok", status="ok", score=1.0)
        time.sleep(routes.POLL_S * 2)
        store.set_run_status(run_id, "finished")
        reader.join(60)
    latencies = [(at - parsed[0] / 1e6) * 1000 for at, event_id in arrived
                 if (parsed := parse_event_id(event_id)) and parsed[2].startswith("v")]
    store.close()
    assert len(latencies) == records, (len(latencies), records)
    return {"wake": wake, "records": records, "gap_ms": gap_s * 1000, "poll_ms": routes.POLL_S * 1000,
            **ms_stats(latencies)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batches of 1 and 8, 2 repeats, 40 events")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--n", type=int, default=4, help="verifier analyses per pair")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--gap", type=float, default=0.02, help="seconds between stored records")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.records = [1, 8], 2, 40
    folder = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    return {"verify": verify_overhead(folder / "verify.db", args.sizes, args.n, args.repeats),
            "events": [event_latency(folder / f"events-{wake}.db", args.records, args.gap, wake)
                       for wake in (True, False)]}


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
    sys.exit(0)

"""Orchestration cost: CPU time per LLM call through the whole client stack (the model
wrapper, the call cache, the run store's put_many and the StoreRecorder's record writes), with
the simulator as a zero-latency provider, so every CPU second measured is ours.

    PYTHONPATH=src .venv/bin/python bench/orchestration/run.py            # pool search, SQLite file
    PYTHONPATH=src .venv/bin/python bench/orchestration/run.py --profile 25   # + cProfile top 25
    PYTHONPATH=src .venv/bin/python bench/orchestration/run.py --store memory   # no store: the floor

It runs one `pool` search (paper preset, every round run) on simulated problems and prints the
calls made, time.process_time per call and calls per second per core (1 / CPU per call). The
cProfile breakdown sorts by cumulative time within our own package and the database driver.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from proofloop.models.base import Sampling
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.wrapper import Model
from proofloop.runs.context import StoreRecorder
from proofloop.search.base import MemoryRecorder, SearchContext
from proofloop.search.pool import Pool
from proofloop.sim import make_problems
from proofloop.sim.provider import SimProvider
from proofloop.store import Store


def workload(store: Store | None, *, problems: int, initial: int, verifications: int, rounds: int):
    """A coroutine running a pool search on `problems` simulated problems, and its provider."""
    run_id = store.create_run("bench", {}) if store else "bench"
    provider = SimProvider(seed=0)
    cache = store or InMemoryCallCache()
    model = Model(provider, namespace=run_id, cache=cache, max_concurrency=64)
    sampling = Sampling(seed=0, max_tokens=200_000)
    recorder = StoreRecorder(store, run_id) if store else MemoryRecorder()
    ctx = SearchContext(model, gen_sampling=sampling, verify_sampling=sampling, meta_sampling=sampling,
                        recorder=recorder)
    pool = Pool(preset="paper", initial=initial, verifications=verifications, rounds=rounds,
                top_k=min(initial, 64), accept=False)  # nothing accepted: every round runs

    async def go():
        for p in make_problems(problems, seed=4, mix="hard"):
            await pool.solve(p, ctx)
        flush = getattr(recorder, "flush", None)
        if flush:
            flush()

    return go, provider, cache


def measure(a: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp())
    store = None if a.store == "memory" else Store(a.db or folder / "bench.db")
    go, provider, cache = workload(store, problems=a.problems, initial=a.initial, verifications=a.verifications,
                            rounds=a.rounds)
    profiler = cProfile.Profile() if a.profile else None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    asyncio.run(go())
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    calls = len(store.calls()) if store else len(cache)
    out = {"store": store.dialect if store else "memory", "calls": calls, "requests": provider.requests,
           "cpu_s": round(cpu, 3),
           "wall_s": round(wall, 3), "cpu_ms_per_call": round(1000 * cpu / calls, 3),
           "calls_per_s_per_core": round(calls / cpu, 1)}
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(a.profile)
        out["profile"] = text.getvalue()
    if store:
        store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    ap.add_argument("--db", help="a store path or URL (default: a new SQLite file in a temp folder)")
    ap.add_argument("--problems", type=int, default=2)
    ap.add_argument("--initial", type=int, default=16)
    ap.add_argument("--verifications", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", type=int, default=0, help="print the top N of a cProfile breakdown")
    a = ap.parse_args()
    out = measure(a)
    profile = out.pop("profile", None)
    print(json.dumps(out))
    if profile:
        print(profile)


if __name__ == "__main__":
    main()

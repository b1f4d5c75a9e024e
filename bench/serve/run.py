"""Service benchmark (`make bench-serve`): the viewer's pages over a paper-size stored search
(64 proofs x 64 verifications x 16 rounds: 1024 proofs, 65,536 analyses, meta-verifications of
the analyses that found issues, lineage and every call), their server time through the
viewer's router (FastAPI's TestClient: routing, store reads, Markdown and MathML, templates)
and the size of their HTML; what a look of that run's event stream costs; then
bench/serve/service.py: /v1/verify's overhead per pair over the model's time and the latency
of server-sent events, on a real uvicorn with the simulator.

    PYTHONPATH=src .venv/bin/python bench/serve/run.py            # all, paper size (a few minutes)
    PYTHONPATH=src .venv/bin/python bench/serve/run.py --quick    # 16 x 16 x 4, smaller batches: under a minute
    PYTHONPATH=src .venv/bin/python bench/serve/run.py --only pages --db /tmp/paper.db --keep   # build once, reuse

The store is written the way runs write it (each output once, in its call row; the proof,
analysis and meta rows keep status, score and lineage, from_call set) but in one bulk
transaction per table instead of one per record, so that it builds in seconds. Texts are
synthetic Markdown with LaTeX, different for every output (no formula repeats across proofs),
about 5 KB per proof and 1.5 KB per analysis.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select

import service

from proofloop.api.events import event_id, record_events
from proofloop.api.viewer import pages, viewer_router
from proofloop.store import Store, messages_sha
from proofloop.store.schema import (CallRow, LineageRow, MetaVerificationRow, PromptRow, ProofRow, RefinedFromRow,
                                    VerificationRow)

ANALYSES_SHOWN = 8  # analyses in each refinement prompt (the paper's pool)


def proof_text(n: int, rng: random.Random) -> str:
    steps = []
    for k in range(1, 13):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        steps.append(f"**Step {k}.** For every integer \\(m \\ge {a}\\) we have $m^{{{k}}} + {b} m \\equiv {a * b % 97} "
                     f"\\pmod{{{b}}}$, since the sequence $a_{{m}} = \\frac{{m^2 + {a}}}{{{b}}}$ is increasing.\n\n"
                     f"\\[\n\\sum_{{j=1}}^{{{a}}} j^{{{k}}} \\le \\frac{{{a}^{{{k + 1}}}}}{{{k + 1}}} + {b}\n\\]\n\n"
                     f"Hence the bound holds for proof {n}, and the estimate of Step {max(1, k - 1)} applies again "
                     f"with $\\varepsilon = 1/{a}$.")
    return ("## Solution\n\n" + "\n\n".join(steps) + "\n\n## Self Evaluation\n\nHere is my evaluation of the solution: "
            "every step is justified.\n\nBased on my evaluation, the final overall score should be: \\boxed{1}")


def analysis_text(n: int, score: float, rng: random.Random) -> str:
    issues = [] if score == 1 else [f"- Step {rng.randint(1, 12)}: the bound $x_{{{n % 50}}} < {rng.randint(2, 9)}$ "
                                    f"is used without proof for \\(m = {rng.randint(1, 99)}\\)."
                                    for _ in range(1 if score else 3)]
    body = " ".join(f"Step {k} follows from the estimate $|a_{{{k}}}| \\le {rng.randint(2, 99)}$." for k in range(1, 13))
    return ("Here is my evaluation of the solution: " + body + "\n\n"
            + ("I found no errors.\n\n" if not issues else "The following problems remain:\n" + "\n".join(issues) + "\n\n")
            + f"Based on my evaluation, the final overall score should be: \\boxed{{{score:g}}}")


def meta_text(rating: float) -> str:
    return ("Here is my analysis of the evaluation: the issues it lists are "
            + ("real." if rating else "not real.") + f"\n\nBased on my analysis, I will rate the evaluation as: \\boxed{{{rating:g}}}")


class Writer:
    """Rows to insert, table by table, in one transaction at the end."""

    def __init__(self, run_id: str):
        self.run_id, self.rows = run_id, {t: [] for t in (PromptRow, CallRow, ProofRow, VerificationRow,
                                                          MetaVerificationRow, LineageRow, RefinedFromRow)}
        self.t0, self.n = time.time(), 0
        self.prompts: dict[str, str] = {}

    def call(self, key: str, tag: str, text: str, tokens: int) -> None:
        sha = self.prompts.setdefault(tag, messages_sha([{"role": "user", "content": tag}]))
        self.n += 1
        self.rows[CallRow].append(dict(
            key=key, namespace=self.run_id, model="bench-model", provider="sim", sampling={"temperature": 1.0},
            prompt_sha=sha, sample_index=0, text=text, reasoning=None, finish_reason="stop", sample_tokens=tokens,
            prompt_tokens=2000, completion_tokens=tokens, cached_prompt_tokens=0, latency_s=1.0, tag=tag,
            cost_usd=None, attempt=1, request_size=1, created_at=self.t0 + self.n * 1e-3))

    def when(self) -> datetime:
        return datetime.fromtimestamp(self.t0, timezone.utc) + timedelta(milliseconds=self.n)

    def flush(self, store: Store) -> None:
        for tag, sha in self.prompts.items():
            self.rows[PromptRow].append({"sha": sha, "messages": [{"role": "user", "content": tag}]})
        with store.engine.begin() as conn:
            for table, rows in self.rows.items():
                for i in range(0, len(rows), 5000):
                    conn.execute(insert(table), rows[i:i + 5000])


def build(store: Store, proofs: int, verifications: int, rounds: int, seed: int = 0) -> tuple[str, str]:
    """A finished pool run of one problem; returns (run id, id of the chosen proof)."""
    rng = random.Random(seed)
    run_id = store.create_run("prove", {"kind": "prove", "problem": "x", "strategy": "pool",
                                        "options": {"initial": proofs, "verifications": verifications,
                                                    "rounds": rounds - 1}})
    problem = store.add_problem(run_id, "Prove that for every integer \\(n \\ge 1\\), $n^3 - n$ is divisible by $6$.")
    w, previous, best = Writer(run_id), [], (-1.0, "")
    for rnd in range(rounds):
        current = []
        for slot in range(proofs):
            pid = f"p{rnd:02d}-{slot:02d}"
            w.call(pid, "refine" if rnd else "generate", proof_text(rnd * proofs + slot, rng), 6000)
            w.rows[ProofRow].append(dict(run_id=run_id, id=pid, problem_id=problem, raw="", status="ok", self_score=1.0,
                                         round=rnd, thread=slot, attempt=None, from_call=True, meta={"derived": True},
                                         created_at=w.when()))
            quality = min(1.0, 0.3 + 0.05 * rnd + rng.random() * 0.4)
            scores = [rng.choices([1.0, 0.5, 0.0], [quality, (1 - quality) / 2, (1 - quality) / 2])[0]
                      for _ in range(verifications)]
            vids = [add_analysis(w, run_id, pid, j, score, rng) for j, score in enumerate(scores)]
            if previous:
                parent, shown = previous[slot % len(previous)]
                w.rows[LineageRow].append(dict(run_id=run_id, proof_id=pid, parent_proof_id=parent))
                w.rows[RefinedFromRow] += [dict(run_id=run_id, proof_id=pid, verification_id=v) for v in shown]
            current.append((pid, vids[:ANALYSES_SHOWN]))
            best = max(best, (sum(scores) / len(scores), pid))
        previous = current
    w.flush(store)
    store.set_run_status(run_id, "finished", summary={"kind": "prove", "best_proof_id": best[1], "score": best[0],
                                                      "report": {"rounds_reached": rounds - 1}})
    return run_id, best[1]


def add_analysis(w: Writer, run_id: str, pid: str, j: int, score: float, rng: random.Random) -> str:
    vid = f"{pid}-v{j:02d}"
    w.call(vid, "verify", analysis_text(j, score, rng), 2500)
    w.rows[VerificationRow].append(dict(run_id=run_id, id=vid, proof_id=pid, raw="", status="ok", score=score,
                                        issues=[], from_call=True, meta={"derived": True}, created_at=w.when()))
    if score < 1:  # the meta-verifier rates the analyses that found issues
        rating = 0.0 if rng.random() < 0.1 else 1.0
        w.call(f"{vid}-m", "meta_verify", meta_text(rating), 800)
        w.rows[MetaVerificationRow].append(dict(run_id=run_id, id=f"{vid}-m", verification_id=vid, raw="",
                                                status="ok", rating=rating, from_call=True, meta={"derived": True},
                                                created_at=w.when()))
    return vid


def percentiles(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {"p50_ms": round(statistics.median(times), 1), "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1),
            "max_ms": round(times[-1], 1)}


def timed(client: TestClient, url: str, repeats: int) -> dict[str, Any]:
    """Server time of `url`: the first request of the process (templates compiled, nothing
    cached), then `repeats` requests as they come (a finished run's aggregates cached), and
    `repeats` with those caches emptied first (a run still going, or a run's first view)."""
    first = time.perf_counter()
    r = client.get(url)
    cold_ms = (time.perf_counter() - first) * 1000
    assert r.status_code == 200, (url, r.status_code, r.text[:300])
    out: dict[str, Any] = {"url": url, "first_ms": round(cold_ms, 1)}
    for name, clear in (("cached", False), ("uncached", True)):
        times, cpu = [], []
        for _ in range(repeats):
            if clear:
                pages.clear_settled()
            t, c = time.perf_counter(), time.process_time()
            r = client.get(url)
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
        # CPU time of the process (every thread): what the page costs, whatever the machine's load
        out[name] = {**percentiles(times), "cpu_p50_ms": round(statistics.median(cpu), 1)}
    return {**out, "html_bytes": len(r.content), "repeats": repeats}


def event_looks(store: Store, run_id: str, repeats: int) -> dict[str, Any]:
    """What an event stream of this run costs: its first look (the first 500 events, each
    analysis parsed for its issues) and a look once it has caught up (nothing new)."""
    first, tail = [], []
    with store.engine.connect() as conn:
        latest = max(conn.execute(select(func.max(t.created_at)).where(t.run_id == run_id)).scalar_one()
                     for t in (ProofRow, VerificationRow, MetaVerificationRow))
    caught_up = event_id(latest, "end", "run")  # after every record
    for times, after in ((first, None), (tail, caught_up)):
        for _ in range(max(3, repeats // 4)):
            t = time.perf_counter()
            record_events(store, run_id, after)
            times.append((time.perf_counter() - t) * 1000)
    return {"first_look": percentiles(first), "caught_up_look": percentiles(tail)}


def pages_bench(args: argparse.Namespace) -> dict[str, Any]:
    db = args.db or Path(tempfile.mkdtemp()) / "serve-bench.db"
    store = Store(db)
    found = [r for r in store.list_runs(limit=5) if r.summary and r.config.get("options", {}).get("initial") == args.proofs]
    t = time.perf_counter()
    if found:
        run_id, chosen = found[0].id, found[0].summary["best_proof_id"]
    else:
        run_id, chosen = build(store, args.proofs, args.verifications, args.rounds)
    build_s = time.perf_counter() - t
    app = FastAPI()
    app.include_router(viewer_router(store), prefix="/ui")
    client = TestClient(app)
    results = {"size": f"{args.proofs} proofs x {args.verifications} verifications x {args.rounds} rounds",
               "proofs": len(store.proofs(run_id)) if args.quick else args.proofs * args.rounds,
               "build_s": round(build_s, 1),
               "store_mb": round(sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 2**20, 1),
               "pages": [timed(client, url, args.repeats) for url in
                         (f"/ui/runs/{run_id}", f"/ui/runs/{run_id}?page=8", f"/ui/runs/{run_id}/proofs/{chosen}",
                          f"/ui/runs/{run_id}/proofs/{chosen}?page=4", "/ui/")],
               "event_stream": event_looks(store, run_id, args.repeats)}
    store.close()
    if not args.keep and args.db is None:
        for path in db.parent.glob(db.name + "*"):
            path.unlink()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proofs", type=int, default=64)
    ap.add_argument("--verifications", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="16 x 16 x 4, 10 repeats; the service part smaller too")
    ap.add_argument("--db", type=Path, help="store file (default: a temporary one); reused when it holds the run")
    ap.add_argument("--keep", action="store_true", help="keep the store file")
    ap.add_argument("--only", choices=("pages", "service"), help="one part of the benchmark")
    ap.add_argument("--out", type=Path, help="also write the results (JSON) here")
    args = ap.parse_args(argv)
    if args.quick:
        args.proofs, args.verifications, args.rounds, args.repeats = 16, 16, 4, 10
    results: dict[str, Any] = {"machine": machine()}
    if args.only in (None, "pages"):
        results["pages"] = pages_bench(args)
    if args.only in (None, "service"):
        results["service"] = service.main(["--quick"] if args.quick else [])
    results["machine_after"] = machine()
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def machine() -> dict[str, Any]:
    """The load the numbers were taken under (2 shared cores here: times vary with it)."""
    return {"cpus": os.cpu_count(), "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "python": sys.version.split()[0], "sqlite": sqlite3.sqlite_version,
            "at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


if __name__ == "__main__":
    sys.exit(main())

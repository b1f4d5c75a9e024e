"""Run-store benchmark: storage per model output, export memory, and memory of a search that
records into the store. Each measurement runs in a fresh subprocess (peak RSS is per process).

    PYTHONPATH=src .venv/bin/python bench/store/run.py storage   # bytes of text in the file
    PYTHONPATH=src .venv/bin/python bench/store/run.py export    # peak RSS of `runs export`
    PYTHONPATH=src .venv/bin/python bench/store/run.py memory    # peak RSS of a pool search
    PYTHONPATH=src .venv/bin/python bench/store/run.py all --quick

`--legacy` stands for the store before each output was stored once: every row keeps its own
copy of the text (what schema v1 wrote), by making store/derive.stored_fields keep the text.
The export baseline is the in-memory export (the whole run read before the first line).

Model outputs are the simulator's (proofloop.sim) with filler text inserted so that every
output is about 8 KB (`--output-kb`): inside the solution section for proofs (so verifiers
and refiners are shown it, as with real proofs), in front of the analysis for analyses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from proofloop.models.base import Completion, ProviderResponse, Sampling
from proofloop.models.cache import CallRecord, InMemoryCallCache
from proofloop.models.wrapper import Model
from proofloop.search.base import MemoryRecorder, SearchContext
from proofloop.search.pool import Pool
from proofloop.sim import make_problems
from proofloop.sim.provider import SimProvider
from proofloop.store import Store, export_run_jsonl
from proofloop.runs.context import StoreRecorder  # the recorder runs use

HERE = Path(__file__).resolve()


# ---- the simulated model with 8 KB outputs -------------------------------------------------------


def filler(kb: float, seed: int) -> str:
    line = "Consider the auxiliary quantity introduced above; by the previous estimate it is bounded. "
    text = f"[{seed}] " + line * int(kb * 1024 / len(line) + 1)
    return text[: int(kb * 1024)]


class PaddedSim(SimProvider):
    """SimProvider whose outputs are padded to about `kb` KB each (parse results unchanged)."""

    def __init__(self, kb: float, **kw: Any):
        super().__init__(**kw)
        self.kb, self.count = kb, 0
        self.rss_mb: list[tuple[int, float]] = []  # (outputs so far, current RSS) every 100 outputs

    async def complete(self, messages, sampling: Sampling, n: int) -> ProviderResponse:
        response = await super().complete(messages, sampling, n)
        padded = []
        for c in response.completions:
            self.count += 1
            if self.count % 100 == 0:
                self.rss_mb.append((self.count, current_rss_mb()))
            pad = filler(max(0.0, self.kb - len(c.text) / 1024), self.count)
            text = (c.text.replace("## Solution\n\n", f"## Solution\n\n{pad}\n\n", 1)
                    if c.text.startswith("## Solution") else f"{pad}\n\n{c.text}")
            padded.append(Completion(text=text, reasoning=c.reasoning, finish_reason=c.finish_reason,
                                     completion_tokens=c.completion_tokens))
        return ProviderResponse(padded, response.usage)



class PeakSnapshots(threading.Thread):
    """Every millisecond: when traced memory is 2 MB above the largest snapshot so far, take a new
    one. `largest` is (traced MB, top allocating files, top allocating lines) at that moment."""

    def __init__(self):
        super().__init__(daemon=True)
        self.largest: tuple[float, list, list] = (0.0, [], [])
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.001):
            if tracemalloc.get_traced_memory()[0] / 1e6 > self.largest[0] + 2:
                snap = tracemalloc.take_snapshot()
                files, lines = snap.statistics("filename"), snap.statistics("lineno")
                self.largest = (sum(s.size for s in files) / 1e6,
                                [(short_name(s.traceback[0].filename), round(s.size / 1e6, 1)) for s in files[:8]],
                                [(f"{short_name(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                                  round(s.size / 1e6, 1)) for s in lines[:8]])


def short_name(filename: str) -> str:
    return filename.split("site-packages/")[-1].split("src/")[-1].split("/lib/python3")[-1]


def use_legacy_storage() -> None:
    """Every row keeps its own copy of its text, as schema v1 did."""
    import proofloop.store.db as db

    db.stored_fields = lambda kind, values, call: {**values, "from_call": False}


def search(store: Store | None, run_id: str, *, initial: int, verifications: int, rounds: int, kb: float,
           problems: int = 1) -> tuple[Any, int]:
    """A pool search recording into `store` (None: the in-memory cache and recorder)."""
    provider = PaddedSim(kb, seed=0)
    model = Model(provider, namespace=run_id, cache=store or InMemoryCallCache(), max_concurrency=64)
    sampling = Sampling(seed=0, max_tokens=200_000)
    ctx = SearchContext(model, gen_sampling=sampling, verify_sampling=sampling, meta_sampling=sampling,
                        recorder=StoreRecorder(store, run_id) if store else MemoryRecorder())
    pool = Pool(preset="paper", initial=initial, verifications=verifications, rounds=rounds,
                top_k=min(initial, 64), accept=False)  # nothing is accepted: every round runs

    async def go():
        return [await pool.solve(p, ctx) for p in make_problems(problems, seed=4, mix="hard")]

    return asyncio.run(go()), provider


# ---- children: one measurement per process ----------------------------------------------------------


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def growth_kb_per_call(samples: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of RSS over outputs, on the second half of the run (past warm-up)."""
    half = samples[len(samples) // 2:]
    if len(half) < 2:
        return None
    mx, my = sum(x for x, _ in half) / len(half), sum(y for _, y in half) / len(half)
    var = sum((x - mx) ** 2 for x, _ in half)
    return sum((x - mx) * (y - my) for x, y in half) / var * 1024 if var else None


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_storage(a) -> dict[str, Any]:
    if a.legacy:
        use_legacy_storage()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.db") as store:
        run = store.create_run("prove", {})
        search(store, run, initial=a.initial, verifications=a.verifications, rounds=a.rounds, kb=a.output_kb)
        con = store.engine.raw_connection()
        q = lambda sql: con.execute(sql).fetchone()[0] or 0  # noqa: E731
        outputs = q("SELECT sum(length(text) + coalesce(length(reasoning), 0)) FROM llm_calls")
        rows = sum(q(f"SELECT sum(length(raw) + coalesce(length(reasoning), 0) + {extra}) FROM {t}")
                   for t, extra in [("proofs", "coalesce(length(solution), 0) + coalesce(length(self_evaluation), 0)"),
                                    ("verifications", "coalesce(length(analysis), 0) + length(issues)"),
                                    ("meta_verifications", "coalesce(length(analysis), 0)")])
        prompts = q("SELECT sum(length(messages)) FROM prompts")
        calls = q("SELECT count(*) FROM llm_calls")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        size = (Path(tmp) / "s.db").stat().st_size
        return {"calls": calls, "output_mb": outputs / 1e6, "record_text_mb": rows / 1e6,
                "prompt_mb": prompts / 1e6, "file_mb": size / 1e6,
                "ratio_outputs_plus_records": (outputs + rows) / outputs, "ratio_file": size / outputs}


def build_large_run(path: Path, problems: int, proofs: int, verifications: int, kb: float) -> str:
    """A synthetic finished run: problems x proofs x verifications outputs of `kb` KB each,
    recorded as the runner does (calls first, then records with the call key as id)."""
    from proofloop.protocol import parse_proof, parse_verification

    with Store(path) as store:
        run = store.create_run("prove", {"synthetic": True}, run_id="r-large")
        for p in range(problems):
            pid = store.add_problem(run, f"Problem {p}: show that {p} + 0 = {p}.", name=f"p{p}")
            for g in range(proofs):
                text = (f"## Solution\n\n{filler(kb, p * 1000 + g)}\n\n## Self Evaluation\n\nHere is my "
                        "evaluation of the solution: fine.\nBased on my evaluation, the final overall score "
                        "should be: \\boxed{1}")
                key = f"g-{p}-{g}"
                analyses = [(f"v-{p}-{g}-{j}", f"{filler(kb, j)}\nBased on my evaluation, the final overall "
                             "score should be: \\boxed{1}") for j in range(verifications)]
                store.put_many([_call(run, key, text, "generate")] + [_call(run, k, t, "verify") for k, t in analyses])
                store.add_proof(run, key, problem_id=pid, raw=text, finish_reason="stop",
                                **parse_proof(text, finish_reason="stop").model_dump())
                for k, t in analyses:
                    store.add_verification(run, k, proof_id=key, raw=t,
                                           **parse_verification(t, finish_reason="stop").model_dump())
        store.set_run_status(run, "finished")
        return run


def _call(run: str, key: str, text: str, tag: str) -> CallRecord:
    return CallRecord(key=key, namespace=run, model="sim-1", provider="sim", sampling={}, index=0,
                      messages=[{"role": "user", "content": f"prompt {tag}"}],
                      completion=Completion(text=text, finish_reason="stop", completion_tokens=len(text) // 4),
                      prompt_tokens=10, completion_tokens=len(text) // 4, tag=tag, created_at=time.time())


def export_in_memory(store: Store, run_id: str, out) -> None:
    """The export before streaming: every proof, analysis and call of the run read first."""
    sys.path.insert(0, str(HERE.parents[2] / "tests"))
    from test_store_v2 import export_in_memory as reference

    for record in reference(store, run_id):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def child_export(a) -> dict[str, Any]:
    with Store(a.db) as store:
        base = peak_rss_mb()
        t0 = time.perf_counter()
        with open(a.out, "w", encoding="utf-8") as out:
            export_in_memory(store, "r-large", out) if a.legacy else export_run_jsonl(store, "r-large", out)
        return {"peak_rss_mb": peak_rss_mb(), "rss_before_mb": base, "seconds": time.perf_counter() - t0,
                "out_mb": Path(a.out).stat().st_size / 1e6}


def use_short_result_repr() -> None:
    """What search/base.py should do: a ProblemResult repr that does not print every record.
    asyncio builds repr(task) (and so reprlib.repr of its result, which builds the dataclass's
    full repr before cutting it to 30 characters) when the run's last task finishes: a string
    of every output of the run, ~35 KB per output, alive for a moment."""
    from proofloop.search.base import ProblemResult

    ProblemResult.__repr__ = lambda self: (f"ProblemResult({self.strategy}, {len(self.proofs)} proofs, "
                                           f"best={self.best.id if self.best else None})")


def child_memory(a) -> dict[str, Any]:
    if a.short_repr:
        use_short_result_repr()
    sampler = PeakSnapshots()
    if a.trace:
        tracemalloc.start(1)
        sampler.start()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "s.db") as store:
        run = store.create_run("prove", {})
        base = peak_rss_mb()
        t0 = time.perf_counter()
        results, sim = search(None if a.no_store else store, run, initial=a.initial, verifications=a.verifications,
                              rounds=a.rounds, kb=a.output_kb)
        out = {"calls": sim.count, "peak_rss_mb": peak_rss_mb(), "rss_at_start_mb": base,
               "peak_growth_kb_per_call": (peak_rss_mb() - base) * 1024 / sim.count,
               "rss_slope_kb_per_call": growth_kb_per_call(sim.rss_mb), "seconds": time.perf_counter() - t0}
        if a.trace:  # where the live memory was allocated, at the largest sampled moment
            out["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
            sampler.stop.set()
            sampler.join()
            out["largest_traced_mb"], out["top_files"], out["top_lines"] = sampler.largest
        return out


# ---- the parent: runs children, prints results --------------------------------------------------------


def run_child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(HERE), "_child", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["storage", "export", "memory", "all", "_child"])
    ap.add_argument("child", nargs="?")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--legacy", action="store_true")
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--no-store", action="store_true", help="memory: in-memory cache and recorder instead")
    ap.add_argument("--short-repr", action="store_true", help="memory: a short ProblemResult repr (see above)")
    ap.add_argument("--initial", type=int, default=64)
    ap.add_argument("--verifications", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--output-kb", type=float, default=8.0)
    ap.add_argument("--db")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.what == "_child":
        print(json.dumps({"storage": child_storage, "export": child_export, "memory": child_memory}[a.child](a)))
        return
    size = ["--initial", "8", "--verifications", "4", "--rounds", "1"] if a.quick else []
    if a.what in ("storage", "all"):
        for legacy in ([], ["--legacy"]):
            print("storage", legacy or "", run_child("storage", *size, *legacy), flush=True)
    if a.what in ("export", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "large.db"
            problems, proofs, ver = (4, 8, 4) if a.quick else (40, 64, 4)
            build_large_run(db, problems, proofs, ver, a.output_kb)
            print(f"export: run of {problems}x{proofs}x(1+{ver}) outputs, file {db.stat().st_size / 1e6:.0f} MB")
            for legacy in ([], ["--legacy"]):
                print("export", legacy or "", run_child("export", "--db", str(db), "--out", str(Path(tmp) / "o.jsonl"),
                                                        *legacy), flush=True)
    if a.what in ("memory", "all"):
        full = size or ["--initial", "64", "--verifications", "16", "--rounds", "4"]
        quarter = ["--initial", "2", "--verifications", "4", "--rounds", "1"] if a.quick else \
            ["--initial", "16", "--verifications", "16", "--rounds", "4"]
        for args in (full, quarter):
            for store in ([], ["--no-store"], ["--short-repr"]):
                print("memory", " ".join(args + store), run_child("memory", *args, *store), flush=True)


if __name__ == "__main__":
    main()

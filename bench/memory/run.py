"""Peak memory of a stored `pool` prove run as it grows: a full-size run and one a quarter its size.

Each run is a stored prove run (`proofloop.runs.execute`) on the simulator with the run store
(a SQLite file) as call cache, in a fresh subprocess, so its peak resident set (VmHWM) is its
own. Every answer of the simulator is padded to about 8 KB of text (the simulator's own texts
are short: its `pad=` markers stand for the tokens, SimConfig lengths set token counts only),
so the run holds what a real one would: 8 KB proofs and analyses.

    python bench/memory/run.py                     # both sizes, a table (about a minute)
    python bench/memory/run.py --size quarter      # one size
    python bench/memory/run.py --child full --tracemalloc 15   # top allocations by file:line

Sizes: `full` is 64 proofs per round x 16 verifications x 5 rounds (round 0 + rounds=4
refinement rounds; top_k=16 x samples_per_prompt=4 = 64 refined proofs per round; no proof is
accepted, so every round runs): 64 * 17 * 5 = 5,440 calls. `quarter`: 16 proofs per round
(top_k=4), 1,360 calls.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    "full": dict(initial=64, verifications=16, top_k=16, samples_per_prompt=4, rounds=4),
    "quarter": dict(initial=16, verifications=16, top_k=4, samples_per_prompt=4, rounds=4),
}
OUTPUT_BYTES = 8192  # every answer's text is padded to about this many characters
PROVIDER = "sim-8k"


def vm_hwm_kb() -> int:
    """Peak resident set of this process in KiB (Linux /proc; ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def padded(text: str, size: int = OUTPUT_BYTES) -> str:
    """`text` with filler prose after its first sim marker line, up to about `size` characters.
    The filler holds no marker and no score, so the simulator and the parsers read the answer
    as before (a proof's filler is part of its solution, an analysis's part of its body)."""
    missing = size - len(text)
    cut = text.find("-->\n")
    if missing <= 0 or cut < 0:
        return text
    sentence = "This step is routine and follows from the definitions stated above. "
    filler = (sentence * (missing // len(sentence) + 1))[:missing]
    return text[:cut + 4] + filler + "\n" + text[cut + 4:]


def register_padded_sim() -> None:
    """Provider `sim-8k`: the simulator with every answer padded to OUTPUT_BYTES."""
    from proofloop.models.registry import register_provider
    from proofloop.sim.provider import SimProvider

    class PaddedSim(SimProvider):
        async def complete(self, messages, sampling, n):
            response = await super().complete(messages, sampling, n)
            for c in response.completions:
                c.text = padded(c.text)
            return response

    register_provider(PROVIDER, lambda settings, **kw: PaddedSim(seed=settings.sim_seed, max_n=settings.max_n))


def child(size: str, top: int) -> dict:
    """One run in this process; its peak RSS and counts."""
    if top:
        import tracemalloc
        tracemalloc.start(1)
    from proofloop.models.factory import ModelSettings
    from proofloop.runs import ModelSetup, create_prove_run, execute
    from proofloop.sim import make_problems
    from proofloop.store import Store

    register_padded_sim()
    base_kb = vm_hwm_kb()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "runs.db")
        options = dict(preset="paper", accept=False, **SIZES[size])
        run_id = create_prove_run(store, make_problems(1, seed=7, mix="hard")[0],
                                  ModelSetup(ModelSettings(provider=PROVIDER), seed=0, max_concurrency=64),
                                  strategy="pool", options=options)
        snapshots: list = []
        t0 = time.monotonic()
        summary = execute(store, run_id, notice=lambda line: None,
                          on_record=snapshot_near_the_end(size, snapshots) if top else None)
        took = time.monotonic() - t0
        out = {"size": size, "calls": summary["usage"]["calls"], "proofs": summary["proofs"],
               "peak_rss_mb": round(vm_hwm_kb() / 1024, 1), "rss_at_import_mb": round(base_kb / 1024, 1),
               "wall_s": round(took, 1)}
        if snapshots:
            out["top"] = [f"{s.size / 1e6:7.1f} MB {s.count:8d} blocks  {s.traceback}"
                          for s in snapshots[0].statistics("lineno")[:top]]
        store.close()
    return out


def calls_of(size: str) -> int:
    p = SIZES[size]
    return p["initial"] * (1 + p["verifications"]) * (p["rounds"] + 1)


def snapshot_near_the_end(size: str, snapshots: list):
    """An on_record callback that takes one tracemalloc snapshot when 97% of the run's records
    are in: the search's state is at its largest then (after the run it is all freed)."""
    import tracemalloc
    at, seen = int(0.97 * calls_of(size)), [0]

    def on_record(kind, record) -> None:
        seen[0] += 1
        if seen[0] == at:
            snapshots.append(tracemalloc.take_snapshot())
    return on_record


def measure(size: str) -> dict:
    """Run `size` in a fresh interpreter (same PYTHONPATH) and read its JSON line."""
    done = subprocess.run([sys.executable, __file__, "--child", size], capture_output=True, text=True,
                          env=os.environ.copy(), check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), help="only this size")
    parser.add_argument("--child", choices=sorted(SIZES), help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="N",
                        help="with --child: also list the N largest allocation sites")
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.tracemalloc)
        for line in result.pop("top", []):
            print(line, file=sys.stderr)
        print(json.dumps(result))
        return
    results = [measure(s) for s in ([args.size] if args.size else ["quarter", "full"])]
    print(f"{'size':8} {'calls':>6} {'proofs':>6} {'peak RSS MB':>11} {'at import':>9} {'wall s':>6}")
    for r in results:
        print(f"{r['size']:8} {r['calls']:6d} {r['proofs']:6d} {r['peak_rss_mb']:11.1f} "
              f"{r['rss_at_import_mb']:9.1f} {r['wall_s']:6.1f}")
    if len(results) == 2:
        quarter, full = results
        print(f"full / quarter peak RSS: {full['peak_rss_mb'] / quarter['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()

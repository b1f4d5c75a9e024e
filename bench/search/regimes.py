"""The search benchmark in the paper's regimes: `release` vs `pool` vs `adaptive`, per regime,
server size and scheduling policy (issue 13 item 6).

    .venv/bin/python bench/search/regimes.py --quick     # 1 node, 3 problems a cell
    .venv/bin/python bench/search/regimes.py             # the paper's pool (64 x 64, top 64, 8, 16)

Each cell (regime x server size) runs, on the same problems and model seed and each on a
fresh simulated server (virtual clock, run.py's run_scheme): (a) `release` (no priorities:
the released script sends none, so FIFO either way), (b) `pool` on a FIFO server queue
(priority off), (b') `pool` with priority scheduling (Pool's default), and (c) `adaptive` with
priorities. Per cell it reports pool/release makespan under both policies, pool's makespan
over the lower bound for its work (run.py's lower_bound), adaptive's verification tokens over
pool's, and the mean true quality of both selections.

Regimes (proofloop.sim.regimes): `released` (today's simulator), `shortlist`, `basic`,
`advanced`. The simulator's regime sets the model (its SimConfig) and the problems'
difficulties; the search parameters are the same in every regime.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_search_run", HERE / "run.py")
run = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = run  # dataclasses look their module up by name
_spec.loader.exec_module(run)

REGIMES = ("released", "basic", "advanced", "shortlist")
# the paper's pool (decisions.PRESETS["paper"]); samples_per_prompt 1, issue-first analyses
PAPER = dict(initial=64, verifications=64, top_k=64, analyses_per_prompt=8, max_per_score=None,
             samples_per_prompt=1, rounds=16)
# Quick: the same cells as the full mode's 1-node row (the paper's pool, where every target is
# set) on 3 problems a cell instead of FULL_PROBLEMS. A narrower pool or a smaller server does
# not keep the shape: with 16 proofs x 16 analyses on 1/16 of a node, or 16 x 64 on 1/6, the
# generations and the 64-sample requests weigh differently against the slots, and pool/release
# came out 0.63-1.07 (README, "quick mode").
QUICK_PROBLEMS = 3
FULL_PROBLEMS = 8
# Adaptive for the paper's pool (Adaptive's docstring, README): the top-64 boundary settles to an
# interval of 0.35, a parent gets 8 analyses (one refinement prompt's worth)
ADAPTIVE_PAPER = dict(stages=[4, 8, 16, 32, 64], refine_min=8, tolerance=0.35)
CLIENT_CAP = 1.0  # (b'') caps the samples in flight at this many times the server's slots (README)
TARGETS = {"fifo": 0.6, "priority": 0.5, "bound": 1.15, "adaptive_tokens": 0.3, "quality": 0.01}


def scaled(cfg, nodes: float):
    """The server: `nodes` x one DeepSeek node (slots and throughputs; per-sequence speed unchanged)."""
    base = run.ServerModel()
    return dataclasses.replace(cfg, server={"slots": max(1, round(base.slots * nodes)), "prefill_tps": base.prefill_tps * nodes,
                                            "decode_tps_total": base.decode_tps_total * nodes,
                                            "cache_tokens": base.cache_tokens * nodes})


def cell(cfg, seed: int, log=print) -> dict[str, Any]:
    """release, pool (FIFO), pool (priority), adaptive (priority) on one regime and server size."""
    problems = run.problems_of(cfg)
    t0 = time.perf_counter()
    fifo = dataclasses.replace(cfg, streaming={**cfg.streaming, "priority": False, "client_priority": False})
    # FIFO server, the client orders: priorities kept client-side, samples in flight capped at the slots
    ordered = dataclasses.replace(cfg, streaming={**cfg.streaming, "priority": False, "client_priority": True},
                                  max_sequences=round(CLIENT_CAP * cfg.server.get("slots", run.ServerModel().slots)))
    prio = dataclasses.replace(cfg, streaming={**cfg.streaming, "priority": True})
    runs = {"release": run.run_scheme("release", cfg, problems, seed),
            "pool_fifo": run.run_scheme("pool", fifo, problems, seed),
            "pool_fifo_client": run.run_scheme("pool", ordered, problems, seed),
            "pool_priority": run.run_scheme("pool", prio, problems, seed),
            "adaptive": run.run_scheme("adaptive", prio, problems, seed)}
    a, bf, bo, bp, c = runs["release"], runs["pool_fifo"], runs["pool_fifo_client"], runs["pool_priority"], runs["adaptive"]
    out = {"regime": cfg.regime, "problems": len(problems), "seed": seed,
           "makespan": {k: r.makespan_s for k, r in runs.items()},
           "bound_fifo": run.lower_bound(bf, fifo)["bound_s"], "bound_fifo_client": run.lower_bound(bo, ordered)["bound_s"],
           "bound_priority": run.lower_bound(bp, prio)["bound_s"],
           "rounds": rounds_run(bp, cfg), "accepted": bp.accepted,
           "quality_pool": bp.mean_quality, "quality_adaptive": c.mean_quality,
           "grade_pool": statistics.fmean(bp.grade), "grade_adaptive": statistics.fmean(c.grade),
           "same_selection": a.selected == bf.selected == bo.selected == bp.selected,
           "verif_tokens_pool": bp.verif_tokens, "verif_tokens_adaptive": c.verif_tokens,
           "samples": {k: int(r.total("samples")) for k, r in runs.items()}, "real_s": time.perf_counter() - t0}
    out["ratios"] = {"pool_fifo_vs_release": bf.makespan_s / a.makespan_s,
                     "pool_fifo_client_vs_release": bo.makespan_s / a.makespan_s,
                     "pool_priority_vs_release": bp.makespan_s / a.makespan_s,
                     "pool_fifo_vs_bound": bf.makespan_s / out["bound_fifo"],
                     "pool_fifo_client_vs_bound": bo.makespan_s / out["bound_fifo_client"],
                     "pool_priority_vs_bound": bp.makespan_s / out["bound_priority"],
                     "adaptive_vs_pool_verif_tokens": c.verif_tokens / bp.verif_tokens,
                     "adaptive_minus_pool_quality": c.mean_quality - bp.mean_quality}
    log(f"  {cfg.regime} {cfg.server.get('slots')} slots: " +
        ", ".join(f"{k} {v:.3f}" for k, v in out["ratios"].items()) + f" ({out['real_s']:.0f} s real)")
    return out


def rounds_run(r, cfg) -> list[int]:
    """Refinement rounds each problem ran (from the proofs its requests made)."""
    params = cfg.pool_params()
    last: dict[str, int] = {}
    for info in r.log:
        if info.role == "refine" and info.problem is not None:
            last[info.problem] = max(last.get(info.problem, 0), run.round_of(params, info.first))
    return [last.get(p, 0) for p in sorted({i.problem for i in r.log if i.problem})]


def met(value: float, target: float) -> str:
    return "yes" if value <= target else "**no**"


def table(cells: list[dict[str, Any]]) -> str:
    lines = ["| regime | nodes | problems | rounds run (mean / max; share at 16) | pool FIFO / release | "
             "pool FIFO, client-ordered / release | pool priority / release | FIFO / bound | priority / bound | "
             "adaptive / pool verif. tokens | quality pool / adaptive (grade) | same selection |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for c in cells:
        r, rounds = c["ratios"], c["rounds"]
        full = sum(x >= 16 for x in rounds) / max(1, len(rounds))
        lines.append(
            f"| {c['regime']} | {c['nodes']:g} | {c['problems']} | {statistics.fmean(rounds):.1f} / {max(rounds)}; {full:.2f} | "
            f"{r['pool_fifo_vs_release']:.3f} ({met(r['pool_fifo_vs_release'], TARGETS['fifo']) if c['nodes'] <= 1 else '-'}) | "
            f"{r['pool_fifo_client_vs_release']:.3f} ({met(r['pool_fifo_client_vs_release'], TARGETS['fifo']) if c['nodes'] <= 1 else '-'}) | "
            f"{r['pool_priority_vs_release']:.3f} ({met(r['pool_priority_vs_release'], TARGETS['priority']) if c['nodes'] <= 1 else '-'}) | "
            f"{r['pool_fifo_vs_bound']:.3f} | {r['pool_priority_vs_bound']:.3f} ({met(r['pool_priority_vs_bound'], TARGETS['bound'])}) | "
            f"{r['adaptive_vs_pool_verif_tokens']:.3f} ({met(r['adaptive_vs_pool_verif_tokens'], TARGETS['adaptive_tokens'])}) | "
            f"{c['quality_pool']:.3f} / {c['quality_adaptive']:.3f} ({c['grade_pool']:.2f} / {c['grade_adaptive']:.2f}; "
            f"{met(abs(r['adaptive_minus_pool_quality']), TARGETS['quality'])}) | "
            f"{'yes' if c['same_selection'] else 'no'} |")
    return "\n".join(lines)


def makespans(cells: list[dict[str, Any]]) -> str:
    """Makespans (simulated s) per cell and `bound / release`, the floor under pool/release: pool
    cannot finish before the lower bound for its own work."""
    lines = ["| regime | nodes | refinement rounds per problem | accepted | release | pool FIFO | pool FIFO, client-ordered | "
             "pool priority | bound (priority) | bound / release | adaptive |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        m = c["makespan"]
        lines.append(f"| {c['regime']} | {c['nodes']:g} | {c['rounds']} | {c['accepted']}/{c['problems']} | "
                     f"{m['release']:.0f} | {m['pool_fifo']:.0f} | {m['pool_fifo_client']:.0f} | {m['pool_priority']:.0f} | "
                     f"{c['bound_priority']:.0f} | {c['bound_priority'] / m['release']:.3f} | {m['adaptive']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"1 node only, {QUICK_PROBLEMS} problems a cell")
    ap.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    ap.add_argument("--nodes", type=float, nargs="+",
                    help="server sizes in nodes (default: full 1 4 16; quick 1)")
    ap.add_argument("--problems", type=int, help=f"problems per cell (default: quick {QUICK_PROBLEMS}, full {FULL_PROBLEMS})")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--from-json", default=None, help="print the tables of a run saved with --json (runs nothing)")
    ap.add_argument("--client-cap", type=float, default=CLIENT_CAP,
                    help="pool on a FIFO server, ordered by the client: samples in flight per server slot")
    args = ap.parse_args(argv)
    globals()["CLIENT_CAP"] = args.client_cap
    if args.from_json:
        cells = json.loads(Path(args.from_json).read_text())
        print(table(cells) + "\n\n" + makespans(cells))
        return 0
    pool, adaptive = PAPER, ADAPTIVE_PAPER
    nodes = args.nodes or ([1] if args.quick else [1, 4, 16])
    problems = args.problems or (QUICK_PROBLEMS if args.quick else FULL_PROBLEMS)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    cells = []
    for name in args.regimes:
        base = dataclasses.replace(run.QUICK, regime=name, problems=problems, seeds=(args.seed,), params=pool,
                                   adaptive=adaptive, streaming=dict(request_n=1), problem_seed=0)
        for k in nodes:
            cells.append({**cell(scaled(base, k), args.seed, log), "nodes": k})
            if args.json:  # after every cell: a long run stopped early keeps what it finished
                Path(args.json).write_text(json.dumps(cells, indent=2, default=str))
    print(f"pool {pool}, adaptive {adaptive}, {problems} problems per cell, seed {args.seed}, "
          f"{time.perf_counter() - t0:.0f} s")
    print(table(cells))
    print()
    print(makespans(cells))
    print()
    for c in cells:
        for key, v in c["ratios"].items():
            print(f"{c['regime']}.x{c['nodes']:g}.{key}={v:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where `adaptive` spends its verifications in a regime, by the decision that asked for them,
against `pool` on the same problems (the paper's pool, one node, virtual clock).

    .venv/bin/python bench/search/adaptive_breakdown.py --regime advanced --problems 3
    .venv/bin/python bench/search/adaptive_breakdown.py --problems 3 --set stages=4,16,32,64 --set refine_min=16 --set tolerance=0.2

Each escalation is counted under the step that asked for it (`acceptance`: the walk over the
round's candidates that may still pass; `topk64`: the next round's parents; `topk1`: the final
choice when no proof passed) and the stage it went to; the first stage of every proof is
`stage0`. It wraps Adaptive's own steps to watch them, so it measures exactly what the
benchmark runs (regimes.py's ADAPTIVE_PAPER unless --set overrides a key).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_search_regimes", HERE / "regimes.py")
regimes = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = regimes
_spec.loader.exec_module(regimes)
run = regimes.run

import proofloop.search.adaptive as adaptive  # noqa: E402  (after the bench modules, like them)


def watched(tally: collections.Counter):
    """Patch Adaptive so every verification it asks for is counted by (step, stage reached)."""
    step = ["stage0"]
    escalate, settle, topk_step, staged = (adaptive.Adaptive._escalate, adaptive.Adaptive._settle_acceptance,
                                           adaptive.topk_step, adaptive.Adaptive._staged)

    async def counted_escalate(self, search, targets):
        for pid, upto in targets.items():
            tally[(step[0], upto)] += upto - search.entry(pid).requested
        return await escalate(self, search, targets)

    async def counted_settle(self, search, round_):
        step[0] = "acceptance"
        return await settle(self, search, round_)

    def counted_topk(views, k, **kw):
        step[0] = f"topk{k}"
        return topk_step(views, k, **kw)

    async def counted_staged(self, search, make, round_=0):
        entries = await make
        tally[("stage0", self.plan[0])] += self.plan[0] * sum(search.usable(e) for e in entries)

        async def made():
            return entries
        return await staged(self, search, made(), round_)

    adaptive.Adaptive._escalate, adaptive.Adaptive._settle_acceptance = counted_escalate, counted_settle
    adaptive.topk_step, adaptive.Adaptive._staged = counted_topk, counted_staged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--regime", default="advanced", choices=regimes.REGIMES)
    ap.add_argument("--problems", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an Adaptive option over regimes.ADAPTIVE_PAPER (stages=4,8,16 is a list)")
    args = ap.parse_args(argv)
    options = dict(regimes.ADAPTIVE_PAPER)
    for item in args.set:
        key, _, value = item.partition("=")
        options[key] = [int(v) for v in value.split(",")] if key == "stages" else float(value) if "." in value else int(value)
    cfg = dataclasses.replace(run.QUICK, regime=args.regime, problems=args.problems, seeds=(args.seed,),
                              params=regimes.PAPER, adaptive=options, streaming=dict(request_n=1, priority=True),
                              problem_seed=0)
    problems = run.problems_of(cfg)
    tally: collections.Counter = collections.Counter()
    watched(tally)
    c = run.run_scheme("adaptive", cfg, problems, args.seed)
    b = run.run_scheme("pool", cfg, problems, args.seed)
    print(f"{args.regime}, {args.problems} problems, adaptive {options}")
    print(f"verification samples: adaptive {sum(tally.values())}, pool {int(b.tag('verify', 'samples'))}")
    for (step, stage), samples in sorted(tally.items()):
        print(f"  {step:<10} to {stage:>2}: {samples}")
    print(f"adaptive / pool verification tokens {c.verif_tokens / b.verif_tokens:.3f}; mean true quality "
          f"pool {b.mean_quality:.4f}, adaptive {c.mean_quality:.4f} (delta {c.mean_quality - b.mean_quality:+.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

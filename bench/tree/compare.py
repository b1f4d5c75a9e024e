"""`tree` against `pool` and `sequential` on the simulator at equal token budgets.

    PYTHONPATH=src .venv/bin/python bench/tree/compare.py --problems 40 --budget 400000

Each strategy solves the same simulated problems (one in-process SimProvider per strategy,
same seed) with a token budget per problem (pool and tree: `budget_tokens`; sequential has no
budget option: its threads x attempts are chosen to spend about as much, and its real spend is
reported). Reported per strategy: the share of problems it *solved* (it accepted a proof and
that proof is truly correct: the sim's hidden quality for whole proofs, every step valid for
tree's proofs), the share where it accepted a wrong proof, and the mean tokens spent on
problems it solved. The simulator's assumptions are in docs/SIMULATOR.md (whole proofs,
verifier calibration) and sim/steps.py (steps); the step verifier's numbers are free
parameters, so these results compare strategies under those assumptions, nothing more.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.search import make_strategy
from proofloop.search.base import MemoryRecorder, SearchContext
from proofloop.sim import make_problems, true_grade
from proofloop.sim.provider import SimProvider
from proofloop.sim.steps import ASSEMBLED_VALID_Q, assembled_quality

BIG = Sampling(max_tokens=200_000)


def truly_correct(text: str | None) -> bool:
    if not text:
        return False
    assembled = assembled_quality(text)
    if assembled is not None and "sim:proof" not in text:
        return assembled[1] == ASSEMBLED_VALID_Q
    return true_grade(text) == 1.0


def spent(recorder: MemoryRecorder) -> int:
    records = [p for p, _ in recorder.proofs] + recorder.analyses + recorder.metas
    return sum(r.usage.tokens for r in records if r.usage is not None)


async def one(strategy: str, options: dict, problem: str, seed: int) -> dict:
    recorder = MemoryRecorder()
    ctx = SearchContext(Model(SimProvider(seed=seed), max_concurrency=64), gen_sampling=BIG, verify_sampling=BIG,
                        meta_sampling=BIG, recorder=recorder)
    result = await make_strategy(strategy, **options).solve(problem, ctx)
    accepted = result.stop_reason == "accepted"
    correct = truly_correct(result.best.solution if result.best else None)
    return {"accepted": accepted, "solved": accepted and correct, "wrong_accept": accepted and not correct,
            "tokens": spent(recorder)}


async def compare(n_problems: int, budget: int, seed: int) -> dict:
    problems = make_problems(n_problems, seed=seed)
    plans = {
        "tree": ("tree", {"k": 3, "step_verifications": 4, "verifications": 8, "max_expansions": 60,
                          "budget_tokens": budget}),
        "pool": ("pool", {"initial": 8, "verifications": 8, "top_k": 4, "rounds": 8, "budget_tokens": budget}),
        "sequential": ("sequential", {"threads": 4, "attempts": 4}),
    }
    out = {}
    for name, (strategy, options) in plans.items():
        rows = await asyncio.gather(*(one(strategy, options, p, seed) for p in problems))
        solved = [r for r in rows if r["solved"]]
        out[name] = {"solved": len(solved) / len(rows), "wrong_accepts": sum(r["wrong_accept"] for r in rows) / len(rows),
                     "mean_tokens_when_solved": round(sum(r["tokens"] for r in solved) / len(solved)) if solved else None,
                     "mean_tokens": round(sum(r["tokens"] for r in rows) / len(rows)), "options": options}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--budget", type=int, default=400_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(compare(args.problems, args.budget, args.seed)), indent=1))


if __name__ == "__main__":
    main()

"""Domain-pack benchmark, code pack: how many seeded defects the tests alone catch, and what
the sandbox costs per candidate.

    PYTHONPATH=src .venv/bin/python bench/domains/run.py            # all 164 HumanEval tasks
    PYTHONPATH=src .venv/bin/python bench/domains/run.py --tasks 40 --json

Every HumanEval task's canonical solution and its mutants (packs/mutations.py: operator,
boundary, constant, dropped branch) are run against the task's tests in the sandbox
(packs/sandbox.py), one fresh sandboxed process each. "Caught" means the tests fail on the
mutant; a mutant that passes is either equivalent to the original or a defect the tests miss
(the verifier's job). The wall time of each sandboxed run (process start to reap, limits and
namespace included) gives the overhead per candidate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from typing import Any

from proofloop.packs import code as code_pack
from proofloop.packs.mutations import mutants, normalise


def measure(tasks: int | None) -> dict[str, Any]:
    caught: Counter[str] = Counter()
    total: Counter[str] = Counter()
    canonical_pass, walls = 0, []
    chosen = code_pack.humaneval_tasks(None)[:tasks]
    started = time.monotonic()
    for task in chosen:
        problem = code_pack.task_text(task["prompt"], task["test"], task["entry_point"])
        tests = code_pack.tests_of(problem) or ""
        canonical = normalise(task["prompt"] + task["canonical_solution"])
        record = code_pack.run_candidate(canonical, tests)
        walls.append(record["wall_s"])
        canonical_pass += record["status"] == "passed"
        for m in mutants(canonical, task["entry_point"]):
            record = code_pack.run_candidate(m.code, tests)
            walls.append(record["wall_s"])
            total[m.kind] += 1
            caught[m.kind] += record["status"] != "passed"
    q = statistics.quantiles(walls, n=20)
    return {"tasks": len(chosen), "canonical_passing": canonical_pass, "mutants": sum(total.values()),
            "caught_by_tests": sum(caught.values()),
            "share_caught": sum(caught.values()) / max(1, sum(total.values())),
            "by_kind": {k: {"mutants": total[k], "caught": caught[k], "share": caught[k] / total[k]} for k in sorted(total)},
            "sandbox_runs": len(walls), "overhead_s": {"p50": statistics.median(walls), "p95": q[18],
                                                       "max": max(walls)},
            "elapsed_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=None, help="only the first N HumanEval tasks")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.tasks)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['tasks']} tasks, canonical solutions passing: {result['canonical_passing']}")
    print(f"seeded defects caught by the tests alone: {result['caught_by_tests']}/{result['mutants']} "
          f"({100 * result['share_caught']:.1f}%)")
    for kind, r in result["by_kind"].items():
        print(f"  {kind:<15} {r['caught']:>4}/{r['mutants']:<4} ({100 * r['share']:.1f}%)")
    o = result["overhead_s"]
    print(f"sandbox wall time per candidate over {result['sandbox_runs']} runs: p50 {o['p50']:.3f} s, "
          f"p95 {o['p95']:.3f} s, max {o['max']:.3f} s")


if __name__ == "__main__":
    main()

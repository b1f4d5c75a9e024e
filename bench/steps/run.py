"""The symbolic checker over DeepSeekMath-V2's 84 final proofs (shared/data/dsm2/outputs).

Per proof: steps, relations, verdicts, wall time. Totals: relations found, share parsed
(not `unparsed`), checks per second, p50 / p99 seconds per proof, and the refutations in
proofs the experts gave full marks, split into closed ones (no variables: arithmetic errors
or false alarms) and ones with variables (not an identity: often an equation being solved).

    PYTHONPATH=src python bench/steps/run.py                 # all 84, a table, a few minutes
    PYTHONPATH=src python bench/steps/run.py --limit 10 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from proofloop.steps.symbolic import Checker

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "dsm2" / "outputs"
FULL_MARKS = {"CMO2024": 21, "Putnam2024": 10}  # every other set is graded out of 7


def proofs(data: Path) -> list[dict]:
    rows = []
    for path in sorted(data.glob("*.jsonl")):
        for line in path.open(encoding="utf-8"):
            row = json.loads(line)
            rating = row["model_prediction"].get("human_rating")
            rows.append({"set": path.stem, "idx": row.get("problem_idx"), "question": row["question"],
                         "proof": row["model_prediction"]["proof"],
                         "full_marks": rating is not None and float(rating) >= FULL_MARKS.get(path.stem, 7)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = proofs(args.data)[: args.limit]
    times, checks, false_alarms = [], [], []
    with Checker(timeout=args.timeout) as checker:
        checker.run({"lhs": "1", "op": "=", "rhs": "1"})  # start the worker outside the timings
        for row in rows:
            started = time.monotonic()
            report = checker.check_proof(row["proof"], row["question"])
            times.append(time.monotonic() - started)
            checks += report.checks
            if row["full_marks"]:
                false_alarms += [(row["set"], row["idx"], c) for c in report.refuted()]
    summary = _summary(rows, times, checks, false_alarms, checker.replaced)
    if args.json:
        print(json.dumps(summary))
        return
    for key, value in summary.items():
        if key != "closed_false_alarms":
            print(f"{key}: {value}")
    for line in summary["closed_false_alarms"]:
        print(f"  {line}")


def _summary(rows, times, checks, false_alarms, replaced) -> dict:
    counts = {v: sum(c.verdict == v for c in checks) for v in ("refuted", "consistent", "unparsed", "timeout")}
    ordered = sorted(times)
    checked = [c for c in checks if c.claim != "condition"]
    return {
        "proofs": len(rows), "full_mark_proofs": sum(r["full_marks"] for r in rows), "relations": len(checks),
        "conditions": len(checks) - len(checked), "verdicts": counts,
        "share_parsed": round(1 - counts["unparsed"] / max(1, len(checked)), 3),
        "checks_per_second": round(len(checks) / max(sum(times), 1e-9), 1),
        "p50_seconds_per_proof": round(statistics.median(ordered), 2),
        "p99_seconds_per_proof": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "workers_replaced": replaced,
        "refuted_in_full_mark_proofs": {"closed": sum(c.closed for _, _, c in false_alarms),
                                        "closed_not_hedged (evidence)": sum(c.closed and not c.hedged
                                                                            for _, _, c in false_alarms),
                                        "with_variables": sum(not c.closed for _, _, c in false_alarms)},
        "closed_false_alarms": [f"{s} {i}: {c.evidence()}" + (" [hedged]" if c.hedged else "")
                                for s, i, c in false_alarms if c.closed],
    }


if __name__ == "__main__":
    main()

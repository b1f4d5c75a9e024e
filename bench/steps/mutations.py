"""Seeded errors: mutate relations the checker found consistent in full-mark proofs and count
how many mutations it refutes (recall among the parsed ones).

Mutations of one side of a relation (the first that applies, in this order per kind):
coefficient (a digit d becomes d+1), sign (the first top-level + becomes -, or - becomes +),
exponent (^2 becomes ^3, ^{k} becomes ^{k+1}), dropped term (the last "+ term" removed).

    PYTHONPATH=src python bench/steps/mutations.py            # ~4 minutes
    PYTHONPATH=src python bench/steps/mutations.py --limit 10 --per-kind 50
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import DATA, proofs  # noqa: E402

from proofloop.steps.relations import stated_domain  # noqa: E402
from proofloop.steps.symbolic import Checker  # noqa: E402


def coefficient(side: str) -> str | None:
    m = re.search(r"(?<![_^{\\])\b(\d)", side)
    return side[:m.start(1)] + str((int(m.group(1)) + 1) % 10) + side[m.end(1):] if m else None


def sign(side: str) -> str | None:
    depth = 0
    for i, char in enumerate(side):
        depth += (char in "{([") - (char in "})]")
        if depth == 0 and i > 0 and char in "+-":
            return side[:i] + ("-" if char == "+" else "+") + side[i + 1:]
    return None


def exponent(side: str) -> str | None:
    m = re.search(r"\^\{?(\d+)\}?", side)
    return side[:m.start()] + "^{" + str(int(m.group(1)) + 1) + "}" + side[m.end():] if m else None


def dropped_term(side: str) -> str | None:
    depth, last = 0, None
    for i, char in enumerate(side):
        depth += (char in "{([") - (char in "})]")
        if depth == 0 and i > 0 and char in "+-":
            last = i
    return side[:last].rstrip() if last else None


MUTATIONS = {"coefficient": coefficient, "sign": sign, "exponent": exponent, "dropped term": dropped_term}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="proofs to read")
    parser.add_argument("--per-kind", type=int, default=100, help="mutations of each kind, sampled")
    args = parser.parse_args()
    rows = [r for r in proofs(DATA)[: args.limit] if r["full_marks"]]
    rng = random.Random(0)
    candidates = []  # (kind, mutated relation, domain)
    with Checker(timeout=10) as checker:
        for row in rows:
            report = checker.check_proof(row["proof"], row["question"])
            domain = stated_domain(row["question"] + "\n" + row["proof"])
            for c in report.checks:
                if c.verdict != "consistent" or c.claim not in ("equality", "inequality"):
                    continue
                for kind, mutate in MUTATIONS.items():
                    side = "rhs" if rng.random() < 0.5 else "lhs"
                    changed = mutate(getattr(c.relation, side))
                    if changed and changed.strip() and changed != getattr(c.relation, side):
                        candidates.append((kind, replace(c.relation, **{side: changed}), domain))
        results: dict[str, list[str]] = {kind: [] for kind in MUTATIONS}
        for kind in MUTATIONS:
            pool = [(r, d) for k, r, d in candidates if k == kind]
            for relation, domain in rng.sample(pool, min(args.per_kind, len(pool))):
                results[kind].append(checker.check(relation, domain).verdict)
    total_parsed = total_refuted = 0
    for kind, verdicts in results.items():
        parsed = [v for v in verdicts if v not in ("unparsed", "timeout")]
        refuted = verdicts.count("refuted")
        total_parsed, total_refuted = total_parsed + len(parsed), total_refuted + refuted
        print(f"{kind}: {len(verdicts)} mutations, {len(parsed)} parsed, {refuted} refuted, "
              f"recall {refuted / max(1, len(parsed)):.2f}")
    print(f"all: {total_parsed} parsed, {total_refuted} refuted, recall {total_refuted / max(1, total_parsed):.2f}")


if __name__ == "__main__":
    main()

"""`proofloop check`: the symbolic checker over one proof (issue 11; steps/symbolic.py).

    proofloop check proof.md --problem problem.md          # steps, relations, verdicts
    proofloop check proof.md --json --timeout 5            # the same as one JSON object

Every relation stated in the proof's mathematics is parsed by SymPy and checked in a worker
process with a time limit per relation: refuted (with a counterexample), consistent,
unparsed (with why) or timeout. Offsets are into the proof file as read. SymPy loads inside
the command only, so `proofloop --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from proofloop.cli.common import read_input
from proofloop.cli.console import say
from proofloop.cli.options import Json
from proofloop.errors import UserInputError


def check(
    proof: Annotated[Path, typer.Argument(help="the proof (Markdown / LaTeX text; '-' for stdin)")],
    problem: Annotated[Optional[Path], typer.Option(
        "--problem", help="the problem: its stated domain (positive reals, integers, x > 0) is used")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="seconds per relation")] = 10.0,
    memory: Annotated[int, typer.Option("--memory", min=64, help="MiB the worker may use beyond its start")] = 1024,
    json_out: Json = False,
) -> None:
    """Check the algebra of a proof symbolically: each relation refuted, consistent, unparsed or timeout."""
    from proofloop.extras import require

    require("sympy", "steps", "proofloop check")
    require("antlr4", "steps", "proofloop check")
    from proofloop.steps.symbolic import check_proof

    text = _raw(proof)
    problem_text = read_input(problem, "problem") if problem else ""
    report = check_proof(text, problem_text, timeout=timeout, memory_mb=memory)
    if json_out:
        say(json.dumps(dict(report.to_dict(), proof=str(proof))))
        return
    for line in _lines(report):
        say(line)


def _raw(path: Path) -> str:
    """The proof exactly as given (offsets point into it), from a file or stdin ('-')."""
    if str(path) != "-":
        read_input(path, "proof")  # the one-line errors for a missing, unreadable or empty file
        return path.read_text(encoding="utf-8")
    text = sys.stdin.read()
    if not text.strip():
        raise UserInputError("the proof is empty (-)")
    return text


def _lines(report) -> list[str]:
    """The text report: a count line, then every step with relations and each check below it."""
    counts = report.counts()
    lines = [f"{len(report.steps)} steps, {len(report.checks)} relations: "
             + ", ".join(f"{n} {verdict}" for verdict, n in counts.items())]
    by_step: dict[str, list] = {}
    for c in report.checks:
        by_step.setdefault(c.relation.id.split(".")[0], []).append(c)
    for step in report.steps:
        if step.id not in by_step:
            continue
        first = " ".join(step.text.split())
        lines.append(f"{step.id} ({step.kind}, chars {step.start}-{step.end}): {first[:90]}")
        lines += [f"  {c.evidence()}" for c in by_step[step.id]]
    refuted = report.refuted()
    if refuted:
        lines.append(f"refuted: {', '.join(c.relation.id for c in refuted)}")
    return lines

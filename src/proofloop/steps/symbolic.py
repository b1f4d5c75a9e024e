r"""The symbolic checker: the relations of a proof, each checked by SymPy in a worker process.

Verdicts: `refuted` (with the counterexample, or the nonzero difference of a closed
relation), `consistent` (simplification or every point tried agrees: never a proof),
`unparsed` (with why), `timeout` (the time or memory limit was hit; the worker is replaced).
A variable compared with a number (x > 0, n \ge 1) is a `condition`: it sets the domain of
the other checks and is not checked itself.

Safety: every check runs in a process started with `spawn`, limited in memory
(RLIMIT_AS, set inside the worker) and in wall-clock time (the parent kills the process; no
signals); text reaches SymPy only through its LaTeX parser, after a command whitelist and a
size estimate that refuses huge numbers before anything is evaluated (algebra.py).

    >>> with Checker(timeout=60) as checker:     # starts one worker (SymPy loads there)
    ...     report = checker.check_proof(r"Hence \((a+b)^2 = a^2 + b^2\) and \(2^{10} = 1024\).")
    >>> [(c.relation.id, c.verdict, c.counterexample) for c in report.checks]
    [('s1.r1', 'refuted', {'a': '1', 'b': '1'}), ('s1.r2', 'consistent', None)]
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
import dataclasses
from dataclasses import asdict, dataclass, field

from proofloop.errors import ProofloopError
from proofloop.steps.relations import Domain, Relation, find_relations, is_condition, stated_domain
from proofloop.steps.split import Step, split_steps

__all__ = ["Check", "ProofCheck", "Checker", "check_proof", "VERDICTS", "quick_refusal"]

VERDICTS = ("refuted", "consistent", "unparsed", "timeout")
MAX_LATEX = 2000  # characters per side: longer is refused before parsing
MAX_NESTING = 40  # braces and brackets deep
# Words of a step whose relations may be false on purpose ("... gives 1 \le 0, a contradiction").
HEDGES = re.compile(r"contradict|impossible|absurd|cannot|can't|can not|would|false|suppose|assume|otherwise",
                    re.I)


@dataclass(frozen=True)
class Check:
    """The outcome of checking one relation. `claim` says how it was read: condition (a
    variable against a number, not checked), equality, inequality or congruence."""

    relation: Relation
    verdict: str
    reason: str
    claim: str
    counterexample: dict[str, str] | None = None
    difference: str | None = None
    seconds: float = 0.0
    variables: tuple[str, ...] | None = None  # the relation's variables, once parsed
    hedged: bool = False  # its step speaks of a contradiction or a supposition: it may be false on purpose

    @property
    def closed(self) -> bool:
        """No variables: a refutation is then a plain arithmetic error. With variables it says
        the relation is not an identity (or fails somewhere in the stated domain): the text
        may instead be solving an equation or resting on earlier steps."""
        return self.variables == ()

    def evidence(self) -> str:
        """One line for a verifier's prompt or a report: the relation and what refutes it."""
        r = self.relation
        text = f"{r.id}: {r.lhs.strip()} {r.op} {r.rhs.strip()}" + (f" (mod {r.modulus})" if r.modulus else "")
        scope = "" if self.verdict != "refuted" else " (no variables)" if self.closed else \
            " (as an identity in its variables)"
        return f"{text}: {self.verdict}{scope}, {self.reason}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["relation"] = dict(asdict(self.relation), start=self.relation.start, end=self.relation.end)
        out["closed"] = self.closed
        return out


@dataclass
class ProofCheck:
    """Every step of a proof and the check of every relation in it."""

    steps: list[Step]
    checks: list[Check] = field(default_factory=list)

    def refuted(self, closed_only: bool = False) -> list[Check]:
        """The refuted checks (only those without variables, the strongest evidence, if asked)."""
        return [c for c in self.checks if c.verdict == "refuted" and (c.closed or not closed_only)]

    def evidence(self) -> list[Check]:
        """What a verifier should be shown (`verify --symbolic`): refuted relations without
        variables in steps that do not argue by contradiction or supposition."""
        return [c for c in self.refuted(closed_only=True) if not c.hedged]

    def counts(self) -> dict[str, int]:
        return {v: sum(c.verdict == v for c in self.checks) for v in VERDICTS}

    def to_dict(self) -> dict:
        return {"steps": [asdict(s) for s in self.steps], "checks": [c.to_dict() for c in self.checks],
                "counts": self.counts(), "evidence": [c.relation.id for c in self.evidence()]}


def quick_refusal(latex: str) -> str | None:
    """Why `latex` is refused without starting SymPy (too long, too deeply nested, a numeric
    tower or a huge factorial written out), or None."""
    if len(latex) > MAX_LATEX:
        return f"longer than {MAX_LATEX} characters"
    depth = deepest = 0
    for char in latex:
        depth += (char in "{([") - (char in "})]")
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        return f"nested more than {MAX_NESTING} deep"
    if re.search(r"\d{3,}\s*\^\s*\{?\s*\d+\s*\^\s*\{?\s*\d{2,}", latex) or re.search(r"\d{6,}\s*!", latex):
        return "refused before evaluation: a tower of powers or a huge factorial"
    return None


class Checker:
    """A pool of one worker process (`python -m proofloop.steps.algebra`, JSON lines over its
    pipes) reused across checks; a worker that runs over its time or dies is killed and
    replaced. Use it as a context manager (or call close)."""

    def __init__(self, timeout: float = 10.0, memory_mb: int = 1024, seed: int = 0, start_timeout: float = 120.0):
        self.timeout, self.memory_mb, self.seed, self.start_timeout = timeout, memory_mb, seed, start_timeout
        self._process: subprocess.Popen | None = None
        self.replaced = 0  # workers killed and replaced so far

    def __enter__(self) -> Checker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker (it exits when its input closes; killed if it does not)."""
        if self._process is not None:
            self._process.stdin.close()
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            self._kill()

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            for pipe in (self._process.stdin, self._process.stdout):
                pipe.close()
        self._process = None

    def _read(self, seconds: float) -> dict | None:
        """The worker's next line as JSON, or None when none came within `seconds` or it died."""
        ready, _, _ = select.select([self._process.stdout], [], [], seconds)
        line = self._process.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def _worker(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is not None:  # it exited (memory limit)
            self._kill()
            self.replaced += 1
        if self._process is None:
            # The worker finds proofloop where this process did; its stderr (SymPy's warnings, a
            # traceback) stays out of the command's output: failures come back as verdicts.
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
            self._process = subprocess.Popen([sys.executable, "-m", "proofloop.steps.algebra", str(self.memory_mb)],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                             text=True, env=env)
            first = self._read(self.start_timeout)
            if first != {"ready": True}:
                self._kill()
                raise ProofloopError(f"the symbolic checker's worker did not start (it answered {first!r}; "
                                     "is the 'steps' extra installed?)")
        return self._process

    def run(self, job: dict) -> dict:
        """One job in the worker: its result, or a timeout verdict when the worker had to be killed."""
        worker = self._worker()
        try:
            worker.stdin.write(json.dumps(job) + "\n")
            worker.stdin.flush()
            result = self._read(self.timeout)
        except (BrokenPipeError, ValueError):
            result = None
        if result is not None and result["verdict"] == "timeout":  # the worker hit its memory limit and exits
            self._kill()
            self.replaced += 1
        if result is not None:
            return result
        alive = worker.poll() is None
        reason = f"no answer within {self.timeout:g} s" if alive else \
            f"the worker died (memory limit {self.memory_mb} MiB?)"
        self._kill()
        self.replaced += 1
        return {"verdict": "timeout", "reason": reason}

    def check(self, relation: Relation, domain: Domain | None = None) -> Check:
        """Check one relation within `domain` (the stated conditions, positivity, integers)."""
        started = time.monotonic()
        domain = domain or Domain()
        if is_condition(relation) and relation.op in ("<", ">", "<=", ">=", "="):
            return Check(relation, "consistent", "a variable compared with a number or a variable, or one "
                         "defined by an equation: read as a condition or a definition, not checked", "condition")
        claim = {"≡": "congruence", "=": "equality", "!=": "equality"}.get(relation.op, "inequality")
        refusal = next(filter(None, map(quick_refusal, (relation.lhs, relation.rhs, relation.modulus or ""))), None)
        if refusal:
            return Check(relation, "unparsed", refusal, claim)
        job = {"lhs": relation.lhs, "op": relation.op, "rhs": relation.rhs, "modulus": relation.modulus,
               "positive": domain.positive, "nonnegative": domain.nonnegative, "integers": sorted(domain.integers),
               "all_integers": domain.all_integers, "seed": self.seed,
               "conditions": [(c.lhs, c.op, c.rhs) for c in domain.conditions]}
        result = self.run(job)
        variables = tuple(result["variables"]) if "variables" in result else None
        return Check(relation, result["verdict"], result["reason"], claim, result.get("counterexample"),
                     result.get("difference"), round(time.monotonic() - started, 4), variables)

    def check_proof(self, proof: str, problem: str = "") -> ProofCheck:
        """Split `proof` into steps and check every relation of every step, within the domain
        the problem and the step state."""
        steps = split_steps(proof)
        report = ProofCheck(steps)
        overall = stated_domain(problem + "\n" + proof)
        from_problem = stated_domain(problem).conditions
        for step in steps:
            local = Domain(overall.positive, overall.nonnegative, overall.integers, overall.all_integers,
                           from_problem + stated_domain(step.text).conditions)
            hedged = bool(HEDGES.search(step.text))
            for relation in find_relations(proof, step.start, step.end, prefix=f"{step.id}."):
                report.checks.append(dataclasses.replace(self.check(relation, local), hedged=hedged))
        return report


def check_proof(proof: str, problem: str = "", timeout: float = 10.0, memory_mb: int = 1024) -> ProofCheck:
    """`Checker(...).check_proof` with a pool of its own, closed afterwards."""
    with Checker(timeout=timeout, memory_mb=memory_mb) as checker:
        return checker.check_proof(proof, problem)

"""The run kind `verify-steps` (`proofloop verify --steps`): where does a proof first go wrong?

The proof is split into steps (steps/split.py); every step is judged n times by the step
verifier given the problem and the steps before it, all steps at once; the first step whose
mean score is below `threshold` is reported (ProcessBench's question: the index of the
earliest erroneous step, -1 for none). With `symbolic`, the symbolic checker runs first and
each step's refuted relations (steps.symbolic.ProofCheck.evidence) go into its prompt.

Records: the given proof, one proof row per step (id: roles.steps.step_key, parent: the
given proof, round: the step's index) and the step analyses pointing at it; so a resumed run
finds every finished call in the cache.

    >>> from proofloop.store import Store
    >>> from proofloop.models.factory import ModelSettings
    >>> from proofloop.runs import ModelSetup, execute
    >>> store = Store(":memory:")
    >>> run_id = create_step_verify_run(store, "Prove that 2 + 2 = 4.", "We have 2 + 2 = 4.\\n\\nDone.",
    ...                                 ModelSetup(ModelSettings(provider="sim")), n=2)
    >>> summary = execute(store, run_id, notice=lambda line: None)
    >>> summary["kind"], len(summary["steps"]), summary["first_error"] in (-1, 0, 1)
    ('verify-steps', 2, True)
"""

from __future__ import annotations

import asyncio
from typing import Any

from proofloop.errors import UserInputError
from proofloop.protocol.types import ParseStatus
from proofloop.roles.records import ProofRecord, Verification
from proofloop.roles.steps import judge_steps, step_key
from proofloop.runs.context import ModelSetup, RunContext, new_run
from proofloop.runs.prove import given_proof, raise_count
from proofloop.runs.registry import RunKind, register
from proofloop.runs.render import usage_line
from proofloop.steps.split import Step, split_steps
from proofloop.store import Store

__all__ = ["create_step_verify_run", "first_below", "execute_verify_steps", "render_verify_steps"]


def create_step_verify_run(store: Store, problem: str, proof: str, setup: ModelSetup, *, n: int = 4,
                           threshold: float = 0.5, symbolic: bool = False) -> str:
    """A `verify-steps` run: each step of `proof` judged n times given its prefix."""
    if n < 1:
        raise_count("-n", n)
    if not 0.0 < threshold <= 1.0:
        raise UserInputError(f"--threshold must be within (0, 1], got {threshold}")
    solution = given_proof(problem, proof).solution or ""
    if not split_steps(solution):
        raise UserInputError("the proof has no steps to judge (it is empty)")
    return new_run(store, "verify-steps", setup.resolved(), problem=problem, proof=proof, n=n,
                   threshold=threshold, symbolic=symbolic)


def first_below(means: list[float | None], threshold: float) -> int:
    """The index of the first mean below `threshold` (-1: none); an unscored step is not wrong."""
    return next((i for i, m in enumerate(means) if m is not None and m < threshold), -1)


async def symbolic_evidence(problem: str, solution: str, steps: list[Step]) -> tuple[list[list[str]], dict]:
    """Each step's refuted relations (lines for its prompt) and the whole check as a dict."""
    from proofloop.steps.symbolic import check_proof  # SymPy's worker starts only when asked

    report = await asyncio.to_thread(check_proof, solution, problem)
    lines = {s.id: [] for s in steps}
    for check in report.evidence():
        lines.setdefault(check.relation.id.split(".")[0], []).append(check.evidence())
    return [lines[s.id] for s in steps], {"counts": report.counts(), "evidence": [c.to_dict() for c in report.evidence()]}


def step_json(i: int, step: Step, v: Verification, evidence: list[str]) -> dict[str, Any]:
    return {"index": i, "id": step.id, "kind": step.kind, "start": step.start, "end": step.end, "text": step.text,
            "record_id": v.proof_id, "mean_score": v.mean_score, "n_valid": len(v.valid),
            "scores": [a.score for a in v.analyses],
            "causes": [a.cause for a in v.analyses if a.cause], "evidence": evidence}


async def execute_verify_steps(ctx: RunContext) -> dict[str, Any]:
    problem, config = ctx.config["problem"], ctx.config
    proof = given_proof(problem, config["proof"])
    ctx.recorder.proof(problem, proof, given=True)
    solution = proof.solution or ""
    steps = split_steps(solution)
    texts = [s.text for s in steps]
    evidence, symbolic = ([[] for _ in steps], None)
    if config.get("symbolic"):
        evidence, symbolic = await symbolic_evidence(problem, solution, steps)
    ids = [step_key(problem, texts[:i], t) for i, t in enumerate(texts)]
    for i, (sid, text) in enumerate(zip(ids, texts)):  # what the step analyses point at
        ctx.recorder.proof(problem, ProofRecord(id=sid, problem=problem, raw=text, solution=text,
                                                status=ParseStatus.OK, parents=[proof.id]), given=True, round=i)
    verifications = await judge_steps(ctx.search.verifier, problem, texts, n=config["n"],
                                      sampling=ctx.search.verify_sampling, evidence=evidence, step_ids=ids)
    for v in verifications:
        for a in v.analyses:
            ctx.recorder.analysis(problem, a)
    rows = [step_json(i, s, v, e) for i, (s, v, e) in enumerate(zip(steps, verifications, evidence))]
    first = first_below([r["mean_score"] for r in rows], config["threshold"])
    return {"kind": "verify-steps", "proof_id": proof.id, "n": config["n"], "threshold": config["threshold"],
            "first_error": first, "first_error_step": rows[first] if first >= 0 else None,
            "unscored_steps": sum(1 for r in rows if r["mean_score"] is None), "steps": rows,
            "symbolic": symbolic}


def render_verify_steps(summary: dict[str, Any]) -> list[str]:
    lines = []
    for r in summary["steps"]:
        mark = "  <- first wrong step" if r["index"] == summary["first_error"] else ""
        mean = "unscored" if r["mean_score"] is None else f"{r['mean_score']:.2f}"
        head = " ".join(r["text"].split())[:70]
        lines.append(f"step {r['index'] + 1} ({r['id']}, {r['kind']}): mean {mean} {r['scores']}{mark}  {head}")
        lines += [f"   symbolic: {e}" for e in r["evidence"]]
        lines += [f"   cause: {c}" for c in r["causes"][:2]]
    first = summary["first_error"]
    lines.append(f"first wrong step: step {first + 1} (index {first})" if first >= 0 else
                 f"no step scored below {summary['threshold']}: no wrong step found (index -1)")
    if summary.get("unscored_steps"):
        lines.append(f"note: {summary['unscored_steps']} step(s) got no valid score and were not judged")
    return lines + [usage_line(summary)]


register(RunKind("verify-steps", execute_verify_steps, render_verify_steps))

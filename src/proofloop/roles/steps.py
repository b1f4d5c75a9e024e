"""The two step-level roles: the step verifier (judge one step given the problem and the steps
before it) and the step generator (propose the next step of a proof prefix).

Same conventions as roles/__init__.py: n samples per call through the model wrapper, each
parsed into a record that keeps the raw text and the call key as its id; a failed call is a
record with status CALL_ERROR and its cause; the mean leaves unscored samples out.

    >>> import asyncio
    >>> from proofloop.models.wrapper import Model
    >>> from proofloop.sim.provider import SimProvider
    >>> model = Model(SimProvider(seed=1))
    >>> big = Sampling(max_tokens=200_000)
    >>> first = asyncio.run(propose_steps(model, "Prove that 1 + 1 = 2.", [], k=2, sampling=big))
    >>> [s.status.value for s in first]
    ['ok', 'ok']
    >>> v = asyncio.run(verify_step(model, "Prove that 1 + 1 = 2.", [], first[0].step, n=3, sampling=big))
    >>> len(v.valid), v.mean_score in (0.0, 1 / 6, 1 / 3, 0.5, 2 / 3, 5 / 6, 1.0)
    (3, True)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.protocol.stepwise import (StepTemplates, continuation_messages, parse_next_step,
                                         parse_step_verification, step_verification_messages)
from proofloop.roles import record_fields, text_id
from proofloop.roles.records import AnalysisRecord, RoleRecord, Verification

__all__ = ["verify_step", "propose_steps", "judge_steps", "step_key", "StepRecord"]

DEFAULT_SAMPLING = Sampling()


class StepRecord(RoleRecord):
    """One proposed next step: its text, whether it completes the proof, the prefix it extends."""

    problem: str
    parent: str | None = None  # the id of the node (prefix) it extends; None: the empty prefix
    step: str | None = None
    complete: bool = False


def step_key(problem: str, previous: Sequence[str], step: str) -> str:
    """A stable id for a step in its context (what a step verification points at)."""
    return text_id("\x00".join([problem, *previous, "\x01", step]))


async def verify_step(model: Model, problem: str, previous: Sequence[str], step: str, *,
                      sampling: Sampling = DEFAULT_SAMPLING, n: int = 1, start: int = 0,
                      templates: StepTemplates | None = None, evidence: Sequence[str] = (),
                      step_id: str | None = None) -> Verification:
    """n step-verifier analyses of `step` given the `previous` steps. `evidence`: lines (refuted
    relations) shown in the template's symbolic-check section. The Verification's proof_id is
    `step_id`, by default step_key(problem, previous, step)."""
    target = step_id or step_key(problem, previous, step)
    messages = step_verification_messages(problem, previous, step, templates, evidence)
    samples = await model.sample(messages, sampling, n, start=start, tag="step_verify")
    return Verification(proof_id=target, analyses=[AnalysisRecord(proof_id=target,
                                                                  **record_fields(s, parse_step_verification))
                                                   for s in samples])


async def propose_steps(model: Model, problem: str, prefix: Sequence[str], *, k: int = 1,
                        sampling: Sampling = DEFAULT_SAMPLING, start: int = 0,
                        templates: StepTemplates | None = None, parent: str | None = None) -> list[StepRecord]:
    """k proposals for the step after `prefix`."""
    samples = await model.sample(continuation_messages(problem, prefix, templates), sampling, k,
                                 start=start, tag="continue_step")
    return [StepRecord(problem=problem, parent=parent, **record_fields(s, parse_next_step)) for s in samples]


async def judge_steps(model: Model, problem: str, steps: Sequence[str], *, n: int = 1,
                      sampling: Sampling = DEFAULT_SAMPLING, templates: StepTemplates | None = None,
                      evidence: Sequence[Sequence[str]] | None = None,
                      step_ids: Sequence[str] | None = None) -> list[Verification]:
    """Every step judged given its prefix, all at once: one Verification per step, in order.
    `evidence[i]`: refuted relations of step i for its prompt; `step_ids[i]`: its record id."""
    evidence = evidence or [()] * len(steps)
    ids = step_ids or [None] * len(steps)
    return list(await asyncio.gather(*(
        verify_step(model, problem, steps[:i], step, sampling=sampling, n=n, templates=templates,
                    evidence=evidence[i], step_id=ids[i]) for i, step in enumerate(steps))))

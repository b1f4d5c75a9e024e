"""The simulator's step-level behaviour: hidden step validity, the step verifier's noise, the
continuation role, and whole proofs assembled from steps."""

from __future__ import annotations

import asyncio

import pytest

from proofloop.bench.processbench import Sample, first_error, first_error_metrics
from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.protocol import verification_messages
from proofloop.protocol.stepwise import continuation_messages, parse_next_step, step_verification_messages
from proofloop.roles.steps import propose_steps, verify_step
from proofloop.sim import SimModel, make_problems, problem_difficulty
from proofloop.sim.model import SimConfig, p_correct
from proofloop.sim.provider import SimProvider
from proofloop.sim.steps import (ASSEMBLED_INVALID_Q, ASSEMBLED_VALID_Q, StepSimConfig, assembled_quality,
                                 seen_accuracy, step_markers, step_validity_prob)

SIM = SimModel(seed=3)
BIG = 200_000


def write_proof(problem: str, salt: int) -> list[str]:
    """A proof written step by step by the sim, always taking the first proposal."""
    steps: list[str] = []
    for _ in range(12):
        out = SIM.respond(continuation_messages(problem, steps), n=1, max_tokens=BIG, first_sample=salt)[0]
        parsed = parse_next_step(out.text, reasoning=out.reasoning, finish_reason=out.finish_reason)
        assert parsed.status.value == "ok", parsed.cause
        steps.append(parsed.step)
        if parsed.complete:
            return steps
    raise AssertionError("the sim never completed a proof")


def test_steps_are_numbered_and_proofs_end_at_their_length():
    problem = make_problems(1, seed=5)[0]
    steps = write_proof(problem, 0)
    found = [step_markers(s)[0] for s in steps]
    assert [int(m["i"]) for m in found] == list(range(1, len(steps) + 1))
    assert int(found[0]["of"]) == len(steps) and 4 <= len(steps) <= 7
    assert write_proof(problem, 0) == steps  # deterministic


def test_valid_whole_proofs_as_often_as_the_generator_is_correct():
    problems = make_problems(60, seed=11, mix="basic")
    valid = [all(m["v"] == "1" for s in write_proof(p, 0) for m in step_markers(s)) for p in problems]
    expected = sum(p_correct(problem_difficulty(p)) for p in problems) / len(problems)
    assert abs(sum(valid) / len(valid) - expected) < 0.2


def test_step_verifier_accuracy_matches_its_parameters():
    config = StepSimConfig()
    problem = make_problems(1, seed=2)[0]
    counts = {"1": [0, 0], "0": [0, 0]}
    for salt in range(40):
        steps = write_proof(problem, salt)
        for i, step in enumerate(steps):
            v = step_markers(step)[0]["v"]
            outs = SIM.respond(step_verification_messages(problem, steps[:i], step), n=5, max_tokens=BIG)
            scores = [float(o.text.rsplit("boxed{", 1)[1].rstrip("}")) for o in outs]
            counts[v][0] += sum(s == (1.0 if v == "1" else 0.0) for s in scores)
            counts[v][1] += len(scores)
    assert abs(counts["1"][0] / counts["1"][1] - seen_accuracy(config, True)) < 0.06
    assert counts["0"][1] > 50
    assert abs(counts["0"][0] / counts["0"][1] - seen_accuracy(config, False)) < 0.1


def test_one_sample_first_error_f1_is_near_the_stated_target():
    """The free parameters were set for a one-sample F1 near 0.7 (sim/steps.py)."""
    samples, preds = [], {}
    for j, problem in enumerate(make_problems(40, seed=8)):
        steps = write_proof(problem, 0)
        truth = [m["v"] == "1" for s in steps for m in step_markers(s)]
        label = truth.index(False) if False in truth else -1
        scores = []
        for i, step in enumerate(steps):
            out = SIM.respond(step_verification_messages(problem, steps[:i], step), n=1, max_tokens=BIG)[0]
            scores.append(float(out.text.rsplit("boxed{", 1)[1].rstrip("}")))
        samples.append(Sample(str(j), problem, steps, label))
        preds[str(j)] = first_error(scores)
    m = first_error_metrics(samples, preds)
    assert m.n_error > 5 and m.n_correct > 5
    assert 0.45 < m.f1 < 0.9


def test_assembled_proofs_are_judged_by_their_steps():
    good = "<!-- sim:step id=a i=1 of=2 v=1 --> x\n<!-- sim:step id=b i=2 of=2 v=1 --> y"
    bad = good.replace("id=b i=2 of=2 v=1", "id=b i=2 of=2 v=0")
    assert assembled_quality(good)[1] == ASSEMBLED_VALID_Q and assembled_quality(bad)[1] == ASSEMBLED_INVALID_Q
    assert assembled_quality("no steps") is None
    scores = lambda proof: [float(o.text.rsplit("boxed{", 1)[1].rstrip("}"))  # noqa: E731
                            for o in SIM.respond(verification_messages("P", proof), n=40, max_tokens=BIG)]
    assert sum(scores(good)) / 40 > sum(scores(bad)) / 40


@pytest.mark.parametrize("p_whole, steps", [(0.8, 4), (0.3, 6), (1.0, 5), (0.0, 4)])
def test_step_validity_prob_composes(p_whole, steps):
    assert step_validity_prob(p_whole, steps) ** steps == pytest.approx(max(p_whole, 1e-9))


def test_roles_over_the_sim_provider():
    model = Model(SimProvider(seed=1))
    problem = make_problems(1, seed=4)[0]
    proposals = asyncio.run(propose_steps(model, problem, [], k=3, sampling=Sampling(max_tokens=BIG)))
    assert [p.status.value for p in proposals] == ["ok"] * 3 and len({p.id for p in proposals}) == 3
    v = asyncio.run(verify_step(model, problem, [], proposals[0].step, n=4, sampling=Sampling(max_tokens=BIG)))
    assert len(v.valid) == 4 and v.proof_id.startswith("t-")
    assert SimConfig().steps == StepSimConfig()


def test_more_step_samples_locate_first_errors_better_but_not_perfectly():
    """Misjudged steps are misjudged by every sample (sim/steps.py), so F1 rises with n and stays below 1."""
    from proofloop.bench.step_eval import evaluate_first_errors

    samples = []
    for j, problem in enumerate(make_problems(120, seed=31)):
        steps = write_proof(problem, 0)
        truth = [step_markers(s)[0]["v"] == "1" for s in steps]
        samples.append(Sample(str(j), problem, steps, truth.index(False) if False in truth else -1))
    f1 = {n: asyncio.run(evaluate_first_errors(Model(SimProvider(seed=n), max_concurrency=64), samples, n=n))[1].f1
          for n in (1, 8)}
    assert 0.5 < f1[1] < f1[8] < 0.95

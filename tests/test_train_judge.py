"""Judged rewards: judge scores come from a served model through the model layer, completions
are judged concurrently, a broken completion costs no call, a failed judge is no reward."""

from __future__ import annotations

import asyncio

import pytest

from proofloop.errors import BadRequestError
from proofloop.models.base import Completion, ProviderResponse, Sampling, Usage
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.wrapper import Model
from proofloop.protocol import parse_proof
from proofloop.roles import generate
from proofloop.sim import make_problems
from proofloop.sim.provider import SimProvider
from proofloop.train.judge import Judge
from proofloop.train.rewards import ALPHA, BETA, score_reward

PROBLEM = make_problems(1, seed=1, mix="hard")[0]  # a hard simulated problem: proofs of mixed quality
LONG = Sampling(seed=0, max_tokens=200_000)


def sim_judge(n: int = 3) -> Judge:
    return Judge(Model(SimProvider(seed=2), cache=InMemoryCallCache()), n=n, sampling=LONG)


def sim_outputs(k: int = 6) -> list[str]:
    proofs = asyncio.run(generate(Model(SimProvider(seed=5)), PROBLEM, sampling=LONG, n=k))
    return [p.raw for p in proofs]


def test_generator_rewards_equal_the_formula_on_the_judges_own_scores():
    judge, outputs = sim_judge(), sim_outputs()
    rewards = asyncio.run(judge.generator_rewards(PROBLEM, outputs))
    assert len(rewards) == len(outputs) and judge.stats.completions == len(outputs)
    for output, r in zip(outputs, rewards):
        parsed = parse_proof(output)
        # asked again, the judges answer from the call cache: the same scores the reward used
        proof_score = asyncio.run(judge.proof_score(PROBLEM, parsed.solution))
        rating = asyncio.run(judge.rating(PROBLEM, parsed.solution, parsed.self_evaluation))
        assert r.components == {"format": 1.0, "proof": proof_score, "self_score": parsed.self_score,
                                "self_evaluation": pytest.approx(score_reward(parsed.self_score, proof_score) * rating)}
        assert r.total == pytest.approx(ALPHA * proof_score + BETA * r.components["self_evaluation"])
    assert len({r.total for r in rewards}) > 1  # the simulated proofs differ in quality


def test_a_broken_completion_costs_no_judge_call():
    judge = sim_judge()
    [r] = asyncio.run(judge.generator_rewards(PROBLEM, ["no sections at all"]))
    assert (r.total, judge.stats.format_failures) == (0.0, 1)
    assert judge.model.accounting.total.calls == 0


class Failing:
    name, model, max_n = "failing", "failing-1", None

    async def complete(self, messages, sampling, n):
        raise BadRequestError("the judge refuses", status=400)


def test_a_failed_judge_leaves_the_completion_without_a_reward():
    judge = Judge(Model(Failing()), n=2)
    outputs = sim_outputs(3)
    rewards = asyncio.run(judge.generator_rewards(PROBLEM, outputs))
    assert [r.total for r in rewards] == [None] * 3 and all("failed" in r.reason for r in rewards)
    assert (judge.stats.failed_judgements, judge.stats.format_failures) == (3, 0)


class Barrier:
    """Answers only once `expected` requests are in flight together: judging one completion
    after another would never get there (and the test fails at its bound)."""

    name, model, max_n = "barrier", "barrier-1", None

    def __init__(self, expected: int):
        self.expected, self.waiting, self.all_in = expected, 0, asyncio.Event()

    async def complete(self, messages, sampling, n):
        self.waiting += 1
        if self.waiting >= self.expected:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), timeout=60)
        text = ("Here is my evaluation of the solution: fine.\n\n"
                "Based on my evaluation, the final overall score should be: \\boxed{1}")
        if '"solution evaluation"' in messages[-1]["content"]:
            text = ('Here is my analysis of the "solution evaluation": fine.\n\n'
                    'Based on my analysis, I will rate the "solution evaluation" as: \\boxed{1}')
        return ProviderResponse([Completion(text) for _ in range(n)], Usage(10, 10))


def test_all_completions_of_a_step_are_judged_at_once():
    outputs = sim_outputs(4)
    provider = Barrier(expected=2 * 4)  # per completion: one verify request (n samples), one meta request
    judge = Judge(Model(provider, max_concurrency=64), n=2)
    rewards = asyncio.run(judge.generator_rewards(PROBLEM, outputs))
    assert all(r.total is not None for r in rewards) and provider.all_in.is_set()


def test_verifier_rewards_with_and_without_the_meta_verifier():
    judge = sim_judge()
    proof = parse_proof(sim_outputs(1)[0]).solution
    analyses = [("Here is my evaluation of the solution: step 2 is wrong.\n\n"
                 f"Based on my evaluation, the final overall score should be: \\boxed{{{s}}}") for s in ("0", "1")]
    plain = asyncio.run(judge.verifier_rewards(PROBLEM, proof, analyses + ["garbled"], target=0.0))
    assert [r.total for r in plain] == [1.0, 0.0, 0.0] and judge.model.accounting.total.calls == 0
    judged = asyncio.run(judge.verifier_rewards(PROBLEM, proof, analyses + ["garbled"], target=0.0, with_meta=True))
    assert judge.model.accounting.total.calls == 2  # one rating per well-formed analysis
    for before, after in zip(plain[:2], judged[:2]):
        assert after.total == pytest.approx(before.total * after.components["meta"])
    assert judged[2].total == 0.0


@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)])
def test_the_judge_weighs_the_generator_reward_with_its_own_alpha_and_beta(alpha, beta):
    judge, outputs = sim_judge(), sim_outputs(3)
    judge.alpha, judge.beta = alpha, beta
    for r in asyncio.run(judge.generator_rewards(PROBLEM, outputs)):
        c = r.components
        assert r.total == pytest.approx(c["format"] * (alpha * c["proof"] + beta * c["self_evaluation"]))

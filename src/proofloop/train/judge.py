"""Judged rewards: the rewards of train/rewards.py with their judge scores from served models.

The generator's reward needs the verifier's score of each proof (the mean of n analyses) and
the meta-verifier's rating of its self evaluation; the verifier's reward with
meta-verification needs the meta-verifier's rating of each analysis. Both go through the
model layer (retried, cached, concurrency-capped per endpoint), once per completion, and all
completions of a step are judged at once. A completion that breaks its format costs no judge
call; a judge that fails leaves its completion without a reward (total None) and is counted.

    >>> import asyncio
    >>> from proofloop.models.base import Sampling
    >>> from proofloop.models.wrapper import Model
    >>> from proofloop.sim.provider import SimProvider
    >>> judge = Judge(Model(SimProvider(seed=1)), n=2, sampling=Sampling(seed=0, max_tokens=200_000))
    >>> out = ("## Solution\\n\\n1 + 1 = 2 by the definition of 2.\\n\\n## Self Evaluation\\n\\n"
    ...        "Here is my evaluation of the solution: it is complete.\\n\\n"
    ...        "Based on my evaluation, the final overall score should be: \\\\boxed{1}")
    >>> [reward] = asyncio.run(judge.generator_rewards("Prove that 1 + 1 = 2.", [out, ]))
    >>> sorted(reward.components), judge.stats.failed_judgements
    (['format', 'proof', 'self_evaluation', 'self_score'], 0)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.protocol import Templates, parse_proof
from proofloop.roles import meta_verify, verify
from proofloop.train.rewards import ALPHA, BETA, Reward, generator_reward, verifier_reward


@dataclass
class JudgeStats:
    """What judging cost and how often it failed (a failed judgement is no reward, not 0)."""

    completions: int = 0
    format_failures: int = 0  # broken outputs: reward 0, no judge call
    failed_judgements: int = 0  # a judge returned no usable score: no reward


@dataclass
class Judge:
    """The verifier (n analyses per proof) and meta-verifier (one rating) that score a step's
    completions. One model plays both roles, as in the paper."""

    model: Model
    n: int = 4
    sampling: Sampling = field(default_factory=Sampling)
    templates: Templates | None = None
    stats: JudgeStats = field(default_factory=JudgeStats)
    alpha: float = ALPHA  # the generator reward's weights: proof score, self evaluation
    beta: float = BETA

    async def proof_score(self, problem: str, solution: str) -> float | None:
        """The verifier's mean score of a proof (None: no analysis gave a score)."""
        v = await verify(self.model, problem, solution, sampling=self.sampling, n=self.n, templates=self.templates)
        return v.mean_score

    async def rating(self, problem: str, solution: str, analysis: str) -> float | None:
        """The meta-verifier's rating of an analysis of a proof (None: it gave none)."""
        [r] = await meta_verify(self.model, problem, solution, analysis, sampling=self.sampling, m=1,
                                templates=self.templates)
        return r.rating if r.ok else None

    async def generator_reward(self, problem: str, output: str, *, alpha: float | None = None,
                               beta: float | None = None) -> Reward:
        """The generator's reward for one output; the verifier and the meta-verifier judge it
        at the same time (neither needs the other's answer). Weights: the judge's unless given."""
        alpha, beta = self.alpha if alpha is None else alpha, self.beta if beta is None else beta
        parsed = parse_proof(output)
        if parsed.status.value != "ok":
            return self._count(generator_reward(output, None, None, alpha=alpha, beta=beta))  # no calls
        proof_score, rating = await asyncio.gather(
            self.proof_score(problem, parsed.solution or ""),
            self.rating(problem, parsed.solution or "", parsed.self_evaluation or ""))
        return self._count(generator_reward(output, proof_score, rating, alpha=alpha, beta=beta))

    async def generator_rewards(self, problem: str, outputs: list[str]) -> list[Reward]:
        """The generator's rewards for one prompt's completions, judged concurrently."""
        return list(await asyncio.gather(*(self.generator_reward(problem, o) for o in outputs)))

    async def verifier_rewards(self, problem: str, proof: str, outputs: list[str], target: float, *,
                               with_meta: bool = False) -> list[Reward]:
        """The verifier's rewards for analyses of `proof` (expert score `target`); with
        `with_meta`, each analysis that keeps its format is also rated by the meta-verifier."""
        return list(await asyncio.gather(*(self.verifier_reward(problem, proof, o, target, with_meta=with_meta)
                                           for o in outputs)))

    async def verifier_reward(self, problem: str, proof: str, output: str, target: float, *,
                              with_meta: bool = False) -> Reward:
        """The verifier's reward for one analysis of `proof` (see verifier_rewards)."""
        plain = verifier_reward(output, target)
        if not with_meta or plain.components.get("format") == 0.0:  # a broken analysis costs no call
            return self._count(plain)
        rating = await self.rating(problem, proof, output)
        return self._count(verifier_reward(output, target, meta=rating, needs_meta=True))

    def _count(self, reward: Reward) -> Reward:
        self.stats.completions += 1
        if reward.components.get("format") == 0.0:
            self.stats.format_failures += 1
        elif reward.total is None:
            self.stats.failed_judgements += 1
        return reward

"""verl's reward function: `compute_score` scores one rollout with the rewards of
train/rewards.py, in the signature verl's reward managers call. Pure module use: it imports
no torch and no verl, so verl loads it by name (`custom_reward_function.path=
pkg://proofloop.train.verl`, `name=compute_score`) in its own environment (`make verl-env`).

What verl hands over, and what comes back:

- the task is `extra_info["task"]` (verifier, meta-verifier or generator), as proofloop's verl
  writer puts it (train/datasets.py `verl_row`); `ground_truth` is the expert score (0, 0.5
  or 1) for the verifier and meta-verifier, unused for the generator;
- the result is a dict: "score" is the reward, and one `r_<component>` entry per component
  of train/rewards.py (format, score, meta, proof, self_score, self_evaluation) plus
  "judge_failed" (0 or 1), which verl logs beside the reward. Every call returns the same
  keys (verl stacks them into one array per key): a component that does not apply is NaN.
- the generator's reward (and the verifier's with `with_meta`) is judged: the verifier and
  meta-verifier are served models, called through proofloop's model layer. Under verl that
  is its generative reward model (`reward.reward_model.enable=True`: verl serves it with
  vLLM or SGLang and passes the router's address as `reward_router_address`); or any
  OpenAI-compatible server named by `judge_base_url` in `reward_kwargs` (several replicas:
  comma-separated or a list).
- a failed judge is no reward, not 0: "score" is NaN and "judge_failed" 1. verl's own GRPO
  would spread a NaN over the whole group, so the recipe uses the advantage estimator
  `grpo_judged` (train/verl_grpo.py), which leaves such completions out of their group's
  mean and standard deviation and gives them an advantage of 0. Failures are counted in
  `STATS` and logged with the running count.
- compute_score is a coroutine, as verl's reward loop wants it; `compute_score_sync` is the
  same for verl's batch-era reward managers, which do not await.

    >>> import asyncio
    >>> ok = ("Here is my evaluation of the solution: fine.\\n\\n"
    ...       "Based on my evaluation, the final overall score should be: \\\\boxed{0.5}")
    >>> out = asyncio.run(compute_score("proofloop/labels", ok, 1.0, {"task": "verifier"}))
    >>> out["score"], out["r_format"], out["r_score"], out["judge_failed"]
    (0.5, 1.0, 0.5, 0.0)
    >>> verl_scores(reward_for("verifier", ok, 1.0, meta=None, needs_meta=True))["score"]  # a failed judge
    nan
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from proofloop.errors import UserInputError
from proofloop.models.base import Sampling
from proofloop.models.openai_provider import OpenAIProvider
from proofloop.models.replicas import ReplicaSet, split_base_urls
from proofloop.models.wrapper import Model
from proofloop.protocol import parse_proof
from proofloop.protocol.types import SCORES
from proofloop.train.judge import Judge
from proofloop.train.rewards import ALPHA, BETA, Reward, generator_reward, meta_verifier_reward, verifier_reward

log = logging.getLogger(__name__)

TASKS = ("verifier", "meta-verifier", "generator")
COMPONENTS = ("format", "score", "meta", "proof", "self_score", "self_evaluation")
KEYS = ("score", *(f"r_{name}" for name in COMPONENTS), "judge_failed")
NOT_APPLICABLE = math.nan  # a component this task (or this outcome) does not have
NO_REWARD = math.nan  # a failed judge: the completion is left out (train/verl_grpo.py)

# What this process scored so far (verl runs several reward workers: each logs its own).
STATS: Counter[str] = Counter()


def parse_target(ground_truth: Any) -> float:
    """The expert score in `reward_model.ground_truth`: 0, 0.5 or 1, as a number or a string
    (parquet and JSON round trips keep either).

    >>> parse_target(1), parse_target("0.5"), parse_target(" 0 ")
    (1.0, 0.5, 0.0)
    """
    try:
        value = float(str(ground_truth).strip()) if isinstance(ground_truth, str) else float(ground_truth)
    except (TypeError, ValueError):
        value = math.nan
    if value not in SCORES:
        raise UserInputError(f"reward_model.ground_truth must be 0, 0.5 or 1 for this task, got {ground_truth!r}")
    return value


def task_of(extra_info: Mapping[str, Any] | None) -> str:
    """The task a row trains (`extra_info["task"]`; "meta_verifier" is read as "meta-verifier")."""
    task = str((extra_info or {}).get("task") or "").replace("_", "-")
    if task not in TASKS:
        raise UserInputError(f"extra_info.task must be one of {', '.join(TASKS)}, got {task or 'nothing'!r} "
                             "(write the data with proofloop's verl writer, train/datasets.py verl_row)")
    return task


def reward_for(task: str, solution_str: str, target: float | None, *, proof_score: float | None = None,
               self_eval_meta: float | None = None, meta: float | None = None, needs_meta: bool = False,
               alpha: float = ALPHA, beta: float = BETA) -> Reward:
    """The pure reward of one rollout, given the judges' scores (None: that judge failed)."""
    if task == "generator":
        return generator_reward(solution_str, proof_score, self_eval_meta, alpha=alpha, beta=beta)
    if target is None:
        raise UserInputError(f"the {task} task needs an expert score in reward_model.ground_truth")
    score = verifier_reward if task == "verifier" else meta_verifier_reward
    return score(solution_str, target, meta=meta, needs_meta=needs_meta)


def verl_scores(reward: Reward) -> dict[str, float]:
    """The dict verl's reward manager reads: "score" and every component under a fixed key."""
    out = {"score": NO_REWARD if reward.total is None else float(reward.total)}
    out.update({f"r_{name}": float(reward.components.get(name, NOT_APPLICABLE)) for name in COMPONENTS})
    out["judge_failed"] = 1.0 if reward.total is None else 0.0
    return out


def record(reward: Reward, where: str) -> Reward:
    """Count the outcome; log a failed judge (its completion is excluded) with the running count."""
    STATS["completions"] += 1
    if reward.components.get("format") == 0.0:
        STATS["format_failures"] += 1
    elif reward.total is None:
        STATS["failed_judgements"] += 1
        log.warning("no reward for %s (excluded from its group): %s; %d of %d completions so far", where,
                    reward.reason, STATS["failed_judgements"], STATS["completions"])
    return reward


# The judges of each event loop (their HTTP clients belong to the loop they were made in): verl's
# reward worker keeps one loop; a loop that ends (compute_score_sync) takes its judges with it.
JUDGES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], Judge]] = \
    weakref.WeakKeyDictionary()


async def served_model(base_urls: Sequence[str]) -> str:
    """The first model the first server that answers lists (verl's reward model serves exactly
    one; replicas serve the same one, so one that is down does not stop the others)."""
    import openai  # a core dependency; imported here because only a judge without a model name needs it

    for i, base_url in enumerate(base_urls):
        last = i + 1 == len(base_urls)  # only the last replica gets the client's own retries
        try:
            async with openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=2 if last else 0) as client:
                page = await client.models.list()
        except openai.APIConnectionError:
            if last:
                raise
            log.warning("judge server %s did not answer for its model list; asking the next replica", base_url)
            continue
        if not page.data:
            raise UserInputError(f"the judge server at {base_url} lists no model: set reward_kwargs.judge_model")
        return page.data[0].id
    raise UserInputError("no judge server named")


async def judge_for(*, reward_router_address: str | None, judge_base_url: str | Sequence[str] | None,
                    judge_model: str | None, judge_n: int, judge_max_tokens: int, judge_temperature: float,
                    judge_concurrency: int) -> Judge:
    """The verifier/meta-verifier behind verl's reward-model router, or at `judge_base_url`:
    one server, or replicas of one model (comma-separated or a list), spread by load with
    each prompt kept on one replica (models/replicas.py); `judge_concurrency` is then per
    replica."""
    urls = split_base_urls(judge_base_url) or ([f"http://{reward_router_address}/v1"] if reward_router_address else [])
    if not urls:
        raise UserInputError("this task is judged: enable verl's generative reward model "
                             "(reward.reward_model.enable=True) or set reward_kwargs.judge_base_url")
    judges = JUDGES.setdefault(asyncio.get_running_loop(), {})
    key = (tuple(urls), judge_model, judge_n, judge_max_tokens, judge_temperature, judge_concurrency)
    if key not in judges:
        name = judge_model or await served_model(urls)
        members = [OpenAIProvider(name, base_url=url) for url in urls]
        if len(members) == 1:
            model = Model(members[0], max_concurrency=judge_concurrency)
        else:
            replicas = ReplicaSet(members)
            model = Model(replicas, max_concurrency=replicas.cap_each(judge_concurrency))
        sampling = Sampling(temperature=judge_temperature, max_tokens=judge_max_tokens)
        judges[key] = Judge(model, n=judge_n, sampling=sampling)
    return judges[key]


async def generator_judged(judge: Judge, problem: str, output: str, *, alpha: float, beta: float) -> Reward:
    """The generator's reward with the verifier's mean score of the proof and the meta-verifier's
    rating of the self evaluation, both asked at once (None from either: no reward)."""
    parsed = parse_proof(output)
    proof_score, rating = await asyncio.gather(
        judge.proof_score(problem, parsed.solution or ""),
        judge.rating(problem, parsed.solution or "", parsed.self_evaluation or ""))
    return generator_reward(output, proof_score, rating, alpha=alpha, beta=beta)


async def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None, *,
                        reward_router_address: str | None = None, judge: Judge | None = None,
                        judge_base_url: str | Sequence[str] | None = None, judge_model: str | None = None,
                        judge_n: int = 4, judge_max_tokens: int = 65536, judge_temperature: float = 1.0,
                        judge_concurrency: int = 64, with_meta: bool = False, alpha: float = ALPHA, beta: float = BETA,
                        **_verl_extras: Any) -> dict[str, float]:
    """verl's reward function for one rollout. The keyword arguments after `extra_info` come
    from `custom_reward_function.reward_kwargs` (verl adds `reward_router_address` and
    `reward_model_tokenizer` when its reward model is on); `judge` is for callers in Python."""
    extra_info = extra_info or {}
    task = task_of(extra_info)
    where = f"{data_source} {task} row {extra_info.get('id', '?')}"
    judged = task == "generator" or (task == "verifier" and with_meta)
    target = None if task == "generator" else parse_target(ground_truth)
    pure = reward_for(task, solution_str, target, alpha=alpha, beta=beta)
    if not judged or pure.components.get("format") == 0.0:  # a broken output costs no judge call
        return verl_scores(record(pure, where))
    judge = judge or await judge_for(
        reward_router_address=reward_router_address, judge_base_url=judge_base_url, judge_model=judge_model,
        judge_n=judge_n, judge_max_tokens=judge_max_tokens, judge_temperature=judge_temperature,
        judge_concurrency=judge_concurrency)
    problem = str(extra_info.get("problem") or "")
    if not problem.strip():
        raise UserInputError(f"{where}: a judged task needs the problem in extra_info.problem")
    if task == "generator":
        reward = await generator_judged(judge, problem, solution_str, alpha=alpha, beta=beta)
    else:
        proof = extra_info.get("proof")
        if not proof:
            raise UserInputError("with_meta needs the proof in extra_info.proof (the meta-verifier rates the "
                                 "analysis of that proof)")
        [reward] = await judge.verifier_rewards(problem, str(proof), [solution_str], target, with_meta=True)
    return verl_scores(record(reward, where))



def compute_score_sync(data_source: str, solution_str: str, ground_truth: Any, extra_info: dict | None = None,
                       **kwargs: Any) -> dict[str, float]:
    """compute_score for callers that cannot await: verl's batch-era reward managers
    (verl.workers.reward_manager), `custom_reward_function.name=compute_score_sync`. Each call
    runs its own event loop, so the judges' connections are not reused between rollouts: prefer
    compute_score under verl's reward loop."""
    return asyncio.run(compute_score(data_source, solution_str, ground_truth, extra_info, **kwargs))

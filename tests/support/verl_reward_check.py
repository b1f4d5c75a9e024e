"""verl's own reward manager calls proofloop's compute_score: run in verl's environment
(`make verl-env`) by tests/test_train_verl.py, which checks what this prints (one JSON object).

verl loads the reward function the way its trainer does (`load_reward_manager` on the trainer
config that recipes/verl/grpo.yaml composes over verl's own) into its reward-loop
NaiveRewardManager; a batch of rollouts is built as verl's DataProto on CPU with a
character-level tokenizer made here (no download); the generator rows are judged by a
scripted in-process verifier (one problem's judge fails). Then verl computes the advantages
with `grpo_judged` (registered through VERL_USE_EXTERNAL_MODULES) and with its own `grpo`.
verl's batch-era manager scores the same batch through compute_score_sync, and verl's
RLHFDataset reads parquet rows written with proofloop's verl layout.

    PYTHONPATH=src:tests VERL_USE_EXTERNAL_MODULES=proofloop.train.verl_grpo \\
        .venv-verl/bin/python tests/support/verl_reward_check.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from verl import DataProto
from verl.experimental.reward_loop.reward_manager import NaiveRewardManager
from verl.trainer.ppo.ray_trainer import compute_advantage
from verl.trainer.ppo.reward import get_custom_reward_fn, load_reward_manager
from verl.workers.reward_manager import NaiveRewardManager as BatchNaiveRewardManager
from verl.utils.config import validate_config
from verl.utils.dataset.rl_dataset import RLHFDataset

from proofloop.errors import BadRequestError
from proofloop.models.base import Completion, ProviderResponse, Usage
from proofloop.models.wrapper import Model
from proofloop.train import verl as reward
from proofloop.train.datasets import generator_examples, meta_verifier_examples, verifier_examples, verl_row
from proofloop.train.judge import Judge

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "verl"
VERIFICATION = ("Here is my evaluation of the solution: every step holds.\n\n"
                "Based on my evaluation, the final overall score should be: \\boxed{%s}")
META = ('Here is my analysis of the "solution evaluation": it is accurate.\n\n'
        'Based on my analysis, I will rate the "solution evaluation" as: \\boxed{%s}')
PROOF = "## Solution\n\n1 + 1 = 2 by the definition of 2.\n\n## Self Evaluation\n\n" + VERIFICATION

# (task, ground truth, problem, response, group): the group is the prompt's uid for GRPO.
ROWS = [
    ("verifier", 1.0, "Prove 1 + 1 = 2.", VERIFICATION % "0.5", "v"),
    ("verifier", "0", "Prove 1 + 1 = 2.", "I am not sure.", "v"),
    ("meta-verifier", 1.0, "Prove 1 + 1 = 2.", META % "1", "m"),
    ("generator", None, "Prove 1 + 1 = 2.", PROOF % "0.5", "g"),
    ("generator", None, "FAIL: the judge refuses this one.", PROOF % "1", "g"),
    ("generator", None, "Prove 1 + 1 = 2.", PROOF % "1", "g"),
    ("generator", None, "Prove 1 + 1 = 2.", "no sections", "g"),
]


class ScriptedJudge:
    """Verifies every proof with 1 and rates every analysis 1; refuses problems marked FAIL."""

    name, model, max_n = "scripted", "scripted-judge", None

    async def complete(self, messages, sampling, n):
        text = messages[-1]["content"]
        if "FAIL:" in text:
            raise BadRequestError("the judge refuses", status=400)
        answer = META % "1" if '"solution evaluation"' in text else VERIFICATION % "1"
        return ProviderResponse([Completion(answer) for _ in range(n)], Usage(10, 10))


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per character of the rows (plus padding and end of sequence), decoding back
    to the exact text."""
    chars = sorted({c for row in ROWS for c in row[2] + row[3]})
    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")
    out.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant: "
    return out


def batch(tokenizer: PreTrainedTokenizerFast) -> DataProto:
    """verl's rollout batch: left-padded prompts, right-padded responses, one attention mask."""
    prompts = [tokenizer.encode(r[2]) for r in ROWS]
    responses = [tokenizer.encode(r[3]) + [tokenizer.eos_token_id] for r in ROWS]
    p_len, r_len = max(map(len, prompts)), max(map(len, responses))
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (p_len - len(p)) + p for p in prompts])
    response_ids = torch.tensor([r + [pad] * (r_len - len(r)) for r in responses])
    mask = torch.tensor([[0] * (p_len - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (r_len - len(r))
                         for p, r in zip(prompts, responses)])
    non_tensor = {
        "data_source": np.array(["proofloop/check"] * len(ROWS), dtype=object),
        "reward_model": np.array([{"style": "model", "ground_truth": r[1]} for r in ROWS], dtype=object),
        "extra_info": np.array([{"id": str(i), "task": r[0], "problem": r[2]} for i, r in enumerate(ROWS)],
                               dtype=object),
        "uid": np.array([r[4] for r in ROWS], dtype=object),
    }
    tensors = TensorDict({"prompts": prompt_ids, "responses": response_ids, "attention_mask": mask,
                          "input_ids": torch.cat([prompt_ids, response_ids], 1)}, batch_size=len(ROWS))
    return DataProto(batch=tensors, non_tensor_batch=non_tensor)


def recipe(name: str) -> DictConfig:
    """recipes/verl/NAME.yaml composed over verl's own ppo_trainer config, as main_ppo composes it."""
    with initialize_config_dir(config_dir=str(RECIPE), version_base=None):
        return compose(name, overrides=["actor_rollout_ref.model.path=/models/policy",
                                        "reward.reward_model.model_path=/models/verifier"])


def recipe_summary(cfg: DictConfig) -> dict:
    """What the test checks of a composed recipe, after verl's own config checks passed on it."""
    validate_config(cfg, use_reference_policy=True, use_critic=False)  # raises on a bad combination
    plain = OmegaConf.to_container(cfg, resolve=False)
    return {"adv_estimator": plain["algorithm"]["adv_estimator"],
            "reward_function": plain["reward"]["custom_reward_function"],
            "reward_model": plain["reward"]["reward_model"]["enable"],
            "loss_agg_mode": plain["actor_rollout_ref"]["actor"]["loss_agg_mode"],
            "train_files": plain["data"]["train_files"],
            "env": plain["ray_kwargs"]["ray_init"]["runtime_env"]["env_vars"]}


def advantages(data: DataProto, scores: torch.Tensor, estimator: str) -> list[float]:
    data = DataProto(batch=data.batch.clone(), non_tensor_batch=dict(data.non_tensor_batch))
    data.batch["token_level_rewards"] = scores
    data.batch["response_mask"] = data.batch["attention_mask"][:, data.batch["prompts"].shape[1]:]
    out = compute_advantage(data, adv_estimator=estimator, num_repeat=1, config=OmegaConf.create({}))
    return out.batch["advantages"][:, 0].tolist()


def score_batch_era(grpo: DictConfig, tokenizer: PreTrainedTokenizerFast, data: DataProto, judge: Judge) -> dict:
    """verl's batch-era NaiveRewardManager (verl.workers.reward_manager), which calls its
    function without awaiting it: compute_score_sync, loaded by verl's own loader."""
    cfg = OmegaConf.merge(grpo, {"reward": {"custom_reward_function": {"name": "compute_score_sync"}}})
    manager = BatchNaiveRewardManager(tokenizer, num_examine=0,
                                      compute_score=partial(get_custom_reward_fn(cfg), judge=judge))
    out = manager(data, return_dict=True)
    return {"sum": out["reward_tensor"].sum(1).tolist(), "judge_failed": list(out["reward_extra_info"]["judge_failed"])}


def dataset_round_trip(tokenizer: PreTrainedTokenizerFast, judge: Judge, folder: Path) -> list[dict]:
    """Rows of proofloop's verl writer (datasets.verl_row) in parquet, read back by verl's own
    RLHFDataset, and what compute_score makes of a response with what verl read."""
    labelled = [{"id": "v1", "problem": ROWS[0][2], "proof": "By definition.", "status": "labelled", "score": 0.5}]
    rated = [{"id": "m1", "problem": ROWS[0][2], "proof": "By definition.", "analysis": VERIFICATION % "0",
              "rating": 1.0}]
    sets = {"verifier": (verifier_examples(labelled), VERIFICATION % "1"),
            "meta-verifier": (meta_verifier_examples(rated), META % "0.5"),
            "generator": (generator_examples([{"id": "g1", "problem": ROWS[0][2]}]), PROOF % "0.5")}
    settings = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 1_000_000, "truncation": "error",
                                 "filter_overlong_prompts": False})
    out = []
    for task, (examples, response) in sets.items():
        path = folder / f"{task}.parquet"
        pq.write_table(pa.Table.from_pylist([verl_row(e, data_source="proofloop/labels") for e in examples]), path)
        item = RLHFDataset(data_files=str(path), tokenizer=tokenizer, config=settings)[0]
        scored = reward.compute_score_sync(item["data_source"], response, item["reward_model"]["ground_truth"],
                                           item["extra_info"], judge=judge)
        out.append({"task": task, "read_task": item["extra_info"]["task"],
                    "ground_truth": item["reward_model"]["ground_truth"], "score": scored["score"]})
    return out


async def score_all(manager: NaiveRewardManager, data: DataProto) -> list[dict]:
    return await asyncio.gather(*(manager.run_single(data[i:i + 1]) for i in range(len(data))))


def main(folder: str) -> None:
    tokenizer = char_tokenizer()
    data = batch(tokenizer)
    grpo, generator = recipe("grpo"), recipe("generator")
    loaded = load_reward_manager(grpo, tokenizer)  # verl's own loading of the function the recipe names
    judge = Judge(Model(ScriptedJudge(), max_concurrency=64), n=2)
    # The scripted judge is a Python object: hand it to the same function verl loaded.
    manager = NaiveRewardManager(grpo, tokenizer, partial(loaded.compute_score, judge=judge))
    outputs = manager.loop.run_until_complete(score_all(manager, data))  # verl's worker runs it on this loop
    rm_scores = NaiveRewardManager.assemble_rm_scores(data, [o["reward_score"] for o in outputs])
    response_len = data.batch["attention_mask"][:, data.batch["prompts"].shape[1]:].sum(1)
    rewarded = [i for i, o in enumerate(outputs) if o["reward_score"] == o["reward_score"]]
    plain = advantages(data.select_idxs(rewarded), rm_scores[rewarded], "grpo")
    function = loaded.compute_score.args[0]  # verl wraps the loaded function with the reward_kwargs
    print(json.dumps({
        "manager": type(loaded).__name__, "function": f"{function.__module__}.{function.__name__}",
        "decoded": [tokenizer.decode(data.batch["responses"][i][:response_len[i]], skip_special_tokens=True)
                    for i in range(len(ROWS))],
        "responses": [r[3] for r in ROWS],
        "extra": [o["reward_extra_info"] for o in outputs],
        "rm_scores_sum": rm_scores.sum(1).tolist(),
        "rm_scores_at_last_token": [rm_scores[i, response_len[i] - 1].item() for i in range(len(ROWS))],
        "grpo_judged": advantages(data, rm_scores, "grpo_judged"),
        "batch_era": score_batch_era(grpo, tokenizer, data, judge),
        "dataset": dataset_round_trip(tokenizer, judge, Path(folder)),
        "grpo_on_rewarded": dict(zip(rewarded, plain)),
        "stats": dict(reward.STATS),
        "recipes": {"grpo": recipe_summary(grpo), "generator": recipe_summary(generator)},
    }))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(tmp))

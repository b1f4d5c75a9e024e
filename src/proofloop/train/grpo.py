"""GRPO on TRL for the three roles: the verifier, the meta-verifier and the generator, with the
paper's rewards (train/rewards.py) and, where a reward needs them, judges served through the
model layer (train/judge.py).

`train_grpo` runs TRL's GRPOTrainer with `grpo_config` (the paper's settings where TRL's
defaults differ), the task's reward function `TaskReward` (async: a step's completions are
judged concurrently), checkpoints every `save_steps` and resume from the last one. Every
reward is also written, with its components and the reason of a missing one, to
`<output_dir>/rewards.jsonl`, one line per completion:

    {"step": 0, "task": "verifier", "id": "p1", "total": 0.5,
     "components": {"format": 1.0, "score": 0.5}, "reason": null}

The paper's settings, as GRPOConfig keyword arguments (no TRL import needed to read them):

    >>> kw = grpo_kwargs("out", GrpoSettings(steps=10, vllm="server"), cpu=False)
    >>> kw["loss_type"], kw["beta"], kw["top_p"], kw["use_vllm"], kw["vllm_mode"]
    ('grpo', 0.04, 0.95, True, 'server')

A reward function scores a step's completions the way TRL calls it (the verifier's needs no judge):

    >>> import asyncio
    >>> ok = ("Here is my evaluation of the solution: fine. "
    ...       "Based on my evaluation, the final overall score should be: \\\\boxed{0.5}")
    >>> reward = TaskReward("verifier")
    >>> asyncio.run(reward(prompts=["p", "p"], completions=[ok, "no verdict"], target=[1.0, 1.0]))
    [0.5, 0.0]
    >>> reward.stats.format_failures
    1

Training (see tests/test_train_grpo.py; the CLI is `proofloop train verifier|meta-verifier|generator`):

    run = train_grpo("verifier", "path/to/model", rows, "out/verifier", settings=GrpoSettings(steps=200))
    run.steps, run.stats, run.rewards_path
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proofloop.errors import UserInputError
from proofloop.extras import require
from proofloop.protocol import Templates, proof_for_verification
from proofloop.rows import read_rows
from proofloop.train.datasets import (TASKS, generator_examples, meta_verifier_examples, trl_row,
                                      verifier_examples)
from proofloop.train.rewards import Reward, meta_verifier_reward, verifier_reward

if TYPE_CHECKING:  # the model layer loads only where a judge is built: the GPU check runs without it
    from proofloop.train.judge import Judge

VLLM_MODES = ("server", "colocate")
# The columns each task's input rows need (`proofloop label` output for the verifier; rated
# analyses for the meta-verifier; problems for the generator, `statement` accepted too).
NEEDED_COLUMNS = {"verifier": ("problem", "proof", "status", "score"),
                  "meta-verifier": ("problem", "proof", "analysis", "rating"),
                  "generator": ("problem",)}
REWARDS_FILE = "rewards.jsonl"


# ----------------------------------------------------------------------------- settings


@dataclass
class GrpoSettings:
    """What a GRPO run may change; everything else is `grpo_config`'s choice."""

    steps: int = 100  # optimizer steps in all (a resumed run continues up to this number)
    num_generations: int = 8  # the group: completions per prompt
    prompts_per_step: int = 1  # prompts per device per step (the batch is prompts x group)
    max_completion_length: int = 1024
    learning_rate: float = 1e-6  # DeepSeekMath's GRPO; also TRL's default
    kl: float = 0.04  # GRPO's KL coefficient (Shao et al. 2024); 0 drops the reference model
    save_steps: int = 50
    vllm: str | None = None  # None (generate with transformers), "server" or "colocate"
    vllm_server_url: str | None = None  # with "server": where `trl vllm-serve` listens (TRL: 0.0.0.0:8000)
    seed: int = 0
    use_cpu: bool | None = None  # None: the CPU when no GPU is visible
    report_to: str = "none"  # "tensorboard", "wandb", ... (TRL's report_to)
    overrides: dict[str, Any] = field(default_factory=dict)  # any other GRPOConfig field

    def __post_init__(self) -> None:
        for name in ("steps", "prompts_per_step", "max_completion_length", "save_steps"):
            if getattr(self, name) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise UserInputError(f"--num-generations must be at least 2 (GRPO compares a group), "
                                 f"got {self.num_generations}")
        if self.vllm is not None and self.vllm not in VLLM_MODES:
            raise UserInputError(f"--vllm must be one of {', '.join(VLLM_MODES)}, got {self.vllm!r}")
        if self.vllm_server_url and self.vllm != "server":
            raise UserInputError("--vllm-server-url goes with --vllm server")
        if self.kl < 0 or self.learning_rate <= 0:
            raise UserInputError("--kl must not be negative and --learning-rate must be positive")


def gpu_available() -> bool:
    torch = require("torch", "train", "proofloop train")
    return bool(torch.cuda.is_available())


def grpo_kwargs(output_dir: str | os.PathLike[str], settings: GrpoSettings, *, cpu: bool) -> dict[str, Any]:
    """TRL GRPOConfig's arguments: the paper's GRPO settings where TRL's defaults differ.

    DeepSeekMath-V2 trains every role with GRPO as defined in DeepSeekMath (Shao et al. 2024);
    TRL's defaults follow later variants, so these are set on purpose:
    - loss_type "grpo": each completion's token losses are averaged, then the group's
      completions (the paper's objective); TRL's default "dapo" averages over all tokens of
      the batch, weighting long completions more.
    - beta (`kl`) 0.04 with TRL's k3 estimator against the initial model: GRPO's KL penalty;
      TRL's default 0 trains without one.
    - scale_rewards "group": advantages are rewards minus the group mean over the group's
      standard deviation (TRL's default today; set so a change of default cannot drift us).
    - top_p 0.95 at temperature 1.0: the paper's sampling (DESIGN.md §2); TRL samples with
      top_p 1.0.
    - logging_steps 1: every step's reward and components are logged (TRL: every 10).
    Kept from TRL because they match GRPO: learning rate 1e-6, one policy update per batch
    (num_iterations 1), clipping epsilon 0.2, truncated completions kept in the loss.
    On CPU: use_cpu and fp32 (TRL turns bf16 on by default). vLLM: `use_vllm` with
    `vllm_mode` "server" (a `trl vllm-serve` process) or "colocate" (in the trainer).
    """
    if settings.vllm and cpu:
        raise UserInputError(f"--vllm {settings.vllm} needs a GPU; none is visible (drop --vllm to generate "
                             "with transformers)")
    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), max_steps=settings.steps, learning_rate=settings.learning_rate,
        loss_type="grpo", beta=settings.kl, scale_rewards="group", temperature=1.0, top_p=0.95,
        num_generations=settings.num_generations,
        per_device_train_batch_size=settings.num_generations * settings.prompts_per_step,
        max_completion_length=settings.max_completion_length,
        logging_steps=1, save_strategy="steps", save_steps=settings.save_steps, seed=settings.seed,
        report_to=settings.report_to, use_cpu=cpu, use_vllm=settings.vllm is not None)
    if settings.vllm:
        kwargs["vllm_mode"] = settings.vllm
    if settings.vllm_server_url:
        kwargs["vllm_server_base_url"] = settings.vllm_server_url
    if cpu:
        kwargs.update(bf16=False, fp16=False)
    kwargs.update(settings.overrides)
    return kwargs


def grpo_config(output_dir: str | os.PathLike[str], settings: GrpoSettings) -> Any:
    """TRL's GRPOConfig from `grpo_kwargs`, on the CPU when `settings.use_cpu` or no GPU."""
    trl = require("trl", "train", "proofloop train")
    cpu = settings.use_cpu if settings.use_cpu is not None else not gpu_available()
    try:
        return trl.GRPOConfig(**grpo_kwargs(output_dir, settings, cpu=cpu))
    except (TypeError, ValueError) as e:  # an override TRL does not know, or values it rejects
        raise UserInputError(f"GRPO settings: {str(e).splitlines()[0]}") from e


def build_judge(*, provider: str | None = None, base_url: str | None = None, model: str | None = None,
                api_key: str | None = None, n: int = 4, max_tokens: int = 65_536, max_concurrency: int = 64,
                seed: int | None = None, templates: Templates | None = None, alpha: float | None = None,
                beta: float | None = None) -> Judge:
    """The judge (verifier with n analyses, meta-verifier) served at `base_url` (or by
    `provider`, e.g. "sim"), sampling as the paper does; its calls are cached in memory."""
    from proofloop.models.base import Sampling
    from proofloop.models.cache import InMemoryCallCache
    from proofloop.models.factory import ModelSettings, build_provider
    from proofloop.models.wrapper import Model
    from proofloop.train.judge import Judge

    if provider is None and base_url is None and not os.environ.get("PROOFLOOP_BASE_URL"):
        raise UserInputError("this reward needs a judge model: pass --judge-base-url and --judge-model "
                             "(or --judge-provider sim to try it with the simulator)")
    settings, key = ModelSettings(provider=provider, base_url=base_url, model=model).resolved(api_key)
    served = Model(build_provider(settings, key), cache=InMemoryCallCache(), max_concurrency=max_concurrency,
                   endpoint=settings.endpoint)
    weights = {k: v for k, v in (("alpha", alpha), ("beta", beta)) if v is not None}  # None: the paper's
    return Judge(served, n=n, sampling=Sampling(temperature=1.0, top_p=0.95, max_tokens=max_tokens, seed=seed),
                 templates=templates, **weights)


# ----------------------------------------------------------------------------- rows


def _check_columns(task: str, rows: Sequence[Mapping[str, Any]], where: str) -> None:
    if not rows:
        raise UserInputError(f"{where}: no rows")
    columns = set().union(*(r.keys() for r in rows))
    if task == "generator" and "statement" in columns:
        columns.add("problem")
    missing = [c for c in NEEDED_COLUMNS[task] if c not in columns]
    if missing:
        raise UserInputError(f"{where}: lacks column(s) {', '.join(missing)} (the {task} set needs "
                             f"{', '.join(NEEDED_COLUMNS[task])}; found {', '.join(sorted(columns))})")


def input_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a data file (.jsonl, .json, .csv, .parquet); a missing file is a one-line error."""
    if not Path(path).is_file():
        raise UserInputError(f"--data: no such file: {path}")
    return read_rows(path)


def training_rows(task: str, rows: Sequence[Mapping[str, Any]], *, templates: Templates | None = None,
                  where: str = "data") -> list[dict[str, Any]]:
    """The task's rows in TRL's conversational layout (train/datasets.py), plus the proof a
    meta-verifier judges a verifier's analysis of (verifier rows)."""
    if task not in TASKS:
        raise UserInputError(f"unknown task {task!r} (one of {', '.join(TASKS)})")
    _check_columns(task, rows, where)
    if task == "verifier":
        by_id = {str(r.get("id") or i): r for i, r in enumerate(rows, 1)}
        out = [dict(trl_row(e), proof=proof_for_verification(by_id[e.id]["proof"]))
               for e in verifier_examples(rows, templates)]
    elif task == "meta-verifier":
        out = [trl_row(e) for e in meta_verifier_examples(rows, templates)]
    else:
        out = [trl_row(e) for e in generator_examples(rows, templates)]
    if not out:
        raise UserInputError(f"{where}: no usable {task} rows (verifier rows need status 'labelled' and a score)")
    return out


# ----------------------------------------------------------------------------- rewards


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or (conversational) a list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(str(m.get("content") or "") for m in completion if m.get("role") == "assistant")


@dataclass
class RewardStats:
    """How many completions a reward function scored, broke their format (reward 0) or had a
    judge fail (no reward)."""

    completions: int = 0
    format_failures: int = 0
    failed_judgements: int = 0


class TaskReward:
    """The TRL reward function of one task: async, one reward per completion (None where a
    judge failed: TRL leaves that completion out of the advantages), each component logged
    as its own metric (`reward_components/<name>`: its mean over the step's completions that
    have it) with the counts `reward_counts/format_failures` and `reward_counts/failed_judgements`,
    and every reward written to `rewards_path`."""

    def __init__(self, task: str, *, judge: Judge | None = None, with_meta: bool = False,
                 rewards_path: str | os.PathLike[str] | None = None):
        if task not in TASKS:
            raise UserInputError(f"unknown task {task!r} (one of {', '.join(TASKS)})")
        if judge is None and (task == "generator" or with_meta):
            raise UserInputError(f"the {task} reward {'with meta-verification ' if with_meta else ''}needs a judge "
                                 "model (--judge-base-url/--judge-model, or --judge-provider sim)")
        if with_meta and task != "verifier":
            raise UserInputError("--with-meta applies to the verifier task only")
        self.task, self.judge, self.with_meta = task, judge, with_meta
        self.rewards_path = Path(rewards_path) if rewards_path else None
        self.stats = RewardStats()  # this function's own (a judge counts all its users')
        self.__name__ = task.replace("-", "_")  # TRL logs rewards/<name>/mean under this name

    async def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        texts = [completion_text(c) for c in completions]
        rewards = await self.rewards(texts, columns)
        self._record(rewards, columns)
        return [r.total for r in rewards]

    async def rewards(self, texts: list[str], columns: Mapping[str, Any]) -> list[Reward]:
        """The rewards of a step's completions; `columns` are the dataset's, one value per completion."""
        if self.task == "generator":
            return list(await asyncio.gather(*(self.judge.generator_reward(p, t)  # type: ignore[union-attr]
                                               for p, t in zip(columns["problem"], texts))))
        targets = [float(t) for t in columns["target"]]
        if self.task == "meta-verifier":
            return [meta_verifier_reward(t, s) for t, s in zip(texts, targets)]
        if not self.with_meta:
            return [verifier_reward(t, s) for t, s in zip(texts, targets)]
        judge = self.judge
        assert judge is not None  # checked in __init__
        judged = await asyncio.gather(*(judge.verifier_rewards(p, f, [t], s, with_meta=True)
                                        for p, f, t, s in zip(columns["problem"], columns["proof"], texts, targets)))
        return [r for [r] in judged]

    def _record(self, rewards: list[Reward], columns: Mapping[str, Any]) -> None:
        format_failures = sum(r.components.get("format") == 0.0 for r in rewards)
        failed = sum(r.total is None for r in rewards)
        self.stats.completions += len(rewards)
        self.stats.format_failures += format_failures
        self.stats.failed_judgements += failed
        log_metric = columns.get("log_metric")
        if log_metric is not None:
            for name in sorted({k for r in rewards for k in r.components}):
                values = [r.components[name] for r in rewards if name in r.components]
                log_metric(f"reward_components/{name}", sum(values) / len(values))
            log_metric("reward_counts/format_failures", float(format_failures))
            log_metric("reward_counts/failed_judgements", float(failed))
        if self.rewards_path is not None:
            state = columns.get("trainer_state")
            step = state.global_step if state is not None else None
            ids = columns.get("id") or [None] * len(rewards)
            with self.rewards_path.open("a", encoding="utf-8") as fh:
                for i, r in zip(ids, rewards):
                    fh.write(json.dumps({"step": step, "task": self.task, "id": i, "total": r.total,
                                         "components": r.components, "reason": r.reason}) + "\n")


# ----------------------------------------------------------------------------- training


@dataclass
class GrpoRun:
    """What a finished run left: where, how many steps, the reward counts and TRL's log."""

    output_dir: Path
    steps: int
    stats: RewardStats
    log: list[dict[str, Any]]
    rewards_path: Path


def last_checkpoint(output_dir: str | os.PathLike[str]) -> str | None:
    """The newest `checkpoint-N` folder under `output_dir` (None: there is none)."""
    trainer_utils = require("transformers.trainer_utils", "train", "proofloop train")
    return trainer_utils.get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None


def train_grpo(task: str, model: Any, rows: Sequence[Mapping[str, Any]], output_dir: str | os.PathLike[str], *,
               settings: GrpoSettings | None = None, judge: Judge | None = None, with_meta: bool = False,
               tokenizer: Any = None, templates: Templates | None = None, resume: bool = False,
               callbacks: Iterable[Any] = (), print_logs: bool = True) -> GrpoRun:
    """Train `model` (a hub id, a local path or a loaded model) on `task` with GRPO; `rows`
    are the input rows (see NEEDED_COLUMNS). `resume`: continue from the last checkpoint in
    `output_dir` (an error if there is none). `print_logs` False: no progress bar or log lines
    from transformers (a `callbacks` entry reports instead)."""
    settings = settings or GrpoSettings()
    trl = require("trl", "train", "proofloop train")
    datasets = require("datasets", "train", "proofloop train")
    out = Path(output_dir)
    checkpoint = last_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        raise UserInputError(f"--resume: no checkpoint in {out} (checkpoints are written every --save-steps)")
    data = datasets.Dataset.from_list(training_rows(task, rows, templates=templates))
    reward = TaskReward(task, judge=judge, with_meta=with_meta, rewards_path=out / REWARDS_FILE)
    config = grpo_config(out, settings)
    if settings.vllm:
        require("vllm", "train", f"--vllm {settings.vllm} (pip install vllm)")
    out.mkdir(parents=True, exist_ok=True)
    if settings.kl > 0 and not isinstance(model, (str, os.PathLike)) and not model.config.name_or_path:
        # TRL loads the KL's reference model from the policy's path: give an in-memory one a path.
        model.save_pretrained(out / "initial-model")
        model.config.name_or_path = str(out / "initial-model")
    trainer = trl.GRPOTrainer(model=model, reward_funcs=[reward], args=config, train_dataset=data,
                              processing_class=tokenizer, callbacks=list(callbacks) or None)
    if not print_logs:
        callbacks_module = require("transformers.trainer_callback", "train", "proofloop train")
        for printer in (callbacks_module.PrinterCallback, callbacks_module.ProgressCallback):
            trainer.remove_callback(printer)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out))
    return GrpoRun(out, trainer.state.global_step, reward.stats, list(trainer.state.log_history), out / REWARDS_FILE)

"""`proofloop train`: train the three roles with the paper's rewards (extra `train`).

    proofloop train verifier --model Qwen/Qwen3-0.6B --data labels.jsonl --output-dir out/verifier
    proofloop train verifier ... --with-meta --judge-base-url http://host:8000/v1 --judge-model M
    proofloop train meta-verifier --model out/verifier --data rated.jsonl --output-dir out/meta
    proofloop train generator --model out/verifier --data problems.jsonl --output-dir out/generator \\
        --judge-base-url http://host:8000/v1 --judge-model M [--vllm server|colocate] [--resume]
    proofloop train data verifier --from labels.jsonl -o verifier.parquet --format verl
    proofloop train rft --from labels.jsonl --model out/generator --output-dir out/rft
    proofloop train serve-rewards --port 8100 --judge-base-url http://host:8000/v1 --judge-model M
    proofloop train loop --problems P --verifier-data D --model M --output-dir O --judge-provider sim

GRPO on TRL (train/grpo.py): checkpoints every --save-steps in the output folder, `--resume`
continues from the last one; every reward with its components goes to
<output-dir>/rewards.jsonl. The generator's reward (and the verifier's with --with-meta) is
judged by a served model: --judge-* options, or --judge-provider sim to try it offline.
Commands of this app import only typer at the top; training loads torch and TRL when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from proofloop.cli.console import note
from proofloop.cli.options import REPLICAS_HELP, Json, joined_urls
from proofloop.cli.train_data import data
from proofloop.cli.train_loop import loop
from proofloop.cli.train_rewards import serve_rewards
from proofloop.cli.train_rft import rft

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Train the generator, verifier and meta-verifier with the paper's rewards; build their data.")

PolicyModel = Annotated[str, typer.Option("--model", help="the policy to train: hub id or local folder")]
Data = Annotated[Path, typer.Option(help="input rows (.jsonl, .json, .csv, .parquet)")]
OutputDir = Annotated[Path, typer.Option(help="checkpoints, the final model and rewards.jsonl")]
Steps = Annotated[int, typer.Option(min=1, help="optimizer steps in all (a resumed run continues up to it)")]
Generations = Annotated[int, typer.Option(min=2, help="completions per prompt (the GRPO group)")]
PromptsPerStep = Annotated[int, typer.Option(min=1, help="prompts per device per step")]
CompletionLength = Annotated[int, typer.Option(min=1, help="max tokens per completion")]
LearningRate = Annotated[float, typer.Option(min=0.0, help="AdamW learning rate (GRPO: 1e-6)")]
Kl = Annotated[float, typer.Option(min=0.0, help="KL coefficient (GRPO: 0.04; 0 loads no reference model)")]
SaveSteps = Annotated[int, typer.Option(min=1, help="write a checkpoint every this many steps")]
Vllm = Annotated[Optional[str], typer.Option(help="generate with vLLM: server (trl vllm-serve) or colocate")]
VllmUrl = Annotated[Optional[str], typer.Option(help="with --vllm server: its URL, e.g. http://host:8000")]
Resume = Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --output-dir")]
Cpu = Annotated[bool, typer.Option("--cpu", help="train on the CPU even if a GPU is visible")]
Seed = Annotated[int, typer.Option(help="seed of the trainer (sampling, shuffling, initialisation)")]
ReportTo = Annotated[str, typer.Option(help="where TRL reports metrics: none, tensorboard, wandb, ...")]
TemplatesDir = Annotated[Optional[Path], typer.Option(
    "--templates", help="folder with generate.md / verify.md / meta_verify.md for the policy's prompts")]
WithMeta = Annotated[bool, typer.Option(
    "--with-meta", help="verifier only: reward R_format * R_score * R_meta, R_meta from the judge")]
JudgeProvider = Annotated[Optional[str], typer.Option(help="judge provider: openai (default with a URL) or sim")]
JudgeUrl = Annotated[Optional[list[str]], typer.Option(
    help="judge's OpenAI-compatible server, e.g. http://host:8000/v1" + REPLICAS_HELP)]
JudgeModel = Annotated[Optional[str], typer.Option(help="judge's model id on that server")]
JudgeKey = Annotated[Optional[str], typer.Option(help="judge's API key")]
Alpha = Annotated[Optional[float], typer.Option(
    min=0.0, help="generator only: weight of the verifier's score of the proof (paper: 0.76)")]
Beta = Annotated[Optional[float], typer.Option(
    min=0.0, help="generator only: weight of the self evaluation's reward (paper: 0.24)")]
JudgeN = Annotated[int, typer.Option(min=1, help="verifier analyses per proof (the proof's score is their mean)")]
JudgeTokens = Annotated[int, typer.Option(min=1, help="max tokens per judge call (the paper: 65536)")]
JudgeConcurrency = Annotated[int, typer.Option(min=1, help="judge requests in flight")]


def _grpo_command(task: str) -> Callable[..., None]:
    """The command that trains `task` (the three share their options)."""

    def command(model: PolicyModel, data: Data, output_dir: OutputDir, steps: Steps = 100,
                num_generations: Generations = 8, prompts_per_step: PromptsPerStep = 1,
                max_completion_length: CompletionLength = 1024, learning_rate: LearningRate = 1e-6, kl: Kl = 0.04,
                save_steps: SaveSteps = 50, vllm: Vllm = None, vllm_server_url: VllmUrl = None,
                resume: Resume = False, cpu: Cpu = False, seed: Seed = 0, report_to: ReportTo = "none",
                templates: TemplatesDir = None, with_meta: WithMeta = False, judge_provider: JudgeProvider = None,
                judge_base_url: JudgeUrl = None, judge_model: JudgeModel = None, judge_api_key: JudgeKey = None,
                judge_n: JudgeN = 4, judge_max_tokens: JudgeTokens = 65_536,
                judge_concurrency: JudgeConcurrency = 64, alpha: Alpha = None, beta: Beta = None,
                json_out: Json = False) -> None:
        from proofloop.errors import UserInputError
        from proofloop.train.grpo import GrpoSettings

        if task != "generator" and (alpha is not None or beta is not None):
            raise UserInputError("--alpha and --beta weigh the generator's reward; the other roles have no weights")

        settings = GrpoSettings(
            steps=steps, num_generations=num_generations, prompts_per_step=prompts_per_step,
            max_completion_length=max_completion_length, learning_rate=learning_rate, kl=kl, save_steps=save_steps,
            vllm=vllm, vllm_server_url=vllm_server_url, seed=seed, use_cpu=True if cpu else None,
            report_to=report_to)
        judge = dict(provider=judge_provider, base_url=joined_urls(judge_base_url), model=judge_model, api_key=judge_api_key,
                     n=judge_n, max_tokens=judge_max_tokens, max_concurrency=judge_concurrency, seed=seed,
                     alpha=alpha, beta=beta)
        run_grpo(task, model=model, data=data, output_dir=output_dir, settings=settings, templates=templates,
                 with_meta=with_meta, judge=judge, resume=resume, json_out=json_out)

    command.__name__ = task.replace("-", "_")
    return command


def run_grpo(task: str, *, model: str, data: Path, output_dir: Path, settings: Any, templates: Path | None,
             with_meta: bool, judge: dict[str, Any], resume: bool, json_out: bool) -> None:
    """Check the input (before torch loads), build the judge if the reward needs one, train, report."""
    import contextlib
    import json
    import sys

    from proofloop.protocol import Templates
    from proofloop.train.grpo import build_judge, input_rows, train_grpo, training_rows

    rows = input_rows(data)
    policy_templates = Templates.load(templates) if templates else None
    training_rows(task, rows, templates=policy_templates, where=str(data))  # bad rows fail here, in one line
    needs_judge = task == "generator" or with_meta
    with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs: stdout keeps only our summary
        run = train_grpo(task, model, rows, output_dir, settings=settings, templates=policy_templates,
                         with_meta=with_meta, judge=build_judge(**judge) if needs_judge else None, resume=resume)
    summary = {"task": task, "steps": run.steps, "output_dir": str(run.output_dir),
               "rewards": str(run.rewards_path), "completions": run.stats.completions,
               "format_failures": run.stats.format_failures, "failed_judgements": run.stats.failed_judgements}
    if json_out:
        print(json.dumps(summary))
    else:
        note(f"trained the {task} for {run.steps} steps: model in {run.output_dir}, rewards in {run.rewards_path}; "
             f"{run.stats.completions} completions, {run.stats.format_failures} format failures, "
             f"{run.stats.failed_judgements} failed judgements (no reward)")


app.command("verifier", help="GRPO on the verifier: R_format * R_score against labelled proof scores "
                             "(rows of `proofloop label`: problem, proof, status, score).")(_grpo_command("verifier"))
app.command("meta-verifier", help="GRPO on the meta-verifier: the same reward on expert ratings of analyses "
                                  "(rows: problem, proof, analysis, rating).")(_grpo_command("meta-verifier"))
app.command("generator", help="GRPO on the generator: R_format * (0.76 R_Y + 0.24 R_Z), judged by a served "
                              "verifier and meta-verifier (rows: problem).")(_grpo_command("generator"))
app.command()(data)
app.command()(rft)
app.command("serve-rewards")(serve_rewards)
app.command()(loop)

"""`proofloop train loop`: one iteration of the paper's training loop (§3.1) as one stored,
resumable run (train/loop.py has the stages and what each records).

    proofloop train loop --problems examples/train/problems.jsonl \\
        --verifier-data examples/train/verifier-seed.jsonl --model tiny --output-dir out/loop \\
        --judge-provider sim --steps 2 --num-generations 2 --max-completion-length 16 -n 2 -m 1 -k 1
    proofloop train loop --resume RUN                       # the first unfinished stage on

The judge (--judge-*: the served verifier / meta-verifier) scores the GRPO rewards and labels
the new proofs; the generator server (--gen-*, default: the judge's) writes the new proofs.
To generate with the trained generator, stop after its GRPO stage (`--stop-after generator`),
serve OUTPUT_DIR/generator (e.g. `vllm serve OUTPUT_DIR/generator`) and resume with
`--gen-base-url URL --gen-model NAME`. docs/TRAINING.md walks through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from proofloop.cli.common import open_store, run_and_render, set_verbosity
from proofloop.cli.console import say
from proofloop.cli.options import REPLICAS_HELP, Db, Json, Verbose, joined_urls
from proofloop.errors import UserInputError

if TYPE_CHECKING:
    from proofloop.runs import ModelSetup


Problems = Annotated[Optional[Path], typer.Option(
    "--problems", help="JSONL / JSON / CSV / parquet rows with `problem`")]
VerifierData = Annotated[Optional[str], typer.Option(
    "--verifier-data", help="labelled proofs (label output, a file, hf:NAME)")]
BaseModel = Annotated[Optional[str], typer.Option(
    "--model", help="the model to train: hub id, local path, or `tiny` (in-process)")]
OutputDir = Annotated[Optional[Path], typer.Option(
    "--output-dir", help="checkpoints, datasets, labels, the RFT model")]
Resume = Annotated[Optional[str], typer.Option(
    "--resume", help="finish the loop run RUN from its first unfinished stage")]
Text = Optional[str]


def loop(
    problems: Problems = None,
    verifier_data: VerifierData = None,
    model: BaseModel = None,
    output_dir: OutputDir = None,
    resume: Resume = None,
    judge_provider: Annotated[Text, typer.Option(help="judge: openai | sim")] = None,
    judge_base_url: Annotated[Optional[list[str]], typer.Option(
        help="judge server URL (verifier / meta-verifier)" + REPLICAS_HELP)] = None,
    judge_model: Annotated[Text, typer.Option(help="judge model id on its server")] = None,
    gen_provider: Annotated[Text, typer.Option(help="generator server provider (default: the judge's)")] = None,
    gen_base_url: Annotated[Optional[list[str]], typer.Option(
        help="server of the trained generator, e.g. vLLM" + REPLICAS_HELP)] = None,
    gen_model: Annotated[Text, typer.Option(help="the generator's model id on that server")] = None,
    api_key: Annotated[Text, typer.Option(help="API key of the servers (or PROOFLOOP_API_KEY)")] = None,
    steps: Annotated[int, typer.Option(min=1, help="GRPO steps per role")] = 100,
    num_generations: Annotated[int, typer.Option(min=2, help="GRPO group size")] = 8,
    max_completion_length: Annotated[int, typer.Option(min=1, help="GRPO completion tokens")] = 1024,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 1e-6,
    save_steps: Annotated[int, typer.Option(min=1, help="steps between checkpoints (GRPO and RFT)")] = 50,
    vllm: Annotated[Text, typer.Option(help="GRPO generation with vLLM: server | colocate")] = None,
    with_meta: Annotated[bool, typer.Option("--with-meta", help="the verifier's reward includes R_meta")] = False,
    judge_n: Annotated[int, typer.Option(min=1, help="analyses per proof in the generator's reward")] = 4,
    proofs_per_problem: Annotated[int, typer.Option(min=1, help="new proofs per problem")] = 4,
    n: Annotated[int, typer.Option("-n", min=1, help="label: analyses per proof")] = 4,
    m: Annotated[int, typer.Option("-m", min=1, help="label: meta-verifications per issue-reporting analysis")] = 3,
    k: Annotated[int, typer.Option("-k", min=1, help="label: valid analyses needed at the lowest score")] = 2,
    rft_steps: Annotated[Optional[int], typer.Option(min=1, help="RFT steps (default: one pass)")] = None,
    rft_max_length: Annotated[int, typer.Option(min=16, help="RFT tokens per example")] = 8192,
    max_tokens: Annotated[Optional[int], typer.Option(min=1, help="served generation tokens per proof")] = None,
    verify_max_tokens: Annotated[Optional[int], typer.Option(min=1, help="served tokens per check")] = None,
    stop_after: Annotated[Text, typer.Option(help="stop after this stage (serve a checkpoint, then --resume)")] = None,
    seed: int = 0,
    *, db: Db = None, json_out: Json = False, verbose: Verbose = False,
) -> None:
    """One iteration of the training loop: verifier, generator, new proofs, labels, next set, RFT."""
    set_verbosity(verbose)
    import proofloop.train.loop as L  # registers the run kind

    if stop_after is not None and stop_after not in L.STAGES:
        raise UserInputError(f"--stop-after must be one of {', '.join(L.STAGES)}, not {stop_after!r}")
    store = open_store(db)
    judge_url = joined_urls(judge_base_url)
    generator = {"provider": gen_provider, "base_url": joined_urls(gen_base_url), "model": gen_model}
    if resume is not None:
        run_id = resume
        run = store.get_run(run_id)
        if run is None or run.kind != L.KIND:
            raise UserInputError(f"no train-loop run {run_id!r} in {store.where}")
        L.point_servers(store, run_id, judge={"base_url": judge_url, "model": judge_model}, generator=generator)
    elif not (problems and verifier_data and model and output_dir):
        raise UserInputError("a new loop needs --problems, --verifier-data, --model and --output-dir (or --resume RUN)")
    else:
        settings = L.LoopSettings(
            steps=steps, num_generations=num_generations, max_completion_length=max_completion_length,
            learning_rate=learning_rate, save_steps=save_steps, vllm=vllm, with_meta=with_meta, judge_n=judge_n,
            proofs_per_problem=proofs_per_problem, n=n, m=m, k=k, rft_steps=rft_steps,
            rft_max_length=rft_max_length, seed=seed)
        served = {"seed": seed, "max_tokens": max_tokens, "verify_max_tokens": verify_max_tokens, "api_key": api_key}
        run_id = L.create_loop_run(
            store, problems=L.read_problems(problems), verifier_data=verifier_data, model=model, output_dir=output_dir,
            settings=settings, judge=server_setup(judge_provider, judge_url, judge_model, **served),
            generator=server_setup(**generator, **served) if any(generator.values()) else None)
    store.update_run_config(run_id, {"stop_after": stop_after})
    summary = run_and_render(store, run_id, api_key=api_key, json_mode=json_out, verbose=verbose,
                             announce=None if json_out else f"run {run_id}: one iteration of the training loop")
    if json_out:
        return
    if summary.get("stopped_after"):
        say(f"stopped after {summary['stopped_after']}; continue with `proofloop train loop --resume {run_id}`")
    say(f"every stage is recorded on run {run_id}: `proofloop runs show {run_id}`")


def server_setup(provider: str | None, base_url: str | None, model: str | None, **options: Any) -> "ModelSetup":
    """The model set-up of a served model (judge or generator) from the command's options."""
    from proofloop.models.factory import ModelSettings
    from proofloop.runs import ModelSetup

    return ModelSetup(ModelSettings(provider=provider, base_url=base_url, model=model), **options)

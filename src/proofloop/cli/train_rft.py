"""`proofloop train rft`: rejection fine-tuning (paper §3.1; the selection rules are in
train/rft.py): the best verified proofs and the analyses their meta-verification endorsed,
fine-tuned into one model with TRL's SFTTrainer.

    proofloop train rft --from labels.jsonl --model HuggingFaceTB/SmolLM2-135M-Instruct --output-dir rft-out
    proofloop train rft --run RUN --model ./verifier --output-dir rft-out --steps 200 --resume
    proofloop train rft --from labels.jsonl --model M --output-dir rft-out --dry-run   # the set only

The set is written to OUTPUT_DIR/rft.jsonl; checkpoints every --save-steps, the final model
in OUTPUT_DIR. Runs on the GPU when there is one, else on the CPU.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer

from proofloop.cli.console import say
from proofloop.cli.options import Db, Json
from proofloop.cli.train_data import Run, Source
from proofloop.errors import UserInputError


def rft(
    model: Annotated[str, typer.Option("--model", help="the model to fine-tune: hub id or local path")],
    output_dir: Annotated[Path, typer.Option("--output-dir", help="checkpoints and the final model")],
    source: Source = None,
    run: Run = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="optimiser steps (default: --epochs passes)")] = None,
    epochs: Annotated[float, typer.Option(min=0.0, help="passes over the set when --steps is not given")] = 1.0,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --output-dir")] = False,
    min_score: Annotated[float, typer.Option(min=0.0, max=1.0, help="verified score a proof needs")] = 1.0,
    min_analyses: Annotated[int, typer.Option(min=1, help="valid analyses an unlabelled proof needs")] = 2,
    per_problem: Annotated[int, typer.Option(min=1, help="proofs kept per problem")] = 1,
    per_proof: Annotated[int, typer.Option(min=1, help="analyses kept per labelled proof")] = 1,
    endorse_at: Annotated[float, typer.Option(help="meta rating that endorses an analysis: 0.5 | 1")] = 1.0,
    learning_rate: Annotated[float, typer.Option(min=0.0)] = 1e-5,
    batch_size: Annotated[int, typer.Option(min=1, help="examples per device per step")] = 1,
    grad_accum: Annotated[int, typer.Option(min=1, help="gradient accumulation steps")] = 1,
    max_length: Annotated[int, typer.Option(min=16, help="tokens per example; longer ones are cut")] = 8192,
    save_steps: Annotated[int, typer.Option(min=1, help="steps between checkpoints")] = 50,
    seed: int = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="write OUTPUT_DIR/rft.jsonl only")] = False,
    *, db: Db = None, json_out: Json = False,
) -> None:
    """Rejection fine-tuning: SFT on the best verified proofs and the endorsed analyses."""
    from proofloop.train.datasets import write_rows
    from proofloop.train.rft import EMPTY_SET, RftRules, SftSettings, rft_rows, train_rft
    from proofloop.train.sources import read_source

    rules = RftRules(min_score=min_score, min_analyses=min_analyses, per_problem=per_problem, per_proof=per_proof,
                     endorse_at=endorse_at)
    rows = rft_rows(read_source(source, run=run, db=db), rules)
    if not rows:
        raise UserInputError(EMPTY_SET)
    if dry_run:
        tasks = Counter(r["task"] for r in rows)
        summary = {"kind": "rft", "examples": len(rows), "generator": tasks["generator"], "verifier": tasks["verifier"],
                   "dataset": str(write_rows(rows, output_dir / "rft.jsonl"))}
    else:
        settings = SftSettings(steps=steps, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                               grad_accum=grad_accum, max_length=max_length, save_steps=save_steps, seed=seed)
        summary = train_rft(rows, model=model, output_dir=output_dir, settings=settings, resume=resume)
    if json_out:
        say(json.dumps(summary))
        return
    say(f"rft set: {summary['examples']} examples ({summary['generator']} proofs, {summary['verifier']} analyses): "
        f"{summary['dataset']}")
    if not dry_run:
        say(f"trained {summary['steps']} steps, loss {summary['train_loss']:.4g}; model in {summary['output_dir']}")

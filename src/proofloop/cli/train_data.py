"""`proofloop train data`: a role's training set, written for TRL or verl.

    proofloop train data verifier --from labels.jsonl -o verifier.jsonl
    proofloop train data meta-verifier --run RUN -o meta.parquet          # a label run in the store
    proofloop train data generator --from problems.jsonl -o prompts --format trl   # a save_to_disk folder
    proofloop train data verifier --from hf:owner/name:train -o v.parquet --format verl

Sources (train/sources.py): `proofloop label` output, JSONL / JSON / CSV / parquet files, a
Hugging Face `save_to_disk` folder, hf:NAME[:SPLIT] from the hub, or a finished run of the
store (--run, with --db or --from STORE.db). The output's name picks its type: .jsonl,
.parquet, else a `save_to_disk` folder; verl reads parquet only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from proofloop.cli.console import say
from proofloop.cli.options import Db, Json
from proofloop.errors import UserInputError

TASKS = ("verifier", "meta-verifier", "generator")
Source = Annotated[Optional[str], typer.Option(
    "--from", help="label output, a JSONL / JSON / CSV / parquet file, a save_to_disk folder, hf:NAME[:SPLIT], "
                   "or the store file with --run")]
Run = Annotated[Optional[str], typer.Option("--run", help="read a finished run of the store (label, prove, bench)")]


def data(
    task: Annotated[str, typer.Argument(help="verifier | meta-verifier | generator")],
    output: Annotated[Path, typer.Option("-o", "--output", help="*.jsonl, *.parquet, or a folder (save_to_disk)")],
    source: Source = None,
    run: Run = None,
    fmt: Annotated[str, typer.Option("--format", help="trl (chat prompt + target) | verl (its RL parquet)")] = "trl",
    data_source: Annotated[str, typer.Option(help="verl's data_source column")] = "proofloop",
    *, db: Db = None, json_out: Json = False,
) -> None:
    """Build a role's training set from labels, runs, datasets or files."""
    from proofloop.train.datasets import FORMATS, generator_set, meta_verifier_set, verifier_set, write_dataset
    from proofloop.train.sources import read_source

    if task not in TASKS:
        raise UserInputError(f"unknown task {task!r}: use {', '.join(TASKS)}")
    if fmt not in FORMATS:
        raise UserInputError(f"unknown --format {fmt!r}: use {' or '.join(FORMATS)}")
    rows = read_source(source, run=run, db=db)
    origin = f"run {run}" if run else str(source)
    build = {"verifier": verifier_set, "meta-verifier": meta_verifier_set}.get(task)
    examples = build(rows, origin=origin) if build else generator_set(rows)
    path = write_dataset(examples, output, fmt, data_source=data_source)
    summary = {"task": task, "format": fmt, "examples": len(examples), "output": str(path), "source": origin}
    say(json.dumps(summary) if json_out else f"wrote {len(examples)} {task} examples ({fmt}) to {path}")

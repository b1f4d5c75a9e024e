"""`proofloop label`: label proofs automatically (DeepSeekMath-V2 §2.3; the rule is in label.py).

    proofloop label --proofs proofs.jsonl -n 8 -m 3 -k 2 -o labels.jsonl --parquet labels.parquet
    proofloop label --proofs graded.jsonl --field problem=question --field proof=model_prediction.proof \\
        -n 4 -m 3 -k 2 --undecided human --json

Input: JSONL / JSON / CSV / parquet rows with a problem and a proof (columns `problem` /
`question` / `statement` and `proof` / `solution` are found without mapping) and an optional
`id`. Every row of the output has a status: labelled (score is the label), discarded or human
(undecided), error (failures kept the rule from deciding). The run is stored like any other:
`proofloop resume RUN` finishes a killed one without repeating a finished call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from proofloop.cli.common import join_and_render, open_store, print_split, run_and_render, set_verbosity
from proofloop.cli.options import Db, Json, ModelOptions, Split, Verbose, Worker, model_options
from proofloop.errors import UserInputError

@model_options
def label(
    proofs: Annotated[Optional[Path], typer.Option("--proofs", help="JSONL / JSON / CSV / parquet file of problem + proof rows")] = None,
    n: Annotated[int, typer.Option("-n", min=1, help="verifier analyses per proof")] = 4,
    m: Annotated[int, typer.Option("-m", min=1, help="meta-verifications per issue-reporting analysis")] = 3,
    k: Annotated[int, typer.Option("-k", min=1, help="valid analyses needed at the lowest score")] = 2,
    undecided: Annotated[str, typer.Option(help="what undecided proofs become: discard | human")] = "discard",
    confirm_at: Annotated[float, typer.Option(help="lowest meta rating that confirms an analysis: 0.5 | 1")] = 0.5,
    lowest: Annotated[str, typer.Option(help="all: the lowest score over all analyses must have k valid ones "
                                             "(the paper); valid: the lowest among valid analyses")] = "all",
    quorum: Annotated[float, typer.Option(help="share of the n analyses that must succeed, else status error")] = 0.5,
    field: Annotated[list[str], typer.Option("--field", help="FIELD=COLUMN for problem / proof / id (dotted paths reach nested objects)")] = [],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="JSONL output (default labels-RUN.jsonl unless --parquet)")] = None,
    parquet: Annotated[Optional[Path], typer.Option("--parquet", help="parquet output")] = None,
    split: Split = False, worker: Worker = None,
    *, model_options: ModelOptions, db: Db = None, json_out: Json = False, verbose: Verbose = False,
) -> None:
    """Label each proof with 0, 0.5 or 1 by verification and meta-verification majority votes."""
    set_verbosity(verbose)
    from proofloop.label import LabelRule, load_items
    from proofloop.runs.label import create_label_run

    if worker is not None:  # the run's settings are stored: the other options are not used
        return join_and_render(open_store(db), worker, api_key=model_options.api_key, json_mode=json_out,
                               verbose=verbose)
    if proofs is None:
        raise UserInputError("--proofs is required (or --worker RUN to join a run)")

    if undecided not in ("discard", "human"):
        raise UserInputError(f"--undecided must be discard or human, not {undecided!r}")
    rule = LabelRule(m=m, k=k, confirm_at=confirm_at, quorum=quorum, undecided=undecided, lowest=lowest)
    items = load_items(proofs, field)
    store = open_store(db)
    run_id = create_label_run(store, items, model_options.setup(), n=n, rule=rule, output=output, parquet=parquet,
                              source=str(proofs))
    if split:
        store.add_work(run_id, [item.id for item in items])
        return print_split(run_id, json_out)
    run_and_render(store, run_id, api_key=model_options.api_key, json_mode=json_out, verbose=verbose,
                   announce=None if json_out else f"run {run_id}: labelling {len(items)} proofs (n={n}, m={m}, k={k})")

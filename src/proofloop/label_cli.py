"""`proofloop label`: label proofs automatically (DeepSeekMath-V2 §2.3; the rule is in label.py).

    proofloop label --proofs proofs.jsonl -n 8 -m 3 -k 2 -o labels.jsonl --parquet labels.parquet
    proofloop label --proofs graded.jsonl --field problem=question --field proof=model_prediction.proof \\
        -n 4 -m 3 -k 2 --undecided human --json

Input: JSONL / JSON / CSV / parquet rows with a problem and a proof (columns `problem` /
`question` / `statement` and `proof` / `solution` are found without mapping) and an optional
`id`. Every row of the output has a status: labelled (score is the label), discarded or human
(undecided), error (failures kept the rule from deciding). The run is stored like any other:
`proofloop resume RUN` finishes a killed one without repeating a finished call.

Mounting (cli.py): `app.add_typer(label_cli.app, name="label")`, or
`app.command("label")(label_cli.label)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from proofloop import cli
from proofloop.cli import (ApiKey, AttemptTimeout, BaseUrl, Concurrency, Db, Json, MaxN, ModelName, Provider,
                           TemplatesDir, Temperature, TopP, VerifyMaxTokens)
from proofloop.errors import UserInputError
from proofloop.label import LabelRule, create_label_run, load_items
from proofloop.models.base import Sampling
from proofloop.models.factory import ModelSettings

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  help="Label proofs automatically: n analyses, m meta-verifications each, threshold k.")


@app.callback(invoke_without_command=True)
def label(
    proofs: Annotated[Path, typer.Option("--proofs", help="JSONL / JSON / CSV / parquet file of problem + proof rows")],
    n: Annotated[int, typer.Option("-n", help="verifier analyses per proof")] = 4,
    m: Annotated[int, typer.Option("-m", help="meta-verifications per issue-reporting analysis")] = 3,
    k: Annotated[int, typer.Option("-k", help="valid analyses needed at the lowest score")] = 2,
    undecided: Annotated[str, typer.Option(help="what undecided proofs become: discard | human")] = "discard",
    confirm_at: Annotated[float, typer.Option(help="lowest meta rating that confirms an analysis: 0.5 | 1")] = 0.5,
    quorum: Annotated[float, typer.Option(help="share of the n analyses that must succeed, else status error")] = 0.5,
    field: Annotated[list[str], typer.Option("--field", help="FIELD=COLUMN for problem / proof / id (dotted paths reach nested objects)")] = [],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="JSONL output (default labels-RUN.jsonl unless --parquet)")] = None,
    parquet: Annotated[Optional[Path], typer.Option("--parquet", help="parquet output")] = None,
    seed: Annotated[Optional[int], typer.Option(help="sampling seed sent to the server (sample i gets seed + i)")] = None,
    provider: Provider = None, base_url: BaseUrl = None, api_key: ApiKey = None, model: ModelName = None,
    max_n: MaxN = None, max_concurrency: Concurrency = 8, verify_max_tokens: VerifyMaxTokens = 8192,
    temperature: Temperature = 1.0, top_p: TopP = 0.95, templates: TemplatesDir = None,
    attempt_timeout: AttemptTimeout = None, db: Db = None, json_out: Json = False,
):
    """Label each proof with 0, 0.5 or 1 by verification and meta-verification majority votes."""
    if undecided not in ("discard", "human"):
        raise UserInputError(f"--undecided must be discard or human, not {undecided!r}")
    rule = LabelRule(m=m, k=k, confirm_at=confirm_at, quorum=quorum, undecided=undecided)
    items = load_items(proofs, field)
    store = cli._store(db)
    run_id = create_label_run(
        store, items, ModelSettings(provider=provider, base_url=base_url, model=model, max_n=max_n), n=n,
        rule=rule, output=output, parquet=parquet,
        sampling=Sampling(temperature=temperature, top_p=top_p, max_tokens=verify_max_tokens, seed=seed),
        templates=cli._templates(templates), max_concurrency=max_concurrency,
        timeouts=cli._timeouts(attempt_timeout), api_key=api_key, source=str(proofs))
    if not json_out:
        cli.err.print(f"run {run_id}: labelling {len(items)} proofs (n={n}, m={m}, k={k})", markup=False)
    summary = cli._run(store, run_id, api_key, json_out)
    if json_out:
        print(json.dumps(summary, default=str))
        return
    report(summary)


def report(summary: dict) -> None:
    out = cli.out
    s, labels = summary["statuses"], summary["labels"]
    out.print(f"labelled {s['labelled']} (0: {labels['0']}, 0.5: {labels['0.5']}, 1: {labels['1']})   "
              f"discarded {s['discarded']}   human {s['human']}   error {s['error']}   of {summary['proofs']}",
              markup=False)
    for e in summary["errors"][:5]:
        out.print(f"   error {e['id']}: {e['reason']}", markup=False, highlight=False)
    for what in ("output", "parquet"):
        if summary.get(what):
            out.print(f"{what}: {summary[what]}", markup=False)
    u = summary.get("usage", {})
    out.print(f"run: {summary['run_id']}   calls: {u.get('calls')}   failures: {u.get('failures')}   "
              f"tokens: {u.get('prompt_tokens')} in / {u.get('completion_tokens')} out", markup=False)

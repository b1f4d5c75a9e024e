"""`proofloop bench`: prove a benchmark and grade it, grade existing proofs, measure a grader
against human grades, and write reports.

    proofloop bench run --dataset proofbench-basic --data-dir ../shared/data --strategy single -n 4
    proofloop bench grade --proofs proofs.jsonl --grader autograder          # never regenerates proofs
    proofloop bench grade --dataset dsm2-outputs --data-dir ../shared/data --grader verifier -n 8
    proofloop bench agreement --dataset dsm2-outputs --data-dir ../shared/data --threshold 0.75 --json
    proofloop bench agreement --pred pred.jsonl --human human.csv --human-max-points 7
    proofloop bench agreement --run RUN [--human FILE]
    proofloop bench report RUN -o report/                                    # report.md + report.html

`--json` prints one JSON object; bad input is one line on stderr and exit code 2 (cli.main).
Runs of kind `bench` and `bench-grade` resume with `proofloop resume RUN`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from proofloop.cli.common import (join_and_render, open_store, parse_options, print_split, render, run_and_render,
                                  set_verbosity)
from proofloop.cli.console import note
from proofloop.cli.options import (REPLICAS_HELP, Db, Json, ModelOptions, Split, Verbose, Worker, joined_urls,
                                   model_options)
from proofloop.bench.datasets import DATASETS  # light: numpy, scipy and plots load only in the commands
from proofloop.bench.metrics import DEFAULT_THRESHOLD, HUMAN_ACCEPT
from proofloop.errors import UserInputError

app = typer.Typer(no_args_is_help=True, help="Benchmarks: prove and grade datasets, grade proofs, grader agreement, reports.")

DataDir = Annotated[Optional[Path], typer.Option(help="folder with imobench/ and dsm2/ (or PROOFLOOP_DATA_DIR)")]
N = Annotated[int, typer.Option("-n", min=1, help="grader samples per proof (verifier votes / autograder samples)")]
GraderProvider = Annotated[Optional[str], typer.Option(help="grader's provider, when it is not the proving model")]
GraderBaseUrl = Annotated[Optional[list[str]], typer.Option(
    help="grader's server URL (key: PROOFLOOP_GRADER_API_KEY)" + REPLICAS_HELP)]
GraderModel = Annotated[Optional[str], typer.Option(help="grader's model id")]
AutogradeTemplate = Annotated[Optional[Path], typer.Option(help="autograder prompt file instead of ours (placeholders "
                                                           "{{problem}} {{reference_solution}} {{guidelines}} {{proof}})")]
Resamples = Annotated[int, typer.Option(min=1, help="bootstrap resamples for the confidence intervals")]
Threshold = Annotated[float, typer.Option(min=0.0, max=1.0, help="an automatic score at or above this accepts a proof")]
DATASET_NAMES = " | ".join(name for name in DATASETS if name != "dsm2-outputs")  # graded proofs: `bench grade`


def _grader_settings(provider: str | None, base_urls: list[str] | None, model: str | None) -> Any:
    from proofloop.models.factory import ModelSettings

    base_url = joined_urls(base_urls)
    if provider is None and base_url is None and model is None:
        return None  # the proving model grades too
    return ModelSettings(provider=provider or ("openai" if base_url else None), base_url=base_url, model=model)


def _needs_bench_extra(command: str) -> None:
    from proofloop.extras import require

    for module in ("numpy", "scipy", "matplotlib"):
        require(module, "bench", command)


@app.command()
@model_options
def run(
    dataset: Annotated[Optional[str], typer.Option(help=f"{DATASET_NAMES} | hf:NAME | a .jsonl/.csv/.parquet file")] = None,
    data_dir: DataDir = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="only the first N problems")] = None,
    ids: Annotated[list[str], typer.Option("--id", help="only these problem ids (repeatable, or comma-separated)")] = [],
    field: Annotated[list[str], typer.Option("--field", help="for files: FIELD=COLUMN, e.g. statement=question")] = [],
    strategy: Annotated[str, typer.Option(help="single | sequential | pool | adaptive | tree")] = "single",
    k: Annotated[int, typer.Option(min=1, help="single: proofs to sample")] = 4,
    attempts: Annotated[int, typer.Option(min=1, help="sequential: most proofs per thread")] = 8,
    threads: Annotated[int, typer.Option(min=1, help="sequential: parallel threads")] = 4,
    option: Annotated[list[str], typer.Option("--option", "-o", help="strategy option key=value (repeatable; see prove --help)")] = [],
    grader: Annotated[str, typer.Option(help="verifier (reference-free, n votes, mean) | autograder (reference-guided 0-7)")] = "verifier",
    n: N = 4,
    grade_all: Annotated[bool, typer.Option(help="grade every proof, not only the chosen one (pass@1, best@k)")] = False,
    grader_provider: GraderProvider = None, grader_base_url: GraderBaseUrl = None, grader_model: GraderModel = None,
    autograde_template: AutogradeTemplate = None,
    parallel_problems: Annotated[int, typer.Option(min=1, help="problems searched at once")] = 4,
    budget_tokens: Annotated[Optional[int], typer.Option(min=1, help="token budget for the whole run (pool/adaptive)")] = None,
    budget_cost: Annotated[Optional[float], typer.Option(min=0.0, help="cost budget in USD for the whole run (pool/adaptive)")] = None,
    budget_wall_s: Annotated[Optional[float], typer.Option(min=0.0, help="wall-time budget in seconds for the whole run (pool/adaptive)")] = None,
    split: Split = False, worker: Worker = None,
    *, model_options: ModelOptions, db: Db = None, json_out: Json = False, verbose: Verbose = False,
) -> None:
    """Prove every problem of a dataset with a search strategy, then grade each chosen proof."""
    set_verbosity(verbose)
    _needs_bench_extra("proofloop bench run")
    from proofloop.bench.runs import bench_problems, create_bench_run

    if worker is not None:  # the run's settings are stored: the other options are not used
        return join_and_render(open_store(db), worker, api_key=model_options.api_key, json_mode=json_out,
                               verbose=verbose)
    if dataset is None:
        raise UserInputError("--dataset is required (or --worker RUN to join a run)")

    options: dict[str, Any] = {"single": {"k": k}, "sequential": {"attempts": attempts, "threads": threads}}.get(strategy, {})
    options.update(parse_options(option))
    wanted = [i.strip() for item in ids for i in item.split(",") if i.strip()]
    store = open_store(db)
    run_id = create_bench_run(
        store, dataset, model_options.setup(), data_dir=data_dir, limit=limit, ids=wanted or None,
        fields=field or None, strategy=strategy, options=options, grader=grader, n=n, grade_all=grade_all,
        grader_settings=_grader_settings(grader_provider, grader_base_url, grader_model),
        autograde_template=autograde_template, parallel_problems=parallel_problems,
        run_budget={"tokens": budget_tokens, "cost_usd": budget_cost, "wall_s": budget_wall_s})
    if split:
        store.add_work(run_id, [p.id for p in bench_problems(store.get_run(run_id).config)])  # type: ignore[union-attr]
        return print_split(run_id, json_out)
    run_and_render(store, run_id, api_key=model_options.api_key, json_mode=json_out, verbose=verbose,
                   announce=None if json_out else f"run {run_id}")


@app.command()
@model_options
def grade(
    proofs: Annotated[Optional[Path], typer.Option(help="JSONL/CSV: statement (or problem), proof, optional id, "
                                                         "problem_id, reference_solution, guidelines, human_grade, max_points")] = None,
    dataset: Annotated[Optional[str], typer.Option(help="dsm2-outputs: re-grade the released DeepSeekMath-V2 proofs")] = None,
    data_dir: DataDir = None,
    source_run: Annotated[Optional[str], typer.Option("--run", help="re-grade the proofs of a stored run")] = None,
    which: Annotated[str, typer.Option(help="with --run: chosen | all proofs")] = "chosen",
    grader: Annotated[str, typer.Option(help="verifier | autograder | human (import the file's human grades)")] = "verifier",
    n: N = 4,
    limit: Annotated[Optional[int], typer.Option(min=1, help="only the first N proofs")] = None,
    grader_provider: GraderProvider = None, grader_base_url: GraderBaseUrl = None, grader_model: GraderModel = None,
    autograde_template: AutogradeTemplate = None,
    *, model_options: ModelOptions, db: Db = None, json_out: Json = False, verbose: Verbose = False,
) -> None:
    """Grade proofs that already exist (a file, the released dsm2 outputs, or a stored run); stores raw judge text and grades."""
    set_verbosity(verbose)
    if grader not in ("verifier", "autograder", "human"):
        raise UserInputError(f"unknown grader {grader!r}; choose verifier, autograder or human")
    _needs_bench_extra("proofloop bench grade")
    from proofloop.bench.runs import create_grade_run, render_grades

    store = open_store(db)
    run_id = create_grade_run(
        store, model_options.setup(), grader=grader, n=n, proofs=proofs, dataset=dataset, data_dir=data_dir,
        source_run=source_run, which=which, limit=limit,
        grader_settings=_grader_settings(grader_provider, grader_base_url, grader_model),
        autograde_template=autograde_template)
    if grader == "human":  # nothing to call: the grades were imported with the proofs
        if not json_out:
            note(f"run {run_id}")
        render({"run_id": run_id, **(store.get_run(run_id).summary or {})}, json_out, render_grades)  # type: ignore[union-attr]
    else:
        run_and_render(store, run_id, api_key=model_options.api_key, json_mode=json_out, verbose=verbose,
                       announce=None if json_out else f"run {run_id}")


@app.command("pack")
@model_options
def pack_bench(
    dataset: Annotated[str, typer.Option(help="a data set of the pack (`proofloop packs show NAME` lists them)")],
    data_dir: Annotated[Optional[Path], typer.Option(help="folder the pack reads its data set from "
                                                          "(law: the one holding legalbench/)")] = None,
    n: N = 4,
    limit: Annotated[Optional[int], typer.Option(min=1, help="only the first N labelled candidates")] = None,
    meta: Annotated[int, typer.Option(min=0, help="meta ratings per analysis that reports issues (0: none)")] = 0,
    *, model_options: ModelOptions, db: Db = None, json_out: Json = False, verbose: Verbose = False,
) -> None:
    """Grade a pack's labelled candidates with the verifier (the pack's templates, its evidence),
    then report the pack's metrics: precision, recall, false-accept rate at score 1, kappa, and
    with --meta the share of issue-reporting analyses the meta-verifier rejects as invented."""
    set_verbosity(verbose)
    _needs_bench_extra("proofloop bench pack")
    from proofloop.bench.packs import pack_rows
    from proofloop.bench.runs import create_grade_run
    from proofloop.packs import get_pack

    setup = model_options.setup()
    rows = pack_rows(get_pack(setup.pack), dataset, data_dir, limit)
    store = open_store(db)
    run_id = create_grade_run(store, setup, grader="verifier", n=n, rows=rows, meta=meta)
    run_and_render(store, run_id, api_key=model_options.api_key, json_mode=json_out, verbose=verbose,
                   announce=None if json_out else f"run {run_id}")


@app.command()
def agreement(
    dataset: Annotated[Optional[str], typer.Option(help="dsm2-outputs: the released 64-sample rating vs expert grades")] = None,
    data_dir: DataDir = None,
    sets: Annotated[list[str], typer.Option("--set", help="dsm2 output sets to include (default all)")] = [],
    pred: Annotated[Optional[Path], typer.Option(help="predictions file (scores in [0, 1])")] = None,
    human: Annotated[Optional[Path], typer.Option(help="human grades file")] = None,
    source_run: Annotated[Optional[str], typer.Option("--run", help="a stored run's grades vs human grades")] = None,
    grader: Annotated[Optional[str], typer.Option(help="with --run: which grader (default the run's)")] = None,
    threshold: Threshold = DEFAULT_THRESHOLD,
    human_accept: Annotated[float, typer.Option(help="normalised human grade that counts as correct")] = HUMAN_ACCEPT,
    id_field: Annotated[str, typer.Option(help="id column joining the files")] = "id",
    pred_field: Annotated[str, typer.Option(help="score column of --pred")] = "score",
    human_field: Annotated[str, typer.Option(help="grade column of --human")] = "score",
    human_max_points: Annotated[float, typer.Option(help="scale of the human grades (7 for IMO points)")] = 1.0,
    group_field: Annotated[Optional[str], typer.Option(help="column of --human to split the report by")] = None,
    n_resamples: Resamples = 2000, seed: int = 0, db: Db = None, json_out: Json = False,
) -> None:
    """How far to trust an automatic grader: precision, recall, correlations, kappa vs human grades, with CIs."""
    modes = [dataset is not None, pred is not None, source_run is not None]
    if sum(modes) != 1:
        raise UserInputError("choose one of --dataset dsm2-outputs, --pred FILE --human FILE, or --run RUN")
    _needs_bench_extra("proofloop bench agreement")
    from proofloop.bench.agreement import dsm2_agreement, file_agreement, format_agreement_table
    from proofloop.bench.runs import run_agreement

    common = dict(n_resamples=n_resamples, seed=seed)
    if dataset is not None:
        if dataset.lower() != "dsm2-outputs":
            raise UserInputError(f"agreement --dataset takes dsm2-outputs, not {dataset!r}")
        report = dsm2_agreement(data_dir, threshold, human_accept, sets=sets or None, **common)
    elif pred is not None:
        if human is None:
            raise UserInputError("--pred needs --human FILE")
        report = file_agreement(pred, human, threshold, human_accept, id_field=id_field, pred_field=pred_field,
                                human_field=human_field, human_max_points=human_max_points, group_field=group_field,
                                **common)
    else:
        report = run_agreement(open_store(db), source_run, grader, human=human, id_field=id_field,  # type: ignore[arg-type]
                               human_field=human_field, human_max_points=human_max_points, threshold=threshold,
                               human_accept=human_accept, **common)
    render(report, json_out, lambda r: [format_agreement_table(r)])


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="a bench or bench-grade run")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="folder (default ./bench-report-RUN)")] = None,
    n_resamples: Resamples = 2000, seed: int = 0, threshold: Threshold = DEFAULT_THRESHOLD,
    db: Db = None, json_out: Json = False,
) -> None:
    """Write report.md, a self-contained report.html with plots, and metrics.json."""
    _needs_bench_extra("proofloop bench report")
    from proofloop.bench.report import write_report

    store = open_store(db)
    if store.get_run(run_id) is None:
        raise UserInputError(f"no run {run_id!r} in the run store")
    paths = write_report(store, run_id, output or Path(f"bench-report-{run_id}"), n_resamples=n_resamples, seed=seed,
                         threshold=threshold)
    render(paths, json_out,
           lambda p: [f"wrote {p['markdown']} and {p['html']} ({len(p['figures'])} plots)"])

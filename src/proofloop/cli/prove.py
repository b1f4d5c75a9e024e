"""`proofloop prove | verify | meta-verify`: one problem, one stored run each."""

from __future__ import annotations

from typing import Annotated

import typer

from proofloop.cli.common import open_store, parse_options, read_input, run_and_render, set_verbosity
from proofloop.cli.options import Db, Json, ModelOptions, Verbose, model_options
from proofloop.errors import UserInputError

STRATEGIES = ("single", "sequential", "pool", "adaptive", "tree")


@model_options
def prove(
    problem: Annotated[str, typer.Argument(help="problem file, or - for stdin")],
    strategy: Annotated[str, typer.Option(help="single | sequential | pool | adaptive | tree")] = "sequential",
    attempts: Annotated[int, typer.Option(min=1, help="sequential: most proofs per thread")] = 8,
    threads: Annotated[int, typer.Option(min=1, help="sequential: parallel threads")] = 4,
    k: Annotated[int, typer.Option(min=1, help="single: proofs to sample")] = 4,
    option: Annotated[list[str], typer.Option("--option", "-o", help="strategy option key=value (repeatable); "
                                                                     "see the table above")] = [],
    *, model_options: ModelOptions, db: Db = None, json_out: Json = False, verbose: Verbose = False,
) -> None:
    set_verbosity(verbose)
    if strategy not in STRATEGIES:
        raise UserInputError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    text = read_input(problem, "problem")
    options = {"single": {"k": k}, "sequential": {"attempts": attempts, "threads": threads}}.get(strategy, {})
    options.update(parse_options(option))
    from proofloop.runs import create_prove_run

    setup = model_options.setup()
    store = open_store(db)
    run_id = create_prove_run(store, text, setup, strategy=strategy, options=options)
    run_and_render(store, run_id, api_key=model_options.api_key, json_mode=json_out, verbose=verbose,
                   announce=None if json_out else f"run {run_id}")


@model_options
def verify(
    problem: Annotated[str, typer.Option("--problem", help="problem file, or -")],
    proof: Annotated[str, typer.Option("--proof", help="proof file, or -")],
    n: Annotated[int, typer.Option("-n", min=1, help="verifier analyses")] = 4,
    steps: Annotated[bool, typer.Option("--steps", help="judge each step given its prefix; report the first wrong step")] = False,
    threshold: Annotated[float, typer.Option(help="--steps: a step whose mean score is below this is wrong")] = 0.5,
    symbolic: Annotated[bool, typer.Option("--symbolic", help="show the verifier the relations SymPy refutes (with --steps: per step)")] = False,
    *, model_options: ModelOptions, db: Db = None, json_out: Json = False, verbose: Verbose = False,
) -> None:
    """Verify a proof with n analyses: mean score and the issues found (--steps: where it first goes wrong)."""
    set_verbosity(verbose)
    if problem == "-" and proof == "-":
        raise UserInputError("only one of --problem and --proof can be read from stdin")
    text, proof_text = read_input(problem, "problem"), read_input(proof, "proof")
    from proofloop.runs import create_verify_run
    from proofloop.runs.steps import create_step_verify_run

    setup = model_options.setup()
    store = open_store(db)
    if steps:
        run_id = create_step_verify_run(store, text, proof_text, setup, n=n, threshold=threshold, symbolic=symbolic)
    else:
        run_id = create_verify_run(store, text, proof_text, setup, n=n, symbolic=symbolic)
    run_and_render(store, run_id, api_key=model_options.api_key, json_mode=json_out, verbose=verbose)


@model_options
def meta_verify(
    problem: Annotated[str, typer.Option("--problem", help="problem file, or -")],
    proof: Annotated[str, typer.Option("--proof", help="proof file, or -")],
    analysis: Annotated[str, typer.Option("--analysis", help="verifier analysis file, or -")],
    m: Annotated[int, typer.Option("-m", min=1, help="meta-verifier ratings")] = 4,
    *, model_options: ModelOptions, db: Db = None, json_out: Json = False, verbose: Verbose = False,
) -> None:
    """Rate a verifier analysis m times: are the issues it claims real?"""
    set_verbosity(verbose)
    if [problem, proof, analysis].count("-") > 1:
        raise UserInputError("only one input can be read from stdin")
    texts = read_input(problem, "problem"), read_input(proof, "proof"), read_input(analysis, "analysis")
    from proofloop.runs import create_meta_verify_run

    setup = model_options.setup()
    store = open_store(db)
    run_id = create_meta_verify_run(store, *texts, setup, m=m)
    run_and_render(store, run_id, api_key=model_options.api_key, json_mode=json_out, verbose=verbose)

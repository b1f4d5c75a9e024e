"""`proofloop runs list | show | export` and `proofloop resume`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from proofloop.cli.common import open_store, run_and_render, set_verbosity
from proofloop.cli.console import note, say
from proofloop.cli.options import Db, Json, Verbose
from proofloop.errors import UserInputError

if TYPE_CHECKING:
    from proofloop.store import Run, Store

app = typer.Typer(no_args_is_help=True, help="List, show and export stored runs.")


def stored_run(store: "Store", run_id: str) -> "Run":
    run = store.get_run(run_id)
    if run is None:
        raise UserInputError(f"no run {run_id!r} in {store.where}")
    return run


def _problem_of(run: "Run") -> str:
    text = run.config.get("problem") or run.config.get("dataset") or run.config.get("source") or ""
    first = str(text).strip().splitlines()[0] if str(text).strip() else "-"
    return first if len(first) <= 38 else first[:37] + "…"


def _best(run: "Run") -> str:
    s = run.summary or {}
    for key in ("score", "mean_score", "mean_rating"):
        value = s.get(key)
        if isinstance(value, dict):
            value = value.get("estimate")
        if value is not None:
            return f"{value:.3g}"
    return "-"


@app.command("list")
def runs_list(limit: Annotated[int, typer.Option(min=1, help="how many runs, newest first")] = 20,
              db: Db = None, json_out: Json = False) -> None:
    """The latest runs, newest first."""
    runs = open_store(db).list_runs(limit=limit)
    if json_out:
        say(json.dumps([r.model_dump(mode="json", exclude={"config", "summary"}) for r in runs]))
        return
    from proofloop.runs.render import money

    say(f"{'run':<18} {'kind':<12} {'status':<12} {'strategy':<10} {'best':>5} {'cost':>10}  {'created (UTC)':<19}  problem")
    for r in runs:
        cost = ((r.summary or {}).get("usage") or {}).get("cost_usd")
        cost_text = "-" if r.summary is None else ("?" if cost is None else money(cost))
        say(f"{r.id:<18} {r.kind:<12} {r.status.value:<12} {r.config.get('strategy') or '-':<10} {_best(r):>5} "
            f"{cost_text:>10}  {r.created_at:%Y-%m-%d %H:%M:%S}  {_problem_of(r)}")


@app.command("show")
def runs_show(run_id: str, db: Db = None, json_out: Json = False) -> None:
    """One run: status, settings, summary and usage (everything as JSON with --json)."""
    store = open_store(db)
    run = stored_run(store, run_id)
    from proofloop.runs import get_kind, run_usage
    from proofloop.runs.workers import render_progress, run_work

    data: dict[str, Any] = run.model_dump(mode="json")
    data["usage"] = run_usage(store, run_id)
    data["proofs"] = len(store.proofs(run_id))
    work = run_work(store, run_id)
    if work is not None:  # a split run (--split): how far its workers are
        data["work"] = work
    if json_out:
        say(json.dumps(data))
        return
    say(f"run {run.id}   kind {run.kind}   status {run.status.value}   "
        f"created {run.created_at:%Y-%m-%d %H:%M:%S}   updated {run.updated_at:%Y-%m-%d %H:%M:%S} (UTC)")
    settings = run.config.get("model") or {}
    say(f"model {settings.get('model') or 'default'} ({settings.get('provider')})"
        + (f" at {settings['base_url']}" if settings.get("base_url") else "") + f"   proofs stored: {data['proofs']}")
    for line in render_progress(work) if work is not None else []:
        say(line)
    if run.error:
        say(f"error: {run.error}")
    if run.summary:
        for line in get_kind(run.kind).render({**run.summary, "usage": data["usage"]}):
            say(line)
    else:
        from proofloop.runs.render import usage_line

        say(usage_line({"run_id": run.id, "usage": data["usage"]}))
        if run.status.value in ("running", "interrupted", "failed"):
            say(f"not finished: `proofloop resume {run.id}` completes it without repeating finished calls")


@app.command("export")
def runs_export(run_id: str,
                output: Annotated[Optional[Path], typer.Option("-o", "--output", help="JSONL file (default stdout)")] = None,
                db: Db = None) -> None:
    """Export a run as JSONL: each problem with its proofs, verifications, lineage and usage."""
    from proofloop.store.export import export_run_jsonl

    store = open_store(db)
    stored_run(store, run_id)
    if output is None:
        export_run_jsonl(store, run_id, sys.stdout)
        return
    if not output.parent.is_dir():
        raise UserInputError(f"cannot write {output}: the folder {output.parent} does not exist")
    lines = export_run_jsonl(store, run_id, output)
    note(f"wrote {output}: {lines} lines (1 run header + {lines - 1} problems)")


def resume(
    run_id: str,
    base_url: Annotated[Optional[str], typer.Option(help="finish on a server that moved (not part of call keys)")] = None,
    model: Annotated[Optional[str], typer.Option(help="must be the run's model: a model name is part of every call "
                                                      "key, so another one is refused")] = None,
    api_key: Annotated[Optional[str], typer.Option(help="API key (or PROOFLOOP_API_KEY)")] = None,
    max_n: Annotated[Optional[int], typer.Option(min=1, help="samples per request on the new server")] = None,
    max_concurrency: Annotated[Optional[int], typer.Option(min=1, help="requests in flight")] = None,
    attempt_timeout: Annotated[Optional[float], typer.Option(min=0.001, help="seconds per request attempt")] = None,
    db: Db = None, json_out: Json = False, verbose: Verbose = False,
) -> None:
    """Finish a run that was interrupted, killed or failed: finished calls are replayed, never sent again."""
    set_verbosity(verbose)
    from proofloop.runs import update_server

    store = open_store(db)
    stored_run(store, run_id)
    update_server(store, run_id, base_url=base_url, max_n=max_n, max_concurrency=max_concurrency,
                  attempt_timeout=attempt_timeout, model=model)
    run_and_render(store, run_id, api_key=api_key, json_mode=json_out, verbose=verbose)

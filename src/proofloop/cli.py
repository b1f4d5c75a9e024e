"""The `proofloop` command.

    proofloop prove problem.md                      # sequential refinement, best proof printed
    proofloop verify --problem p.md --proof f.md -n 8 --json
    proofloop meta-verify --problem p.md --proof f.md --analysis a.md -m 4
    proofloop runs list | runs show RUN | runs export RUN -o run.jsonl
    proofloop resume RUN                            # finish a killed run, repeating no finished call

Model server: --base-url/--model/--api-key, or PROOFLOOP_BASE_URL / PROOFLOOP_MODEL /
PROOFLOOP_API_KEY (OPENAI_* as fallback, `.env` read too). With none, the embedded SmolLM2 runs
on CPU. Bad input or an unusable server: one line on stderr and exit code 2, nothing stored lost.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from proofloop import runner
from proofloop.errors import AuthError, EndpointUnreachable, UserInputError
from proofloop.models.base import Sampling
from proofloop.models.factory import ModelSettings
from proofloop.models.wrapper import Timeouts
from proofloop.protocol import Templates

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Self-verifying proofs: prove, verify, meta-verify, search, grade and label.")
runs_app = typer.Typer(no_args_is_help=True, help="List, show and export stored runs.")
app.add_typer(runs_app, name="runs")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

# ---- options shared by the model-calling commands -----------------------------------------
Provider = Annotated[Optional[str], typer.Option(help="openai | local | sim (default: openai if a server is configured, else local)")]
BaseUrl = Annotated[Optional[str], typer.Option(help="OpenAI-compatible server URL (or PROOFLOOP_BASE_URL)")]
ApiKey = Annotated[Optional[str], typer.Option(help="API key (or PROOFLOOP_API_KEY)")]
ModelName = Annotated[Optional[str], typer.Option("--model", help="model id on the server, hub id or local path (or PROOFLOOP_MODEL)")]
MaxN = Annotated[Optional[int], typer.Option(help="most samples the server returns per request (hosted APIs: 1)")]
Concurrency = Annotated[int, typer.Option(help="concurrent requests to the server")]
MaxTokens = Annotated[int, typer.Option(help="max tokens per generated proof")]
VerifyMaxTokens = Annotated[int, typer.Option(help="max tokens per verification / meta-verification")]
Temperature = Annotated[float, typer.Option()]
TopP = Annotated[float, typer.Option()]
TemplatesDir = Annotated[Optional[Path], typer.Option(help="folder with generate.md / verify.md / meta_verify.md / refine.md to use instead of ours")]
AttemptTimeout = Annotated[Optional[float], typer.Option(help="seconds one request attempt may take")]
Db = Annotated[Optional[Path], typer.Option(help="run store file (or PROOFLOOP_DB; default ./.proofloop/proofloop.db)")]
Json = Annotated[bool, typer.Option("--json", help="print one JSON object for scripts")]
Seed = Annotated[Optional[int], typer.Option(help="seed for the search and the server's sampling")]


def _store(db: Path | None):
    from proofloop.store import Store

    return Store(db or Store.default_path())


def _read(path: Path | str, what: str) -> str:
    """Read a file (or stdin for '-'); an unreadable or empty input is a user error."""
    if str(path) == "-":
        text = sys.stdin.read()
    else:
        p = Path(path)
        if not p.is_file():
            raise UserInputError(f"{what} file not found: {p}")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserInputError(f"cannot read {what} file {p}: {e}") from None
    if not text.strip():
        raise UserInputError(f"the {what} is empty ({path})")
    return text.strip()


def _templates(folder: Path | None) -> Templates | None:
    return Templates.load(folder) if folder else None


def _sampling(max_tokens: int, verify_max_tokens: int, temperature: float, top_p: float,
              seed: int | None = None) -> dict[str, Sampling]:
    """Sampling per role. A seed makes the server's sampling reproducible (each request gets
    seed + its first sample index), which also makes n single-sample requests differ."""
    gen = Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    check = Sampling(temperature=temperature, top_p=top_p, max_tokens=verify_max_tokens, seed=seed)
    return {"gen": gen, "verify": check, "meta": check}


def _progress(json_mode: bool):
    """A live line of counts on a terminal; plain lines on stderr otherwise; nothing with --json."""
    counts = {"proof": 0, "analysis": 0, "meta": 0}
    status = None
    if not json_mode and err.is_terminal:
        status = err.status("working...")
        status.start()

    def on_record(kind: str, record: Any) -> None:
        counts[kind] += 1
        line = f"proofs {counts['proof']}  analyses {counts['analysis']}  meta {counts['meta']}"
        if status is not None:
            status.update(line)
        elif not json_mode:
            score = getattr(record, "self_score", None) if kind == "proof" else getattr(record, "score", getattr(record, "rating", None))
            err.print(f"[{kind}] status={record.status.value} score={score}  ({line})", markup=False, highlight=False)

    def stop():
        if status is not None:
            status.stop()

    return on_record, stop


def _run(store, run_id: str, api_key: str | None, json_mode: bool) -> dict[str, Any]:
    on_record, stop = _progress(json_mode)
    try:
        return runner.execute(store, run_id, api_key=api_key, on_record=on_record,
                              notice=lambda msg: err.print(msg, markup=False, highlight=False))
    finally:
        stop()


def _report(summary: dict[str, Any], json_mode: bool) -> None:
    if json_mode:
        print(json.dumps(summary, default=str))
        return
    kind = summary["kind"]
    if kind == "prove":
        if summary.get("proof"):
            out.rule("best proof")
            out.print(summary["proof"], markup=False, highlight=False)
            out.rule()
        else:
            out.print(f"no proof with a usable solution; parse statuses: {summary.get('statuses')}", markup=False)
        if summary.get("best_status") not in (None, "ok"):
            out.print(f"note: the best proof's output has status {summary['best_status']}: {summary.get('best_cause')}",
                      markup=False)
        if summary.get("score_kind") == "verification":
            report = summary.get("report") or {}
            out.print(f"mean verification score: {summary.get('score')}   self score: {summary.get('self_score')}   "
                      f"stop: {summary.get('stop_reason')}", markup=False)
            for issue in (summary.get("issues") or [])[:5]:
                out.print(f"   - {issue}", markup=False, highlight=False)
            if report.get("lineage"):
                out.print(f"lineage: {len(report['lineage'])} step(s) back to an initial proof", markup=False)
        else:
            out.print(f"self score: {summary.get('self_score')}", markup=False)
        out.print(f"strategy: {summary.get('strategy')}   proofs: {summary.get('proofs')}", markup=False)
    elif kind == "verify":
        for i, a in enumerate(summary["analyses"]):
            out.print(f"analysis {i}: score={a['score']} status={a['status']}"
                      + (f" cause={a['cause']}" if a["cause"] else ""), markup=False)
            for issue in a["issues"][:5]:
                out.print(f"   - {issue}", markup=False, highlight=False)
        out.print(f"mean score: {summary['mean_score']} over {summary['n_valid']}/{summary['n']} valid analyses",
                  markup=False)
    elif kind == "label":
        from proofloop.label_cli import report

        report(summary)
        return
    elif kind == "meta-verify":
        for i, r in enumerate(summary["ratings"]):
            out.print(f"rating {i}: {r['rating']} status={r['status']}" + (f" cause={r['cause']}" if r["cause"] else ""),
                      markup=False)
        out.print(f"mean rating: {summary['mean_rating']} over {summary['n_valid']}/{summary['m']}", markup=False)
    u = summary.get("usage", {})
    out.print(f"run: {summary['run_id']}   calls: {u.get('calls')}   failures: {u.get('failures')}   "
              f"tokens: {u.get('prompt_tokens')} in / {u.get('completion_tokens')} out", markup=False)


def _timeouts(attempt_timeout: float | None) -> Timeouts:
    return Timeouts(attempt_s=attempt_timeout) if attempt_timeout else Timeouts()


@app.command()
def prove(
    problem: Annotated[str, typer.Argument(help="problem file, or - for stdin")],
    strategy: Annotated[str, typer.Option(help="single | sequential | pool | adaptive")] = "sequential",
    attempts: Annotated[int, typer.Option(help="sequential: most proofs per thread")] = 8,
    threads: Annotated[int, typer.Option(help="sequential: parallel threads")] = 4,
    k: Annotated[int, typer.Option(help="single: proofs to sample")] = 4,
    option: Annotated[list[str], typer.Option("--option", "-o", help="strategy option key=value (repeatable)")] = [],
    provider: Provider = None, base_url: BaseUrl = None, api_key: ApiKey = None, model: ModelName = None,
    max_n: MaxN = None, max_concurrency: Concurrency = 8, max_tokens: MaxTokens = 8192,
    verify_max_tokens: VerifyMaxTokens = 8192, temperature: Temperature = 1.0, top_p: TopP = 0.95,
    templates: TemplatesDir = None, attempt_timeout: AttemptTimeout = None,
    seed: Seed = None, db: Db = None, json_out: Json = False,
):
    """Prove a problem: sequential refinement with self verification by default."""
    text = _read(problem, "problem")
    options: dict[str, Any] = {"single": {"k": k}, "sequential": {"attempts": attempts, "threads": threads}}.get(strategy, {})
    options.update(_parse_options(option))
    store = _store(db)
    run_id = runner.create_prove_run(
        store, text, ModelSettings(provider=provider, base_url=base_url, model=model, max_n=max_n),
        strategy=strategy, options=options,
        sampling=_sampling(max_tokens, verify_max_tokens, temperature, top_p, seed),
        templates=_templates(templates), max_concurrency=max_concurrency, timeouts=_timeouts(attempt_timeout),
        seed=seed or 0, api_key=api_key)
    if not json_out:
        err.print(f"run {run_id}", markup=False)
    _report(_run(store, run_id, api_key, json_out), json_out)


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserInputError(f"--option takes key=value, got {pair!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


@app.command()
def verify(
    problem: Annotated[str, typer.Option("--problem", help="problem file, or -")],
    proof: Annotated[str, typer.Option("--proof", help="proof file, or -")],
    n: Annotated[int, typer.Option("-n", help="verifier analyses")] = 4,
    provider: Provider = None, base_url: BaseUrl = None, api_key: ApiKey = None, model: ModelName = None,
    max_n: MaxN = None, max_concurrency: Concurrency = 8, verify_max_tokens: VerifyMaxTokens = 8192,
    temperature: Temperature = 1.0, top_p: TopP = 0.95, templates: TemplatesDir = None,
    attempt_timeout: AttemptTimeout = None, seed: Seed = None, db: Db = None, json_out: Json = False,
):
    """Verify a proof with n analyses: mean score and the issues found."""
    if problem == "-" and proof == "-":
        raise UserInputError("only one of --problem and --proof can be read from stdin")
    text, proof_text = _read(problem, "problem"), _read(proof, "proof")
    store = _store(db)
    run_id = runner.create_verify_run(
        store, text, proof_text, ModelSettings(provider=provider, base_url=base_url, model=model, max_n=max_n),
        n=n, sampling=_sampling(verify_max_tokens, verify_max_tokens, temperature, top_p, seed),
        templates=_templates(templates), max_concurrency=max_concurrency, timeouts=_timeouts(attempt_timeout),
        api_key=api_key)
    _report(_run(store, run_id, api_key, json_out), json_out)


@app.command("meta-verify")
def meta_verify(
    problem: Annotated[str, typer.Option("--problem", help="problem file, or -")],
    proof: Annotated[str, typer.Option("--proof", help="proof file, or -")],
    analysis: Annotated[str, typer.Option("--analysis", help="verifier analysis file, or -")],
    m: Annotated[int, typer.Option("-m", help="meta-verifier ratings")] = 4,
    provider: Provider = None, base_url: BaseUrl = None, api_key: ApiKey = None, model: ModelName = None,
    max_n: MaxN = None, max_concurrency: Concurrency = 8, verify_max_tokens: VerifyMaxTokens = 8192,
    temperature: Temperature = 1.0, top_p: TopP = 0.95, templates: TemplatesDir = None,
    attempt_timeout: AttemptTimeout = None, seed: Seed = None, db: Db = None, json_out: Json = False,
):
    """Rate a verifier analysis m times: are the issues it claims real?"""
    if [problem, proof, analysis].count("-") > 1:
        raise UserInputError("only one input can be read from stdin")
    texts = _read(problem, "problem"), _read(proof, "proof"), _read(analysis, "analysis")
    store = _store(db)
    run_id = runner.create_verify_run(
        store, texts[0], texts[1], ModelSettings(provider=provider, base_url=base_url, model=model, max_n=max_n),
        analysis=texts[2], m=m, sampling=_sampling(verify_max_tokens, verify_max_tokens, temperature, top_p, seed),
        templates=_templates(templates), max_concurrency=max_concurrency, timeouts=_timeouts(attempt_timeout),
        api_key=api_key)
    _report(_run(store, run_id, api_key, json_out), json_out)


@app.command()
def resume(run_id: str, api_key: ApiKey = None, db: Db = None, json_out: Json = False):
    """Finish a run that was interrupted or killed; finished calls are replayed, not repeated."""
    store = _store(db)
    if store.get_run(run_id) is None:
        raise UserInputError(f"no run {run_id!r} in {db or 'the run store'}")
    _report(_run(store, run_id, api_key, json_out), json_out)


@runs_app.command("list")
def runs_list(limit: int = 20, db: Db = None, json_out: Json = False):
    """The latest runs."""
    runs = _store(db).list_runs(limit=limit)
    if json_out:
        print(json.dumps([r.model_dump(mode="json", exclude={"config", "summary"}) for r in runs]))
        return
    for r in runs:
        out.print(f"{r.id}  {r.kind:<12} {r.status.value:<12} {r.created_at:%Y-%m-%d %H:%M:%S}", markup=False)


@runs_app.command("show")
def runs_show(run_id: str, db: Db = None, json_out: Json = False):
    """One run: its configuration, status, summary and usage."""
    store = _store(db)
    run = store.get_run(run_id)
    if run is None:
        raise UserInputError(f"no run {run_id!r}")
    data = run.model_dump(mode="json")
    data["usage"] = store.run_usage(run_id).model_dump()
    data["proofs"] = len(store.proofs(run_id))
    if json_out:
        print(json.dumps(data))
        return
    out.print_json(json.dumps(data))


@runs_app.command("export")
def runs_export(run_id: str, output: Annotated[Optional[Path], typer.Option("-o", "--output", help="JSONL file (default stdout)")] = None,
                db: Db = None):
    """Export a run as JSONL: each problem with its proofs, verifications, lineage and usage."""
    from proofloop.store.export import export_run_jsonl

    store = _store(db)
    if store.get_run(run_id) is None:
        raise UserInputError(f"no run {run_id!r}")
    export_run_jsonl(store, run_id, output if output else sys.stdout)


SUB_APPS = {  # name -> (module, help); imported only when used: they pull in scipy and matplotlib
    "sim": ("proofloop.sim.cli", "The simulated model: in-process or as an OpenAI-compatible server."),
    "label": ("proofloop.label_cli", "Label proofs automatically (paper 2.3)."),
    "bench": ("proofloop.bench.cli", "Benchmarks: prove and grade datasets, grader agreement, reports."),
}
_mounted: set[str] = set()


def _mount_optional_apps(only: str | None = None) -> None:
    """Mount the sub-commands that live with their feature (all of them, or just `only`)."""
    import importlib

    for name, (module, help_text) in SUB_APPS.items():
        if name not in _mounted and only in (None, name):
            app.add_typer(importlib.import_module(module).app, name=name, help=help_text)
            _mounted.add(name)


def main() -> None:
    """Entry point: one clear line and exit code 2 for errors a user can fix."""
    first = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if first in SUB_APPS or first is None:  # `proofloop --help` lists them all
        _mount_optional_apps(first)
    try:
        app()  # standalone: click reports usage errors itself (exit 2)
    except (UserInputError, AuthError, EndpointUnreachable) as e:
        err.print(f"proofloop: error: {e}", markup=False, highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()

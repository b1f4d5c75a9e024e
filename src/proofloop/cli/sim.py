"""`proofloop sim ...`: the simulator's commands (the main CLI mounts `app` as `sim`).

    proofloop sim serve --port 8000 --time-scale 1000 --max-n 64 --fail-rate 0.2 --seed 1
    proofloop sim problems 5 --mix advanced        # print simulated problem statements
    proofloop sim calibrate /path/to/dsm2/outputs  # refit the verifier, print the table

    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["problems", "1", "--seed", "2"]).output.startswith("<!-- sim:problem")
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from proofloop import serving
from proofloop.sim import calibration
from proofloop.sim.model import MIXES, make_problems
from proofloop.sim.server import FAULT_KINDS, ServerModel, app_from_args, _parser

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="The simulated DeepSeekMath-V2 (docs/SIMULATOR.md).")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="0: pick a free port (the URL is printed)")] = 8000,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="model seed (also seeds the fault draws)")] = 0,
    model: Annotated[str, typer.Option(help="model id the server reports")] = "sim-1",
    max_n: Annotated[Optional[int], typer.Option(help="reject n above this with a 400")] = None,
    time_scale: Annotated[float, typer.Option(help="simulated seconds per real second")] = 1000.0,
    no_timing: Annotated[bool, typer.Option("--no-timing", help="answer at once (no server model)")] = False,
    slots: Annotated[int, typer.Option(help="concurrent sequences")] = ServerModel.slots,
    prefill_tps: Annotated[float, typer.Option(help="prefill tokens/s")] = ServerModel.prefill_tps,
    decode_tps_seq: Annotated[float, typer.Option(help="decode tokens/s per sequence")] = ServerModel.decode_tps_seq,
    decode_tps_total: Annotated[float, typer.Option(help="decode tokens/s, all sequences")] = ServerModel.decode_tps_total,
    cache_tokens: Annotated[int, typer.Option(help="prefix-cache capacity in tokens")] = ServerModel.cache_tokens,
    fail_rate: Annotated[float, typer.Option(help="share of requests that fail on purpose")] = 0.0,
    fault_kinds: Annotated[str, typer.Option(help=f"comma-separated, from {','.join(FAULT_KINDS)}")]
        = "rate_limit,server_error,drop,malformed",
    retry_after: Annotated[float, typer.Option(help="Retry-After seconds on 429/500")] = 1.0,
    slow_delay: Annotated[float, typer.Option(help="real seconds a 'slow' fault waits")] = 5.0,
    reasoning: Annotated[str, typer.Option(help="field | inline | none")] = "field",
    calibration_data: Annotated[Optional[Path], typer.Option(help="dsm2 outputs dir to fit the verifier from")] = None,
    api_key: Annotated[Optional[str], typer.Option(help="require this Bearer key")] = None,
    request_log: Annotated[Optional[Path], typer.Option(help="append one JSON line per request")] = None,
    url_file: Annotated[Optional[Path], typer.Option(help="write the base URL here once listening")] = None,
    log_level: Annotated[str, typer.Option()] = "warning",
) -> None:
    """Run the simulated model as an OpenAI-compatible chat-completions server."""
    argv = ["--host", host, "--port", str(port), "--seed", str(seed), "--model", model,
            "--time-scale", str(time_scale), "--slots", str(slots), "--prefill-tps", str(prefill_tps),
            "--decode-tps-seq", str(decode_tps_seq), "--decode-tps-total", str(decode_tps_total),
            "--cache-tokens", str(cache_tokens), "--fail-rate", str(fail_rate), "--fault-kinds", fault_kinds,
            "--retry-after", str(retry_after), "--slow-delay", str(slow_delay), "--reasoning", reasoning,
            "--log-level", log_level]
    for flag, value in (("--max-n", max_n), ("--calibration-data", calibration_data), ("--api-key", api_key),
                        ("--request-log", request_log), ("--url-file", url_file)):
        if value is not None:
            argv += [flag, str(value)]
    if no_timing:
        argv.append("--no-timing")
    try:
        args = _parser().parse_args(argv)
        built = app_from_args(args)
    except (ValueError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except SystemExit:  # argparse rejected a value (e.g. --reasoning)
        raise typer.Exit(2) from None
    serving.serve(built, args.host, args.port, url_file=args.url_file, log_level=args.log_level)


@app.command()
def problems(
    count: Annotated[int, typer.Argument(help="how many problems")],
    seed: Annotated[int, typer.Option()] = 0,
    mix: Annotated[str, typer.Option(help=f"one of {', '.join(MIXES)}")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON list")] = False,
) -> None:
    """Print simulated problem statements (each with its hidden difficulty tag)."""
    if mix not in MIXES:
        typer.echo(f"error: unknown mix {mix!r}; choose from {', '.join(MIXES)}", err=True)
        raise typer.Exit(2)
    items = make_problems(count, seed, mix)
    typer.echo(json.dumps(items, indent=2) if as_json else "\n\n".join(items))


@app.command()
def calibrate(
    data_dir: Annotated[Optional[Path], typer.Argument(help="dsm2 outputs dir (default: $PROOFLOOP_DSM2_OUTPUTS "
                                                           "or ../shared/data/dsm2/outputs)")] = None,
) -> None:
    """Fit the verifier to the released outputs and print the table (committed one if no data)."""
    try:
        cal = calibration.load(data_dir)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(asdict(cal), indent=2))
    typer.echo(f"P(mean >= 0.75 | incorrect) = {cal.accept_prob_incorrect():.3f}; expected precision at 0.75 "
               f"with the data's mix = {cal.precision_at():.3f}")

"""`proofloop sim ...`: the simulator's commands (the main CLI mounts `app` as `sim`).

    proofloop sim serve --port 8000 --time-scale 1000 --max-n 64 --fail-rate 0.2 --seed 1
    proofloop sim problems 5 --mix advanced        # print simulated problem statements
    proofloop sim calibrate /path/to/dsm2/outputs  # refit the verifier, print the table

    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["problems", "1", "--seed", "2"]).output.startswith("<!-- sim:problem")
    True

`python -m proofloop.cli sim serve --port 0` is the way to start it from another program.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from proofloop.errors import UserInputError

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="The simulated DeepSeekMath-V2 (docs/SIMULATOR.md).")


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="0: pick a free port (the URL is printed)")] = 8000,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="model seed (also seeds the fault draws)")] = 0,
    model: Annotated[str, typer.Option(help="model id the server reports")] = "sim-1",
    max_n: Annotated[Optional[int], typer.Option(min=1, help="reject n above this with a 400")] = None,
    time_scale: Annotated[float, typer.Option(min=0.001, help="simulated seconds per real second")] = 1000.0,
    no_timing: Annotated[bool, typer.Option("--no-timing", help="answer at once (no server model)")] = False,
    slots: Annotated[Optional[int], typer.Option(min=1, help="concurrent sequences [default: 704, docs/SIMULATOR.md]")] = None,
    prefill_tps: Annotated[Optional[float], typer.Option(min=0.001, help="prefill tokens/s [default: 73700, docs/SIMULATOR.md]")] = None,
    decode_tps_seq: Annotated[Optional[float], typer.Option(min=0.001, help="decode tokens/s per sequence [default: 21, docs/SIMULATOR.md]")] = None,
    decode_tps_total: Annotated[Optional[float], typer.Option(min=0.001, help="decode tokens/s, all sequences [default: 14800, docs/SIMULATOR.md]")] = None,
    cache_tokens: Annotated[Optional[int], typer.Option(min=0, help="prefix-cache capacity in tokens [default: 4000000, docs/SIMULATOR.md]")] = None,
    fail_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="share of requests that fail on purpose")] = 0.0,
    fault_kinds: Annotated[str, typer.Option(help="comma-separated, from rate_limit, server_error, drop, drop_mid, "
                                                  "slow, truncate, malformed")] = "rate_limit,server_error,drop,malformed",
    retry_after: Annotated[float, typer.Option(help="Retry-After seconds on 429/500")] = 1.0,
    slow_delay: Annotated[float, typer.Option(help="real seconds a 'slow' fault waits")] = 5.0,
    reasoning: Annotated[str, typer.Option(help="field | inline | none")] = "field",
    calibration_data: Annotated[Optional[Path], typer.Option(help="dsm2 outputs dir to fit the verifier from")] = None,
    api_key: Annotated[Optional[str], typer.Option(help="require this Bearer key")] = None,
    request_log: Annotated[Optional[Path], typer.Option(help="append one JSON line per request")] = None,
    url_file: Annotated[Optional[Path], typer.Option(help="write the base URL here once listening")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level")] = "warning",
) -> None:
    """Run the simulated model as an OpenAI-compatible chat-completions server."""
    from proofloop.sim.app import sim_app
    from proofloop.sim.http import serve as serve_app

    try:
        rates = {"slots": slots, "prefill_tps": prefill_tps, "decode_tps_seq": decode_tps_seq,
                 "decode_tps_total": decode_tps_total, "cache_tokens": cache_tokens}
        built = sim_app(seed=seed, model_name=model, max_n=max_n, timing=not no_timing, time_scale=time_scale,
                        server_rates={k: v for k, v in rates.items() if v is not None}, fail_rate=fail_rate,
                        fault_kinds=[k.strip() for k in fault_kinds.split(",") if k.strip()],
                        retry_after=retry_after, slow_delay_s=slow_delay, reasoning=reasoning,
                        calibration_data=calibration_data, api_key=api_key, request_log=request_log)
    except (ValueError, FileNotFoundError) as e:
        raise UserInputError(str(e)) from None
    serve_app(built, host, port, url_file=url_file, log_level=log_level)


@app.command()
def problems(
    count: Annotated[int, typer.Argument(help="how many problems")],
    seed: Annotated[int, typer.Option()] = 0,
    mix: Annotated[str, typer.Option(help="default | basic | advanced | hard")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="one JSON list")] = False,
) -> None:
    """Print simulated problem statements (each with its hidden difficulty tag)."""
    from proofloop.sim.model import MIXES, make_problems

    if mix not in MIXES:
        raise UserInputError(f"unknown mix {mix!r}; choose from {', '.join(MIXES)}")
    items = make_problems(count, seed, mix)
    typer.echo(json.dumps(items, indent=2) if as_json else "\n\n".join(items))


@app.command()
def calibrate(
    data_dir: Annotated[Optional[Path], typer.Argument(help="dsm2 outputs dir (default: $PROOFLOOP_DSM2_OUTPUTS "
                                                           "or ../shared/data/dsm2/outputs)")] = None,
) -> None:
    """Fit the verifier to the released outputs and print the table (committed one if no data)."""
    from proofloop.sim import calibration

    try:
        cal = calibration.load(data_dir)
    except (FileNotFoundError, ValueError) as e:
        raise UserInputError(str(e)) from None
    typer.echo(json.dumps(asdict(cal), indent=2))
    typer.echo(f"P(mean >= 0.75 | incorrect) = {cal.accept_prob_incorrect():.3f}; expected precision at 0.75 "
               f"with the data's mix = {cal.precision_at():.3f}")

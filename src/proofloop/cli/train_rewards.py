"""`proofloop train serve-rewards`: the reward server (train/reward_server.py) on its own.

    proofloop train serve-rewards --port 8100 --judge-base-url http://judge:8000/v1 --judge-model M -n 4
    proofloop train serve-rewards --port 0 --judge-provider sim   # the simulator judges (for trying it)
    proofloop train serve-rewards --port 8100                      # no judge: verifier / meta-verifier only

It prints `PROOFLOOP_SERVING_URL http://HOST:PORT/v1` once it listens; POST batches to
`<that URL>/rewards`. Without a judge, the generator task and the verifier's `with_meta`
answer 503.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from proofloop.cli.options import REPLICAS_HELP, joined_urls
from proofloop.errors import UserInputError


def serve_rewards(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0: pick a free port (the URL is printed)")] = 8100,
    judge_provider: Annotated[Optional[str], typer.Option(
        help="openai | sim | local (default: openai when --judge-base-url is given, else no judge)")] = None,
    judge_base_url: Annotated[Optional[list[str]], typer.Option(
        help="OpenAI-compatible server of the verifier / meta-verifier, e.g. http://host:8000/v1" + REPLICAS_HELP)] = None,
    judge_model: Annotated[Optional[str], typer.Option(help="model id on the judge server (or PROOFLOOP_MODEL)")] = None,
    judge_api_key: Annotated[Optional[str], typer.Option(help="API key of the judge server (or PROOFLOOP_API_KEY)")] = None,
    n: Annotated[int, typer.Option("-n", "--n", min=1, max=64, help="verifier analyses per proof (their mean is R_Y)")] = 4,
    max_concurrency: Annotated[int, typer.Option(
        min=1, help="judge requests in flight (a step sends two per generator completion, all at once)")] = 512,
    judge_max_tokens: Annotated[int, typer.Option(min=1, help="max tokens per judge analysis or rating")] = 65536,
    seed: Annotated[Optional[int], typer.Option(help="seed of the judge's sampling (reproducible judgements)")] = None,
    judge_stream: Annotated[bool, typer.Option(
        help="stream the judge's answers (costs ~0.1 ms of CPU per token here; whole answers by default)")] = False,
    judge_timeout: Annotated[float, typer.Option(
        min=1.0, help="seconds a whole (not streamed) judge answer may take")] = 7200.0,
    max_batch: Annotated[int, typer.Option(min=1, max=8192, help="most items per request (413 above)")] = 1024,
    max_text_chars: Annotated[int, typer.Option(
        min=1, max=2_000_000, help="most characters per text field (413 above)")] = 1_000_000,
    url_file: Annotated[Optional[Path], typer.Option(help="write the base URL here once listening")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level")] = "warning",
) -> None:
    """Serve the paper's rewards over HTTP: POST /v1/rewards scores a batch of completions."""
    from proofloop.models.factory import ModelSettings
    from proofloop.sim.http import serve
    from proofloop.train.reward_server import RewardLimits, create_app, judge_from_settings

    judge, base_url = None, joined_urls(judge_base_url)
    if judge_provider or base_url:
        settings = ModelSettings(provider=judge_provider or "openai", base_url=base_url, model=judge_model,
                                 stream=judge_stream)
        judge = judge_from_settings(settings, api_key=judge_api_key, n=n, max_concurrency=max_concurrency,
                                    max_tokens=judge_max_tokens, seed=seed, response_timeout_s=judge_timeout)
    elif judge_model:
        raise UserInputError("--judge-model needs --judge-base-url (or --judge-provider)")
    serve(create_app(judge, limits=RewardLimits(max_batch, max_text_chars)), host, port, url_file=url_file,
          log_level=log_level)

"""`proofloop serve`: the proof service (HTTP API, web viewer, reward server, metrics) on uvicorn.

    proofloop serve --port 8080 --provider sim                # loopback: no token needed
    PROOFLOOP_API_TOKENS=t1,t2 proofloop serve --host 0.0.0.0 --base-url http://gpu:8000/v1

Runs started over HTTP use these model options (the request may change sampling and
budgets); they execute in --workers background threads on the run store --db, and a server
started again resumes the runs a killed one left. Nothing heavy is imported until it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from proofloop.cli.options import Db, ModelOptions, model_options

app = typer.Typer(add_completion=False)


@app.callback(invoke_without_command=True)
@model_options
def serve(
    host: Annotated[str, typer.Option(help="address to bind; anything but loopback needs tokens")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="port (0: any free one, printed)")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="runs executed at the same time")] = 2,
    token_file: Annotated[Optional[Path], typer.Option(
        help="bearer tokens, one per line (PROOFLOOP_API_TOKENS adds comma-separated ones)")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="serve without tokens even on a public address")] = False,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="largest request body accepted")] = 2_000_000,
    url_file: Annotated[Optional[Path], typer.Option(help="write the server's URL here once it listens")] = None,
    *, model_options: ModelOptions, db: Db = None,
) -> None:
    """Serve the HTTP API (POST /v1/prove, /v1/verify, /v1/grade, /v1/rewards, GET /v1/runs,
    /metrics) and the web viewer (/ui/)."""
    from proofloop.extras import require

    uvicorn = require("uvicorn", "serve", "proofloop serve")
    require("prometheus_client", "serve", "proofloop serve")
    from proofloop.api import Limits, ServeSettings, create_app, load_tokens
    from proofloop.store import Store
    from proofloop.store.backends import parse_target
    from proofloop.cli.console import note

    setup = model_options.setup()
    setup.resolved()  # a server that cannot work fails now, in one line, not at the first run
    settings = ServeSettings(db=db or Store.default_path(), setup=setup, api_key=model_options.api_key,
                             workers=workers, tokens=load_tokens(token_file), no_auth=no_auth, host=host,
                             limits=Limits(max_body_bytes=max_body_bytes))
    settings.check_bind()
    sock = listening_socket(host, port)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"
    note(f"proofloop serve: {url}  (viewer {url}/ui/, API {url}/v1, schema {url}/openapi.json, metrics {url}/metrics; "
         f"auth {'on' if settings.auth_required else 'off'}, {workers} worker(s), store {parse_target(settings.db).where})")
    if url_file is not None:
        url_file.write_text(url + "\n", encoding="utf-8")
    config = uvicorn.Config(create_app(settings), log_level="info", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


def listening_socket(host: str, port: int):  # noqa: ANN201 - socket imported here only
    """Bound and listening before uvicorn starts, so port 0 gives a known free port at once."""
    import socket

    from proofloop.errors import UserInputError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserInputError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(128)
    return sock

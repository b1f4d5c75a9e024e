"""Start and stop OpenAI-compatible test servers on 127.0.0.1 (in a thread or a subprocess).

    with running_server(faults=Faults(by_request={1: Fault(kind="server_error")})) as (server, log):
        model = fast_model(server.base_url)
        ...  # log: one dict per request the server received
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Any, Iterator

from proofloop.models.cache import InMemoryCallCache
from proofloop.models.openai_provider import OpenAIProvider
from proofloop.models.wrapper import Model, RetryPolicy, Timeouts
from proofloop.sim.http import Faults, Responder, ServerThread, make_app
from support.scripted import ServerProcess, scripted_responder

FAST_RETRY = RetryPolicy(max_attempts=3, initial_s=0.01, max_s=0.05)
FAST_TIMEOUTS = Timeouts(connect_s=2.0, idle_read_s=10.0)


@contextmanager
def running_server(responder: Responder | None = None, *, faults: Faults | None = None,
                   **app_kw: Any) -> Iterator[tuple[ServerThread, list[dict[str, Any]]]]:
    """A scripted (or given) responder behind make_app, in a thread; yields (server, request log)."""
    log: list[dict[str, Any]] = []
    app = make_app(responder or scripted_responder(), faults=faults, request_log=log, **app_kw)
    with ServerThread(app) as server:
        yield server, log


@contextmanager
def server_process(**kw: Any) -> Iterator[ServerProcess]:
    """`python -m support.scripted` as a subprocess (ServerProcess arguments)."""
    with ServerProcess(**kw) as proc:
        yield proc


def fast_model(base_url: str, *, model: str = "scripted", stream: bool = True, max_n: int | None = None,
               retry: RetryPolicy = FAST_RETRY, timeouts: Timeouts = FAST_TIMEOUTS,
               cache: InMemoryCallCache | None = None, api_key: str | None = None, **kw: Any) -> Model:
    """A Model over OpenAIProvider with millisecond backoff, so fault tests stay quick."""
    provider = OpenAIProvider(model, base_url=base_url, api_key=api_key, stream=stream, max_n=max_n)
    return Model(provider, retry=retry, timeouts=timeouts, cache=cache if cache is not None else InMemoryCallCache(),
                 **kw)


def closed_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

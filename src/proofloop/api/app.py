"""The proof service's FastAPI app: /v1 (api/routes.py), /metrics, /healthz, /readyz, the web
viewer under /ui and the reward server at /v1/rewards (api/mounts.py), and any other router.

    create_app(settings, routers=[Mount(viewer_router), Mount(reward_router, prefix="/reward")])

Each `Mount` is included as-is, with the bearer-token dependency when `auth` is true. A mounted
router reaches the store, the workers and the settings through `services(request)` (also
`request.app.state.services`); it starts runs with `services.start(...)` helpers in routes.py.

At start-up the app resumes the unfinished runs this service started (a killed server's
runs), at shut-down it stops executing runs (stored interrupted, resumed next start).

Every error is JSON `{"error": "<one line>"}`: 4xx for bad input (422 with `details` for a
body or query that breaks the schema, 400 for input the run layer refuses, 404, 409, 413
for a body over the limit), never a 500 for anything a client sent.

    >>> from proofloop.api.settings import ServeSettings
    >>> app = create_app(ServeSettings(db=":memory:"))
    >>> sorted(p for p in app.openapi()["paths"] if p.startswith("/v1/runs"))[:2]
    ['/v1/runs', '/v1/runs/{run_id}']
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proofloop.errors import UserInputError
from proofloop.store import RunBusy, Store, StoreError

from proofloop.api.auth import require_token
from proofloop.api.events import StoreWrites
from proofloop.api.metrics import CONTENT_TYPE, Metrics
from proofloop.api.mounts import include_rewards, include_viewer
from proofloop.api.settings import ServeSettings
from proofloop.api.workers import Conflict, Workers

log = logging.getLogger("proofloop.api")


@dataclass
class Mount:
    """A router to include: under `prefix`, behind the bearer tokens when `auth`."""

    router: APIRouter
    prefix: str = ""
    auth: bool = True


@dataclass
class Services:
    """What the routes share: one store, the workers, the metrics, the settings."""

    settings: ServeSettings
    store: Store
    workers: Workers
    metrics: Metrics
    writes: StoreWrites  # wakes event streams when this process stores something
    extra: dict[str, Any] = field(default_factory=dict)  # for mounted routers' own state


def services(request: Request) -> Services:
    return request.app.state.services


def create_app(settings: ServeSettings, routers: Sequence[Mount] = ()) -> FastAPI:
    """The app over the store at settings.db; `routers` are mounted after the built-in ones."""
    from proofloop.api.routes import v1_router

    store = Store(settings.db, on_wait=lambda message: log.warning("%s", message))
    workers = Workers(store, settings.workers, api_key=settings.api_key)
    metrics = Metrics(store, queue_depth=workers.queue_depth, executing=workers.executing)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.resume_unfinished:
            await run_in_threadpool(workers.resume_unfinished)
        yield
        await run_in_threadpool(workers.shutdown)

    app = FastAPI(title="proofloop", version="1", lifespan=lifespan,
                  description="Prove, verify and grade with self-verifying models; runs, progress events, metrics.")
    app.state.services = Services(settings, store, workers, metrics, StoreWrites(store))
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(HttpMetrics, metrics=metrics)
    add_error_handlers(app)
    app.include_router(v1_router(settings), dependencies=[Depends(require_token)])
    app.include_router(service_router())
    if settings.viewer:
        include_viewer(app, app.state.services)
    if settings.rewards:
        include_rewards(app, app.state.services)
    for mount in routers:  # the lead mounts the viewer and the reward server here
        app.include_router(mount.router, prefix=mount.prefix,
                           dependencies=[Depends(require_token)] if mount.auth else [])
    return app


def service_router() -> APIRouter:
    router = APIRouter(tags=["service"])

    @router.get("/healthz")
    def healthz() -> dict[str, bool]:
        """The process answers."""
        return {"ok": True}

    @router.get("/readyz")
    def readyz(request: Request) -> JSONResponse:
        """The store can be read and the workers take runs: ready for requests (else 503)."""
        s = services(request)
        try:
            s.store.get_run("readyz-probe")
        except Exception as e:  # noqa: BLE001 - not ready, and why
            return JSONResponse({"ready": False, "error": str(e)}, status_code=503)
        return JSONResponse({"ready": True, "queue_depth": s.workers.queue_depth(), "executing": s.workers.executing()})

    @router.get("/metrics", dependencies=[Depends(require_token)], response_class=Response)
    def prometheus(request: Request) -> Response:
        """Prometheus exposition: model calls, tokens, cost, failures, latency, queue, runs."""
        return Response(services(request).metrics.render(), media_type=CONTENT_TYPE)

    return router


# ---- errors -----------------------------------------------------------------------------------


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        details = [{"loc": [str(x) for x in err.get("loc", ())], "msg": str(err.get("msg")), "type": err.get("type")}
                   for err in e.errors()]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        return _error(422, f"invalid request: {'.'.join(first['loc'])}: {first['msg']}", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(StoreError)  # before UserInputError: a locked or damaged store is ours
    async def store_error(request: Request, e: StoreError) -> JSONResponse:
        return _error(409 if isinstance(e, RunBusy) else 503, str(e))

    @app.exception_handler(Conflict)
    async def conflict(request: Request, e: Conflict) -> JSONResponse:
        return _error(409, str(e))

    @app.exception_handler(UserInputError)
    async def bad_input(request: Request, e: UserInputError) -> JSONResponse:
        return _error(400, str(e))

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, f"internal error ({type(e).__name__}); see the server log")


# ---- middleware (plain ASGI: streaming responses pass through untouched) ---------------------


class BodyLimit:
    """413 for a request body over `max_bytes`, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0").decode("latin-1")
        if not length.isdigit() or int(length) > self.max_bytes:
            return await self._refuse(scope, receive, send, length)
        seen, started, refused = 0, False, False

        async def counted() -> Message:
            # Over the limit: answer 413 now and tell the app the client left (an exception
            # here would reach FastAPI's body parser, which turns it into a 400).
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes and not refused:
                refused = True
                if not started:
                    await self._refuse(scope, receive, send, str(seen))
                return {"type": "http.disconnect"}
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            if refused:  # the 413 went out; whatever the app says after it is dropped
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, length: str) -> None:
        message = (f"request body too large ({length} bytes; at most {self.max_bytes})" if length.isdigit()
                   else "bad Content-Length header")
        await _error(413 if length.isdigit() else 400, message)(scope, receive, send)


class HttpMetrics:
    """Counts each request by method, route template and status; times it to its first byte."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", "unmatched")  # the template, not the ids
                self.metrics.observe_http(scope["method"], route, message["status"], time.perf_counter() - t0)
            await send(message)

        await self.app(scope, receive, timed)

"""The simulator's OpenAI-compatible HTTP front end: a small chat-completions server.

The server knows nothing about proofs. A *responder* (an async callable) turns one parsed
request into n choices; the server does the HTTP part (streaming SSE or one JSON body, usage,
/v1/models, /health), injects faults on purpose (429, 500, dropped connections, slow answers,
truncated or malformed output) and logs every request with a fingerprint of its body, so a
test can prove that no finished call was sent twice. sim/app.py plugs the simulated model in
(`proofloop sim serve`); the test suite plugs in a scripted responder (tests/support/scripted.py).

Writing a responder:

    async def responder(req: ChatRequest) -> Reply:
        # req.model, req.messages, req.n, req.max_tokens, req.temperature, req.top_p,
        # req.seed, req.stream, req.extra (every other body field, e.g. top_k), req.body (raw)
        return Reply([Choice(text="...", reasoning_content=None, finish_reason="stop")
                      for _ in range(req.n)], prompt_tokens=12)

In a thread:

    >>> async def echo(req):
    ...     return Reply([Choice(text=req.messages[-1]["content"]) for _ in range(req.n)], prompt_tokens=3)
    >>> with ServerThread(make_app(echo, request_log=(log := []))) as server:
    ...     import httpx2
    ...     r = httpx2.post(server.base_url + "/chat/completions", json={
    ...         "model": "m", "messages": [{"role": "user", "content": "Prove 1+1=2."}]})
    >>> r.json()["choices"][0]["message"]["content"]
    'Prove 1+1=2.'
    >>> log[0]["outcome"]
    'ok'

In the foreground (`proofloop sim serve`): `serve(app, host, port, url_file=...)` prints
"PROOFLOOP_SERVING_URL http://HOST:PORT/v1" once it listens.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal

from proofloop.extras import require

require("fastapi", "sim", "the proofloop simulator's server")  # one line, not a traceback, without it
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse, Response, StreamingResponse  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- request/reply


@dataclass
class ChatRequest:
    """One parsed /v1/chat/completions request as a responder sees it."""

    model: str
    messages: list[dict[str, Any]]
    n: int
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    seed: int | None
    stream: bool
    include_usage: bool
    extra: dict[str, Any]  # every body field not named above (top_k, stop, ...)
    body: dict[str, Any]  # the raw body
    fingerprint: str  # sha256 of the canonical JSON body
    number: int  # 1-based count of chat requests this server has received


@dataclass
class Choice:
    text: str
    reasoning_content: str | None = None
    finish_reason: str = "stop"
    completion_tokens: int | None = None  # None: estimated from the text length


@dataclass
class Reply:
    choices: list[Choice]
    prompt_tokens: int
    cached_prompt_tokens: int = 0


Responder = Callable[[ChatRequest], Awaitable[Reply]]

_KNOWN_FIELDS = {"model", "messages", "n", "max_tokens", "max_completion_tokens", "temperature",
                 "top_p", "seed", "stream", "stream_options"}


def approx_tokens(text: str | None) -> int:
    """A stand-in tokenizer (about 4 characters per token): good enough for accounting tests."""
    return (len(text) + 3) // 4 if text else 0


def fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# ---------------------------------------------------------------------------- faults

FaultKind = Literal["rate_limit", "server_error", "drop", "drop_mid", "slow", "truncate",
                    "malformed", "auth", "bad_request", "context_window"]


class Fault(BaseModel):
    """One injected failure.

    rate_limit: 429 (+ Retry-After); server_error: 500 (+ Retry-After if given); drop: headers
    sent, then the socket closes before any body; drop_mid: the connection closes halfway
    through the body/stream; slow: sleep `delay_s` before answering (past a client's attempt
    timeout); truncate: each text is cut in half with finish_reason "length"; malformed: an
    invalid JSON body (or SSE chunk); auth: 401; bad_request: 400; context_window: 400 saying
    the context length was exceeded.
    """

    kind: FaultKind
    retry_after: float | str | None = None  # seconds, or an HTTP date string, sent as-is
    delay_s: float = 30.0


class Faults(BaseModel):
    """Which requests fail: by 1-based request number, or at random with a fixed seed.

    The random draw is a function of (seed, request number) only, so a given server run is
    reproducible whatever the timing. In a JSON script:
    {"by_request": {"1": {"kind": "rate_limit", "retry_after": 2}},
     "random": [[{"kind": "server_error"}, 0.1], [{"kind": "drop_mid"}, 0.05]], "seed": 7}
    """

    by_request: dict[int, Fault] = Field(default_factory=dict)
    random: list[tuple[Fault, float]] = Field(default_factory=list)  # (fault, probability)
    seed: int = 0

    def pick(self, number: int) -> Fault | None:
        if number in self.by_request:
            return self.by_request[number]
        u = random.Random(f"{self.seed}:{number}").random()
        acc = 0.0
        for fault, p in self.random:
            acc += p
            if u < acc:
                return fault
        return None


class _DropConnection(Exception):
    """Raised inside a response body on purpose: uvicorn then closes the socket."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:  # may be wrapped in an exception group by anyio
            if isinstance(exc, _DropConnection):
                return False
            inner = getattr(exc, "exceptions", None)
            exc = inner[0] if inner else None
        return True


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())

# ---------------------------------------------------------------------------- request log


class RequestLog:
    """Appends one dict per request to a list and/or a JSONL file (flushed per line, so a
    kill -9 of the server loses nothing that was written)."""

    def __init__(self, target: list | str | Path | None):
        self.items: list | None = target if isinstance(target, list) else None
        self.path = Path(target) if isinstance(target, (str, Path)) else None
        self._lock = threading.Lock()

    def write(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if self.items is not None:
                self.items.append(entry)
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(entry) + "\n")
                    f.flush()


def read_request_log(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------- the app


def _error(status: int, message: str, etype: str, retry_after: Any = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse({"error": {"message": message, "type": etype, "code": status}},
                        status_code=status, headers=headers)


# Faults answered with an HTTP error: status, message, error type.
_ERROR_FAULTS = {
    "rate_limit": (429, "rate limit reached", "rate_limit_error"),
    "server_error": (500, "injected server error", "server_error"),
    "auth": (401, "invalid api key", "authentication_error"),
    "bad_request": (400, "injected bad request: unsupported parameter", "invalid_request_error"),
    "context_window": (400, "This model's maximum context length is 16 tokens; your request has more. "
                            "Please reduce the length of the messages.", "invalid_request_error"),
}


def make_app(responder: Responder, *, faults: Faults | None = None,
             request_log: list | str | Path | None = None, models: list[str] | None = None,
             api_key: str | None = None, stream_chunk_chars: int = 64,
             stream_delay_s: float = 0.0) -> FastAPI:
    """Build the FastAPI app.

    `faults` picks injected failures per request; `request_log` is a list or a JSONL path;
    `api_key` (when set) must come as a Bearer token, else 401; streamed text is cut into
    pieces of `stream_chunk_chars` characters sent `stream_delay_s` apart (a slow but live
    stream). `app.state.stats` holds requests / in_flight / max_in_flight counters.
    """
    app = FastAPI(title="proofloop test server")
    server = _ChatServer(responder, faults or Faults(), RequestLog(request_log), api_key,
                         stream_chunk_chars, stream_delay_s)
    app.state.stats = server.stats
    app.state.request_log = server.rlog

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                            "owned_by": "proofloop"} for m in (models or ["scripted"])]}

    app.post("/v1/chat/completions")(server.chat)
    return app


class _ChatServer:
    """The chat-completions endpoint: parse, log, inject the request's fault, answer."""

    def __init__(self, responder: Responder, faults: Faults, rlog: RequestLog, api_key: str | None,
                 chunk_chars: int, delay_s: float):
        self.responder, self.faults, self.rlog, self.api_key = responder, faults, rlog, api_key
        self.chunk_chars, self.delay_s = chunk_chars, delay_s
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "in_flight": 0, "max_in_flight": 0}

    def begin(self) -> int:
        with self.lock:
            self.stats["requests"] += 1
            self.stats["in_flight"] += 1
            self.stats["max_in_flight"] = max(self.stats["max_in_flight"], self.stats["in_flight"])
            return self.stats["requests"]

    def end(self, entry: dict[str, Any], outcome: str) -> None:
        with self.lock:
            self.stats["in_flight"] -= 1
        entry.update(outcome=outcome, t_end=time.time())
        self.rlog.write(entry)

    async def chat(self, request: Request) -> Response:
        number = self.begin()
        entry: dict[str, Any] = {"number": number, "t_start": time.time()}
        try:
            body = json.loads(await request.body())
            assert isinstance(body, dict) and isinstance(body.get("messages"), list)
        except Exception:
            self.end(entry, "invalid_request")
            return _error(400, "request body is not a chat-completions JSON object", "invalid_request_error")
        req = _parse_request(body, number)
        # messages_sha + seed name the samples a request asks for (with the client's per-request
        # seed offset), so a test can tell whether an already stored call was sent again.
        entry.update(fingerprint=req.fingerprint, model=req.model, n=req.n, stream=req.stream, seed=req.seed,
                     messages_sha=fingerprint({"messages": req.messages}))
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            self.end(entry, "auth")
            return _error(401, "invalid api key", "authentication_error")
        fault = self.faults.pick(number)
        kind = fault.kind if fault else None
        early = await self.fault_before_reply(request, req, fault, entry)
        if early is not None:
            return early
        try:
            reply = await self.responder(req)
        except Exception as exc:  # a broken responder is a 500, with the cause in the log
            log.exception("responder failed")
            entry["error"] = repr(exc)
            self.end(entry, "responder_error")
            return _error(500, f"responder failed: {exc!r}", "server_error")
        if len(reply.choices) != req.n:
            self.end(entry, "responder_error")
            return _error(500, f"responder returned {len(reply.choices)} choices for n={req.n}", "server_error")
        return self.answer(req, reply, kind, entry)

    async def fault_before_reply(self, request: Request, req: ChatRequest, fault: Fault | None,
                                 entry: dict[str, Any]) -> Response | None:
        """The response of a fault that strikes before the responder runs (None: go on)."""
        kind = fault.kind if fault else None
        if fault is not None and kind in _ERROR_FAULTS:
            status, message, etype = _ERROR_FAULTS[kind]
            retry_after = {"rate_limit": 1 if fault.retry_after is None else fault.retry_after,
                           "server_error": fault.retry_after}.get(kind)  # only these two say when to retry
            self.end(entry, kind)
            return _error(status, message, etype, retry_after)
        if fault is not None and kind == "slow":
            # Sleep in small steps and give up once the client has gone (its attempt timeout),
            # so a stopped test server has no sleeper left to cancel.
            deadline = time.monotonic() + fault.delay_s
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    entry["client_gone"] = True
                    self.end(entry, "slow")
                    return Response(status_code=499)
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if kind == "drop":
            async def dropped():
                self.end(entry, "drop")
                raise _DropConnection()
                yield b""  # pragma: no cover  (makes this an async generator)
            return StreamingResponse(dropped(), media_type="text/event-stream" if req.stream else "application/json")
        return None

    def answer(self, req: ChatRequest, reply: Reply, kind: str | None, entry: dict[str, Any]) -> Response:
        """The reply as JSON or a stream, spoiled by a fault that strikes after the responder."""
        if kind == "truncate":
            reply.choices = [Choice(text=c.text[: len(c.text) // 2],
                                    reasoning_content=c.reasoning_content, finish_reason="length",
                                    completion_tokens=None) for c in reply.choices]
        outcome = kind if kind in ("slow", "truncate") else "ok"
        cid = "chatcmpl-" + uuid.uuid4().hex[:16]
        if req.stream:
            return StreamingResponse(
                _sse(req, reply, cid, kind, self.chunk_chars, self.delay_s, entry, self.end, outcome),
                media_type="text/event-stream")
        if kind in ("malformed", "drop_mid"):
            whole = json.dumps(_completion_body(req, reply, cid)).encode()

            async def broken():
                yield whole[: len(whole) // 2]
                self.end(entry, kind)
                if kind == "drop_mid":
                    raise _DropConnection()
                # malformed: a cut-off JSON document, delivered completely
            return StreamingResponse(broken(), media_type="application/json")
        self.end(entry, outcome)
        return JSONResponse(_completion_body(req, reply, cid))


def _parse_request(body: dict[str, Any], number: int) -> ChatRequest:
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    return ChatRequest(
        model=str(body.get("model", "")), messages=body["messages"], n=int(body.get("n") or 1),
        max_tokens=max_tokens, temperature=body.get("temperature"), top_p=body.get("top_p"),
        seed=body.get("seed"), stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        extra={k: v for k, v in body.items() if k not in _KNOWN_FIELDS}, body=body,
        fingerprint=fingerprint(body), number=number)


def _usage(reply: Reply) -> dict[str, Any]:
    completion = sum(c.completion_tokens if c.completion_tokens is not None
                     else approx_tokens(c.text) + approx_tokens(c.reasoning_content) for c in reply.choices)
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": completion,
            "total_tokens": reply.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": reply.cached_prompt_tokens}}


def _completion_body(req: ChatRequest, reply: Reply, cid: str) -> dict[str, Any]:
    choices = []
    for i, c in enumerate(reply.choices):
        message: dict[str, Any] = {"role": "assistant", "content": c.text}
        if c.reasoning_content is not None:
            message["reasoning_content"] = c.reasoning_content
        choices.append({"index": i, "message": message, "finish_reason": c.finish_reason, "logprobs": None})
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": req.model,
            "choices": choices, "usage": _usage(reply)}


async def _sse(req, reply, cid, kind, chunk_chars, delay_s, entry, end, outcome):
    """The SSE stream: role chunk, reasoning then content pieces (choices interleaved), one
    finish chunk per choice, the usage chunk when asked for, then [DONE]."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        data: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created,
                                "model": req.model, "choices": choices}
        if usage is not None:
            data["usage"] = usage
        return f"data: {json.dumps(data)}\n\n".encode()

    def pieces(text: str | None) -> list[str]:
        return [text[i:i + chunk_chars] for i in range(0, len(text), chunk_chars)] if text else []

    per_choice = []
    for i, c in enumerate(reply.choices):
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"reasoning_content": p} for p in pieces(c.reasoning_content)]
        deltas += [{"content": p} for p in pieces(c.text)]
        per_choice.append([{"index": i, "delta": d, "finish_reason": None} for d in deltas]
                          + [{"index": i, "delta": {}, "finish_reason": c.finish_reason}])
    events = [chunk([ev]) for step in range(max(map(len, per_choice)))
              for ev in (pc[step] for pc in per_choice if step < len(pc))]
    if req.include_usage:
        events.append(chunk([], _usage(reply)))
    cut = len(events) // 2 if kind in ("drop_mid", "malformed") else None
    finished = False
    try:
        for k, ev in enumerate(events):
            if k == cut:
                if kind == "drop_mid":
                    finished = True
                    end(entry, kind)
                    raise _DropConnection()
                yield b'data: {"id": "' + cid.encode() + b'", "choices": [{"index": 0, "delta": {"content\n\n'
            if delay_s and k:
                await asyncio.sleep(delay_s)
            yield ev
        # Logged before the last chunk goes out: a client that has read the whole answer (a
        # test, say) finds its request in the log, not a moment later.
        finished = True
        end(entry, kind if kind == "malformed" else outcome)
        yield b"data: [DONE]\n\n"
    finally:
        if not finished:  # the client went away (e.g. its attempt timeout) before the end
            end(entry, "aborted")


# ---------------------------------------------------------------------------- running it


def free_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _uvicorn_server(app: FastAPI, log_level: str):
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=2,
                            access_log=False, lifespan="off")
    return uvicorn.Server(config)


class ServerThread:
    """Runs an app with uvicorn in a background thread on a free port.

        with ServerThread(make_app(scripted_responder())) as s:
            s.base_url  # "http://127.0.0.1:PORT/v1"
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app = app
        self._sock = free_socket(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        self.base_url = f"http://{self.host}:{self.port}/v1"
        self._server = _uvicorn_server(app, log_level)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        daemon=True, name=f"uvicorn-{self.port}")

    def start(self) -> "ServerThread":
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, url_file: str | Path | None = None,
          log_level: str = "warning") -> None:
    """Run the app in the foreground until interrupted; print (and optionally write) the URL."""
    sock = free_socket(host, port)
    h, p = sock.getsockname()[:2]
    url = f"http://{h}:{p}/v1"
    server = _uvicorn_server(app, log_level)

    async def announce_when_started() -> None:
        while not server.started:
            await asyncio.sleep(0.01)
        if url_file:  # written atomically so a reader never sees half a URL
            tmp = Path(str(url_file) + ".tmp")
            tmp.write_text(url)
            os.replace(tmp, url_file)
        print(f"PROOFLOOP_SERVING_URL {url}", flush=True)

    async def main() -> None:
        task = asyncio.create_task(announce_when_started())
        await server.serve(sockets=[sock])
        task.cancel()

    asyncio.run(main())



"""A small OpenAI-compatible chat-completions server: for tests and for `proofloop sim serve`.

The server knows nothing about proofs. A *responder* (an async callable) turns one parsed
request into n choices; the server does the HTTP part (streaming SSE or one JSON body, usage,
/v1/models, /health), injects faults on purpose (429, 500, dropped connections, slow answers,
truncated or malformed output) and logs every request with a fingerprint of its body, so a
test can prove that no finished call was sent twice.

Writing a responder (this is how the simulator plugs in):

    async def responder(req: ChatRequest) -> Reply:
        # req.model, req.messages, req.n, req.max_tokens, req.temperature, req.top_p,
        # req.seed, req.stream, req.extra (every other body field, e.g. top_k), req.body (raw)
        return Reply([Choice(text="...", reasoning_content=None, finish_reason="stop")
                      for _ in range(req.n)], prompt_tokens=12)

`scripted_responder()` is a deterministic one that speaks the DeepSeekMath-V2 protocol
(generator, verifier, meta-verifier and refinement outputs); see its docstring.

In a thread (tests):

    >>> app = make_app(scripted_responder(), request_log=(log := []))
    >>> with ServerThread(app) as server:
    ...     import httpx
    ...     r = httpx.post(server.base_url + "/chat/completions", json={
    ...         "model": "m", "messages": [{"role": "user", "content": "Prove 1+1=2."}]})
    >>> r.json()["choices"][0]["message"]["content"].startswith("## Solution")
    True
    >>> log[0]["outcome"]
    'ok'

As a subprocess (kill -9 tests, the simulator): `python -m proofloop.serving --port 0
--script faults.json --request-log log.jsonl --url-file url.txt`, or `ServerProcess(...)`
below, which starts it and reads back the URL. `--responder pkg.module:factory` plugs in
another responder (the factory is called with the script's "responder" options).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import json
import logging
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

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
    faults = faults or Faults()
    rlog = RequestLog(request_log)
    state_lock = threading.Lock()
    stats = {"requests": 0, "in_flight": 0, "max_in_flight": 0}
    app.state.stats = stats
    app.state.request_log = rlog

    def begin() -> int:
        with state_lock:
            stats["requests"] += 1
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
            return stats["requests"]

    def end(entry: dict[str, Any], outcome: str) -> None:
        with state_lock:
            stats["in_flight"] -= 1
        entry.update(outcome=outcome, t_end=time.time())
        rlog.write(entry)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                            "owned_by": "proofloop"} for m in (models or ["scripted"])]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        t_start = time.time()
        number = begin()
        entry: dict[str, Any] = {"number": number, "t_start": t_start}
        try:
            body = json.loads(await request.body())
            assert isinstance(body, dict) and isinstance(body.get("messages"), list)
        except Exception:
            end(entry, "invalid_request")
            return _error(400, "request body is not a chat-completions JSON object", "invalid_request_error")
        req = _parse_request(body, number)
        # messages_sha + seed name the samples a request asks for (with the client's per-request
        # seed offset), so a test can tell whether an already stored call was sent again.
        entry.update(fingerprint=req.fingerprint, model=req.model, n=req.n, stream=req.stream, seed=req.seed,
                     messages_sha=fingerprint({"messages": req.messages}))
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            end(entry, "auth")
            return _error(401, "invalid api key", "authentication_error")
        fault = faults.pick(number)
        kind = fault.kind if fault else None
        if kind == "rate_limit":
            end(entry, kind)
            return _error(429, "rate limit reached", "rate_limit_error",
                          fault.retry_after if fault.retry_after is not None else 1)
        if kind == "server_error":
            end(entry, kind)
            return _error(500, "injected server error", "server_error", fault.retry_after)
        if kind == "auth":
            end(entry, kind)
            return _error(401, "invalid api key", "authentication_error")
        if kind == "bad_request":
            end(entry, kind)
            return _error(400, "injected bad request: unsupported parameter", "invalid_request_error")
        if kind == "context_window":
            end(entry, kind)
            return _error(400, "This model's maximum context length is 16 tokens; your request "
                               "has more. Please reduce the length of the messages.", "invalid_request_error")
        if kind == "slow":
            # Sleep in small steps and give up once the client has gone (its attempt timeout),
            # so a stopped test server has no sleeper left to cancel.
            deadline = time.monotonic() + fault.delay_s
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    entry["client_gone"] = True
                    end(entry, "slow")
                    return Response(status_code=499)
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if kind == "drop":
            async def dropped():
                end(entry, "drop")
                raise _DropConnection()
                yield b""  # pragma: no cover  (makes this an async generator)
            return StreamingResponse(dropped(), media_type="text/event-stream" if req.stream else "application/json")

        try:
            reply = await responder(req)
        except Exception as exc:  # a broken responder is a 500, with the cause in the log
            log.exception("responder failed")
            entry["error"] = repr(exc)
            end(entry, "responder_error")
            return _error(500, f"responder failed: {exc!r}", "server_error")
        if len(reply.choices) != req.n:
            end(entry, "responder_error")
            return _error(500, f"responder returned {len(reply.choices)} choices for n={req.n}", "server_error")
        if kind == "truncate":
            reply.choices = [Choice(text=c.text[: len(c.text) // 2],
                                    reasoning_content=c.reasoning_content, finish_reason="length",
                                    completion_tokens=None) for c in reply.choices]
        outcome = kind if kind in ("slow", "truncate") else "ok"
        cid = "chatcmpl-" + uuid.uuid4().hex[:16]
        if req.stream:
            return StreamingResponse(
                _sse(req, reply, cid, kind, stream_chunk_chars, stream_delay_s, entry, end, outcome),
                media_type="text/event-stream")
        if kind in ("malformed", "drop_mid"):
            whole = json.dumps(_completion_body(req, reply, cid)).encode()

            async def broken():
                yield whole[: len(whole) // 2]
                if kind == "drop_mid":
                    end(entry, kind)
                    raise _DropConnection()
                end(entry, kind)  # malformed: a cut-off JSON document, delivered completely
            return StreamingResponse(broken(), media_type="application/json")
        end(entry, outcome)
        return JSONResponse(_completion_body(req, reply, cid))

    return app


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
        yield b"data: [DONE]\n\n"
        finished = True
        end(entry, kind if kind == "malformed" else outcome)
    finally:
        if not finished:  # the client went away (e.g. its attempt timeout) before the end
            end(entry, "aborted")


# ---------------------------------------------------------------------------- scripted responder

_PROOF_ID = re.compile(r"scripted proof ([0-9a-f]{8}), grade (0\.5|0|1)")
_FINAL_SCORE = re.compile(r"final overall score should be:\s*\\boxed\{([^}]*)\}")


def default_role(messages: list[dict[str, Any]]) -> str:
    """Guess the protocol role from the prompt text: refine, meta_verify, generate or verify."""
    text = "\n".join(str(m.get("content", "")) for m in messages)
    if "Candidate Solution(s) to Refine" in text:
        return "refine"
    if '"solution evaluation"' in text:
        return "meta_verify"
    if "## Self Evaluation" in text:  # only the generator is told to write a self evaluation
        return "generate"
    if "final overall score" in text or "## Solution" in text:  # told how to end / shown a proof
        return "verify"
    return "generate"


def _fmt(s: float) -> str:
    return "0.5" if s == 0.5 else str(int(s))


def scripted_responder(*, reasoning: Literal["none", "field", "inline"] = "none",
                       role_of: Callable[[list[dict[str, Any]]], str] = default_role,
                       quality_weights: tuple[float, float, float] = (0.4, 0.3, 0.3),
                       refine_weights: tuple[float, float, float] = (0.2, 0.3, 0.5),
                       self_accuracy: float = 0.8, verifier_accuracy: float = 0.75,
                       salt: str = "") -> Responder:
    """A deterministic responder that follows the DeepSeekMath-V2 output contracts.

    Each answer is a function of the request (model, messages, sampling parameters and
    extra fields, but not n / stream) and of the sample number `seed + choice index` (seed 0
    when the request has none), so sample k is the same whether it was asked for alone or
    in a group. Generated proofs carry a visible ground truth, "(scripted proof <id>, grade
    g)", with g drawn from `quality_weights` (`refine_weights` for refinements); the
    generator's self score equals g with probability `self_accuracy`, a verifier's score with
    probability `verifier_accuracy` (else another score); a meta-verifier rates an analysis
    1 when its score matches the grade, usually 0 or 0.5 otherwise. Prompts without a proof id
    are graded from a hash of the prompt. `reasoning` adds a thinking part as a
    reasoning_content field or inline before </think>. Answers longer than max_tokens (by
    approx_tokens) are cut, with finish_reason "length".
    """
    grades = (0.0, 0.5, 1.0)

    async def respond(req: ChatRequest) -> Reply:
        base = {k: v for k, v in req.body.items() if k not in ("n", "stream", "stream_options", "seed")}
        base_key = fingerprint(base) + salt
        role = role_of(req.messages)
        prompt = "\n".join(str(m.get("content", "")) for m in req.messages)
        choices = [_one(role, prompt, f"{base_key}:{(req.seed or 0) + i}", req.max_tokens)
                   for i in range(req.n)]
        return Reply(choices, prompt_tokens=approx_tokens(prompt))

    def _one(role: str, prompt: str, key: str, max_tokens: int | None) -> Choice:
        def u(label: str) -> float:
            return int(hashlib.sha256(f"{key}:{label}".encode()).hexdigest()[:12], 16) / 16 ** 12

        def draw(label: str, weights: tuple[float, float, float]) -> float:
            x, acc = u(label) * sum(weights), 0.0
            for g, w in zip(grades, weights):
                acc += w
                if x < acc:
                    return g
            return grades[-1]

        def noisy(truth: float, accuracy: float, label: str) -> float:
            if u(label) < accuracy:
                return truth
            others = [g for g in grades if g != truth]
            return others[int(u(label + "-other") * 2) % 2]

        ids = _PROOF_ID.findall(prompt)
        truth = float(ids[-1][1]) if ids else draw("prompt-grade", quality_weights)
        if role in ("generate", "refine"):
            pid = hashlib.sha256(f"{key}:id".encode()).hexdigest()[:8]
            grade = draw("grade", refine_weights if role == "refine" else quality_weights)
            self_score = noisy(grade, self_accuracy, "self")
            text = (f"## Solution\n\nWe argue step by step (scripted proof {pid}, grade {_fmt(grade)}).\n"
                    f"Step 1. Set up the notation.\nStep 2. Conclude.\n\n## Self Evaluation\n\n"
                    f"Here is my evaluation of the solution: the key step is Step 2"
                    f"{' and it holds' if self_score == 1 else ', which has a gap'}.\n\n"
                    f"Based on my evaluation, the final overall score should be: \\boxed{{{_fmt(self_score)}}}")
        elif role == "meta_verify":
            claimed = _FINAL_SCORE.findall(prompt)
            try:
                agrees = bool(claimed) and float(claimed[-1]) == truth
            except ValueError:
                agrees = False
            rating = noisy(1.0, 0.85, "meta") if agrees else noisy(0.0, 0.6, "meta")
            text = ('Here is my analysis of the "solution evaluation": the restated steps exist in the '
                    f"proof; the claimed defects are {'real' if rating == 1 else 'partly unfounded'}.\n\n"
                    'Based on my analysis, I will rate the "solution evaluation" as: '
                    f"\\boxed{{{_fmt(rating)}}}")
        else:  # verify
            score = noisy(truth, verifier_accuracy, "verify")
            issue = "no issue found" if score == 1 else ("a minor gap in Step 2" if score == 0.5
                                                         else "a fatal error in Step 2")
            text = (f"Here is my evaluation of the solution: Step 1 is correct; Step 2: {issue}.\n\n"
                    f"Based on my evaluation, the final overall score should be: \\boxed{{{_fmt(score)}}}")
        thinking = f"Let me think about this ({role}). " * 3 if reasoning != "none" else None
        if reasoning == "inline":
            text, thinking = f"<think>\n{thinking}\n</think>\n\n{text}", None
        finish = "stop"
        if max_tokens is not None and approx_tokens(thinking) + approx_tokens(text) > max_tokens:
            budget = max(0, max_tokens - approx_tokens(thinking)) * 4
            text, finish = text[:budget], "length"
        return Choice(text=text, reasoning_content=thinking, finish_reason=finish)

    return respond


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


def load_script(path: str | Path | None) -> dict[str, Any]:
    """A server script (JSON): {"faults": <Faults>, "responder": {options for the factory},
    "models": [...], "api_key": ..., "stream_chunk_chars": 64, "stream_delay_s": 0}."""
    if path is None:
        return {}
    return json.loads(Path(path).read_text(encoding="utf-8"))


def app_from_script(script: dict[str, Any], *, responder_factory: str | None = None,
                    request_log: str | Path | None = None) -> FastAPI:
    factory: Callable[..., Responder] = scripted_responder
    if responder_factory:
        module, _, name = responder_factory.partition(":")
        factory = getattr(importlib.import_module(module), name)
    return make_app(factory(**script.get("responder", {})),
                    faults=Faults.model_validate(script.get("faults", {})), request_log=request_log,
                    models=script.get("models"), api_key=script.get("api_key"),
                    stream_chunk_chars=script.get("stream_chunk_chars", 64),
                    stream_delay_s=script.get("stream_delay_s", 0.0))


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


class ServerProcess:
    """`python -m proofloop.serving` in a subprocess; `.base_url` once it listens, `.kill()`
    sends SIGKILL. Use as a context manager (it terminates the process on exit)."""

    def __init__(self, *, script: dict[str, Any] | None = None, request_log: str | Path | None = None,
                 responder_factory: str | None = None, env: dict[str, str] | None = None,
                 start_timeout_s: float = 60.0):
        self._dir = tempfile.TemporaryDirectory(prefix="proofloop-serve-")
        url_file = Path(self._dir.name) / "url"
        cmd = [sys.executable, "-m", "proofloop.serving", "--url-file", str(url_file)]
        if script is not None:
            script_path = Path(self._dir.name) / "script.json"
            script_path.write_text(json.dumps(script))
            cmd += ["--script", str(script_path)]
        if request_log is not None:
            cmd += ["--request-log", str(request_log)]
        if responder_factory:
            cmd += ["--responder", responder_factory]
        self.proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + start_timeout_s
        while not url_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server subprocess did not start (exit code {self.proc.returncode})")
            time.sleep(0.05)
        self.base_url = url_file.read_text().strip()
        self.pid = self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._dir.cleanup()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m proofloop.serving",
                                 description="OpenAI-compatible test server (scripted responder by default)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--script", help="JSON server script (faults, responder options, ...)")
    ap.add_argument("--responder", help="module:factory returning a responder (default: scripted)")
    ap.add_argument("--request-log", help="append one JSON line per request to this file")
    ap.add_argument("--url-file", help="write the base URL here once the server listens")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    app = app_from_script(load_script(args.script), responder_factory=args.responder,
                          request_log=args.request_log)
    serve(app, args.host, args.port, url_file=args.url_file, log_level=args.log_level)


if __name__ == "__main__":
    main()

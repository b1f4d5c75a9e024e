"""The simulated model behind the OpenAI-compatible front end (sim/http.py): what `proofloop
sim serve` runs. SimModel answers, ServerModel (when timing is on) sets the pace and the
cached-token counts, and faults are injected on purpose.

    >>> from proofloop.sim.http import ServerThread
    >>> import httpx2
    >>> with ServerThread(make_sim_app(seed=1)) as server:
    ...     r = httpx2.post(server.base_url + "/chat/completions", json={"model": "sim-1", "n": 2,
    ...                     "messages": [{"role": "user", "content": "Prove that 1 + 1 = 2."}]})
    >>> len(r.json()["choices"])
    2
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from proofloop.sim import http
from proofloop.sim.model import SimConfig, SimModel
from proofloop.sim.server import ServerModel, request_priority

def sim_responder(model: SimModel, server: ServerModel | None = None) -> http.Responder:
    """A serving responder: SimModel answers, ServerModel (when given) sets the pace and the
    cached-token count; the body field `priority` (lower first, default 0) orders the
    request in the server's queue. A request without a seed gets fresh sample numbers (a
    per-prompt counter), one with a seed gets samples seed .. seed + n - 1 (replayable)."""
    counters: dict[str, int] = {}

    async def respond(req: http.ChatRequest) -> http.Reply:
        if req.seed is not None:
            first = int(req.seed)
        else:
            key = model.request_key(req.messages)
            first = counters.get(key, 0)
            counters[key] = first + req.n
        outs = model.respond(req.messages, req.n, req.max_tokens, first_sample=first)
        prompt_tokens = model.prompt_tokens(req.messages)
        cached = 0
        if server is not None:
            info = await server.run(model.prompt_blocks(req.messages, server.block_chars),
                                    [o.completion_tokens for o in outs], request_priority(req.extra.get("priority")))
            cached = info.cached_tokens
        return http.Reply([http.Choice(text=o.text, reasoning_content=o.reasoning,
                                             finish_reason=o.finish_reason, completion_tokens=o.completion_tokens)
                              for o in outs], prompt_tokens=prompt_tokens, cached_prompt_tokens=cached)

    return respond


FAULT_KINDS = ("rate_limit", "server_error", "drop", "drop_mid", "slow", "truncate", "malformed")


def build_faults(fail_rate: float = 0.0, kinds: Sequence[str] = ("rate_limit", "server_error", "drop", "malformed"),
                 *, retry_after: float = 1.0, slow_delay_s: float = 5.0, seed: int = 0) -> http.Faults:
    """Random faults: each request fails with probability `fail_rate`, the kind drawn evenly
    from `kinds` (429 with Retry-After, 500, dropped connection, ... see http.Fault)."""
    if not 0 <= fail_rate <= 1:
        raise ValueError("fail_rate must be in [0, 1]")
    bad = set(kinds) - set(FAULT_KINDS)
    if bad:
        raise ValueError(f"unknown fault kinds {sorted(bad)}; choose from {FAULT_KINDS}")
    each = fail_rate / len(kinds) if kinds else 0.0
    faults = [(http.Fault(kind=k, retry_after=retry_after if k in ("rate_limit", "server_error") else None,
                             delay_s=slow_delay_s), each) for k in kinds]
    return http.Faults(random=faults if each else [], seed=seed)


def make_sim_app(*, seed: int = 0, config: SimConfig | None = None, server: ServerModel | None = None,
                 faults: http.Faults | None = None, model_name: str = "sim-1",
                 request_log: Any = None, api_key: str | None = None, max_n: int | None = None) -> FastAPI:
    """The OpenAI-compatible app: http.make_app around the sim responder."""
    responder = sim_responder(SimModel(config, seed), server)
    app = http.make_app(responder, faults=faults, request_log=request_log, models=[model_name], api_key=api_key)
    _check_body(app, max_n)
    app.state.sim_server = server
    return app


def _check_body(app: FastAPI, max_n: int | None) -> None:
    """Answer n > max_n (like hosted APIs) and a non-integer `priority` (like vLLM's request
    validation) with a 400, before the responder runs."""
    import json

    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def check_body(request: Request, call_next):
        if request.method == "POST" and request.url.path.endswith("/chat/completions"):
            body = await request.body()
            if max_n is None and b'"priority"' not in body:
                return await call_next(request)  # nothing to check: skip the parse
            try:
                parsed = json.loads(body)
                assert isinstance(parsed, dict)
            except Exception:
                return await call_next(request)  # serving answers a broken body itself
            try:
                n = int(parsed.get("n") or 1)
            except Exception:
                n = 1
            if max_n is not None and n > max_n:
                return _bad_request(f"n must be at most {max_n}")
            try:
                request_priority(parsed.get("priority"))
            except ValueError as e:
                return _bad_request(str(e))
        return await call_next(request)

    def _bad_request(message: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": 400}},
                            status_code=400)


def responder_factory(seed: int = 0, time_scale: float | None = 1000.0, **server_opts: Any) -> http.Responder:
    """For the scripted test server process (`--responder proofloop.sim.app:responder_factory`):
    options come from the script's "responder" entry; time_scale None: no timing."""
    server = ServerModel(time_scale=time_scale, **server_opts) if time_scale else None
    return sim_responder(SimModel(seed=seed), server)


def sim_app(*, seed: int = 0, model_name: str = "sim-1", max_n: int | None = None, timing: bool = True,
            time_scale: float = 1000.0, server_rates: dict[str, float] | None = None, fail_rate: float = 0.0,
            fault_kinds: Sequence[str] = ("rate_limit", "server_error", "drop", "malformed"),
            retry_after: float = 1.0, slow_delay_s: float = 5.0, reasoning: str = "field",
            calibration_data: Path | None = None, api_key: str | None = None,
            request_log: Path | None = None) -> FastAPI:
    """The app `proofloop sim serve` runs, from its options (ValueError / FileNotFoundError on
    a bad one). `server_rates`: ServerModel fields (slots, prefill_tps, ...) other than its defaults."""
    if reasoning not in ("field", "inline", "none"):
        raise ValueError(f"reasoning must be field, inline or none, not {reasoning!r}")
    config = (SimConfig.from_data(calibration_data) if calibration_data else SimConfig()).with_(reasoning=reasoning)
    server = ServerModel(time_scale=time_scale, **(server_rates or {})) if timing else None
    faults = build_faults(fail_rate, list(fault_kinds), retry_after=retry_after, slow_delay_s=slow_delay_s, seed=seed)
    return make_sim_app(seed=seed, config=config, server=server, faults=faults, model_name=model_name,
                        request_log=request_log, api_key=api_key, max_n=max_n)

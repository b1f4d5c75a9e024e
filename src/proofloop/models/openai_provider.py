"""Provider for any OpenAI-compatible chat-completions server (OpenAI, DeepSeek, vLLM, SGLang).

Uses the official `openai` AsyncOpenAI client with its own retries switched off (the Model
wrapper retries) and an HTTP timeout built from `Timeouts.connect_s` and `idle_read_s`.
Streaming is the default: the read timeout then bounds the silence between two chunks, not
the whole generation, so a 128K-token answer is not cut off. Reasoning is read from
`reasoning_content` (DeepSeek, vLLM, SGLang) or `reasoning` (newer vLLM), on the message
or on each streamed delta. SDK and transport errors become proofloop.errors types.

    >>> from proofloop.serving import ServerThread, make_app, scripted_responder
    >>> from proofloop.models.wrapper import Model
    >>> import asyncio
    >>> with ServerThread(make_app(scripted_responder(reasoning="field"))) as server:
    ...     model = Model(OpenAIProvider("scripted", base_url=server.base_url))
    ...     [s] = asyncio.run(model.sample([{"role": "user", "content": "Prove 1+1=2."}], Sampling()))
    >>> s.completion.text.startswith("## Solution"), s.completion.reasoning is not None
    (True, True)
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import re
import time
import weakref
from pathlib import Path
from typing import Any

import httpx2
import openai
import pydantic
from dotenv import load_dotenv

from proofloop.errors import (AuthError, BadRequestError, ContextWindowError, ModelConnectionError, ModelError,
                              ModelTimeoutError, RateLimitError, ServerError, UserInputError)
from proofloop.models.base import Completion, Message, ProviderResponse, Sampling, Timeouts, Usage

log = logging.getLogger(__name__)

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_CONTEXT_WORDS = re.compile(r"context.length|context.window|maximum context|prompt is too long|too many tokens|"
                            r"reduce the length|maximum model length|max_model_len", re.I)


def openai_settings_from_env(base_url: str | None = None, api_key: str | None = None,
                             model: str | None = None) -> tuple[str | None, str | None, str | None]:
    """(base_url, api_key, model): flags first, then PROOFLOOP_BASE_URL / _API_KEY / _MODEL, then
    OPENAI_BASE_URL / OPENAI_API_KEY, after loading ./.env (real environment variables win)."""
    env_file = Path.cwd() / ".env"
    if env_file.is_file():
        load_dotenv(env_file, override=False)
    base_url = base_url or os.environ.get("PROOFLOOP_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or None
    api_key = api_key or os.environ.get("PROOFLOOP_API_KEY") or os.environ.get("OPENAI_API_KEY") or None
    model = model or os.environ.get("PROOFLOOP_MODEL") or None
    return base_url, api_key, model


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _refused(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def map_openai_error(exc: BaseException) -> ModelError:
    """Turn an openai SDK / httpx / decoding exception into a proofloop ModelError."""
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, openai.APITimeoutError) or isinstance(exc, httpx2.TimeoutException):
        return ModelTimeoutError(f"no data from the server within the read/connect timeout ({exc.__cause__!r})")
    if isinstance(exc, openai.APIConnectionError) or isinstance(exc, httpx2.TransportError):
        cause = exc.__cause__ or exc
        if _refused(exc):
            return ModelConnectionError(f"connection refused: {cause}", refused=True)
        return ModelConnectionError(f"connection failed or dropped: {cause!r}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = parse_retry_after(exc.response.headers)
        message = _status_message(exc)
        if status == 429:
            return RateLimitError(message, status=status, retry_after=retry_after)
        if status in (401, 403):
            return AuthError(message, status=status)
        if status == 408:
            return ModelTimeoutError(message, status=status, retry_after=retry_after)
        if status >= 500:
            return ServerError(message, status=status, retry_after=retry_after)
        if status in (400, 413, 422) and _CONTEXT_WORDS.search(message):
            return ContextWindowError(message, status=status)
        return BadRequestError(message, status=status)
    if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError, openai.APIResponseValidationError)):
        return ServerError(f"malformed response: {exc!r}")
    if isinstance(exc, openai.APIError):  # e.g. an error object inside a stream
        return ServerError(f"server reported an error: {exc}")
    raise exc  # anything else is a bug here, not a model failure


def _status_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    return str(exc.message)


def _reasoning_of(obj: Any) -> str | None:
    """reasoning_content / reasoning: fields the SDK does not declare, found in model_extra."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(obj, name, None)
        if value is None:
            value = (getattr(obj, "model_extra", None) or {}).get(name)
        if isinstance(value, str):
            return value
    return None


def _usage_of(raw: Any) -> Usage | None:
    if raw is None:
        return None
    details = getattr(raw, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    extra = getattr(raw, "model_extra", None) or {}
    if cached is None:  # DeepSeek reports prefix-cache hits as prompt_cache_hit_tokens
        cached = extra.get("prompt_cache_hit_tokens")
    return Usage(int(raw.prompt_tokens or 0), int(raw.completion_tokens or 0), int(cached or 0))


class OpenAIProvider:
    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 timeouts: Timeouts | None = None, stream: bool = True, max_n: int | None = None,
                 extra_body: dict[str, Any] | None = None):
        if api_key is None and base_url is None:
            raise UserInputError("no API key for api.openai.com: set PROOFLOOP_API_KEY (or OPENAI_API_KEY), "
                                 "or point --base-url at your own server")
        self.model = model
        self.base_url = base_url
        self.endpoint = (base_url or OPENAI_DEFAULT_BASE_URL).rstrip("/")
        # Self-hosted servers (vLLM, SGLang) usually need no key, but the SDK insists on one.
        self.api_key = api_key or "EMPTY"
        self.timeouts = timeouts or Timeouts()
        self.stream = stream
        self.max_n = max_n
        self.extra_body = dict(extra_body or {})
        # One client per event loop: its connection pool belongs to the loop that opened it.
        self._clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI]" = (
            weakref.WeakKeyDictionary())

    def apply_timeouts(self, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self._clients = weakref.WeakKeyDictionary()

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            t = self.timeouts
            # read = the longest silence between two received chunks; pool=None because the
            # wrapper's concurrency cap, not the pool, decides how many requests wait.
            timeout = openai.Timeout(t.idle_read_s, connect=t.connect_s, read=t.idle_read_s,
                                     write=t.idle_read_s, pool=None)
            client = openai.AsyncOpenAI(base_url=self.endpoint, api_key=self.api_key, max_retries=0,
                                        timeout=timeout)
            self._clients[loop] = client
        return client

    async def complete(self, messages: list[Message], sampling: Sampling, n: int) -> ProviderResponse:
        params: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": sampling.temperature,
                                  "top_p": sampling.top_p, "max_tokens": sampling.max_tokens}
        if n != 1:  # some APIs (DeepSeek) reject n altogether; 1 is everyone's default
            params["n"] = n
        if sampling.seed is not None:
            params["seed"] = sampling.seed
        extra = {**self.extra_body, **sampling.extra}
        if extra:
            params["extra_body"] = extra
        try:
            if self.stream:
                return await self._streamed(params, n)
            return self._whole(await self._client().chat.completions.create(**params), n)
        except ModelError:
            raise
        except Exception as exc:
            raise map_openai_error(exc) from exc

    def _whole(self, resp: Any, n: int) -> ProviderResponse:
        choices = getattr(resp, "choices", None)
        if not isinstance(choices, list) or len(choices) != n:
            raise ServerError(f"malformed response: expected {n} choices, got "
                              f"{len(choices) if isinstance(choices, list) else 'none'}")
        completions = []
        for choice in sorted(choices, key=lambda c: c.index):
            msg = choice.message
            completions.append(Completion(text=msg.content or "", reasoning=_reasoning_of(msg),
                                          finish_reason=choice.finish_reason))
        usage = _usage_of(getattr(resp, "usage", None))
        if usage is None:
            log.debug("%s returned no usage; token counts are 0 for this request", self.endpoint)
        return ProviderResponse(completions, usage or Usage())

    async def _streamed(self, params: dict[str, Any], n: int) -> ProviderResponse:
        stream = await self._client().chat.completions.create(
            **params, stream=True, stream_options={"include_usage": True})
        text: dict[int, list[str]] = {i: [] for i in range(n)}
        reasoning: dict[int, list[str]] = {i: [] for i in range(n)}
        finish: dict[int, str | None] = {}
        usage: Usage | None = None
        async with stream:
            async for chunk in stream:
                if getattr(chunk, "usage", None) is not None:
                    usage = _usage_of(chunk.usage)
                for choice in chunk.choices or []:
                    if choice.index not in text:
                        raise ServerError(f"malformed response: choice index {choice.index} for n={n}")
                    delta = choice.delta
                    if delta is not None:
                        if delta.content:
                            text[choice.index].append(delta.content)
                        piece = _reasoning_of(delta)
                        if piece:
                            reasoning[choice.index].append(piece)
                    if choice.finish_reason is not None:
                        finish[choice.index] = choice.finish_reason
        unfinished = [i for i in range(n) if i not in finish]
        if unfinished:  # the stream ended without [DONE]-worthy endings: the answer is incomplete
            raise ModelConnectionError(f"stream ended before choices {unfinished} finished")
        completions = [Completion(text="".join(text[i]), reasoning="".join(reasoning[i]) or None,
                                  finish_reason=finish[i]) for i in range(n)]
        return ProviderResponse(completions, usage or Usage())

    async def aclose(self) -> None:
        for client in list(self._clients.values()):
            await client.close()
        self._clients = weakref.WeakKeyDictionary()


def provider_from_settings(settings: Any, *, api_key: str | None = None, timeouts: Timeouts | None = None,
                           notice: Any = print) -> OpenAIProvider:
    """The registry's factory for "openai" (entry point in pyproject.toml; models/registry.py)."""
    return OpenAIProvider(settings.model, base_url=settings.base_url, api_key=api_key or "EMPTY",
                          timeouts=timeouts or Timeouts(), stream=settings.stream, max_n=settings.max_n)

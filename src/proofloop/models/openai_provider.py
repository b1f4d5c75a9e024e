"""Provider for any OpenAI-compatible chat-completions server (OpenAI, DeepSeek, vLLM, SGLang).

Uses the official `openai` AsyncOpenAI client with its own retries switched off (the Model
wrapper retries) and an HTTP timeout built from `Timeouts.connect_s` and `idle_read_s`.
Streaming is the default: the read timeout then bounds the silence between two chunks, not
the whole generation, so a 128K-token answer is not cut off. Reasoning is read from
`reasoning_content` (DeepSeek, vLLM, SGLang) or `reasoning` (newer vLLM), on the message
or on each streamed delta. SDK and transport errors become proofloop.errors types, with the
server's own text (OpenAI `{"error": {"message"}}`, FastAPI `{"detail": ...}`, the title of
an HTML page) as the message. Servers that cannot be an OpenAI-compatible API (a 200 with
HTML, plain text, or JSON without `choices`) raise the fatal IncompatibleServer at once; an
HTML 5xx (a proxy whose backend is down) is retried after HTML_RETRY_S; a 404 hints at a
missing `/v1`; a host name that does not resolve counts as "nobody there", like a refused
connection. A response with fewer choices than n is returned as it is (the wrapper asks for
the rest).

    >>> from proofloop.sim.http import ServerThread
    >>> from proofloop.sim.app import make_sim_app
    >>> from proofloop.models.wrapper import Model
    >>> import asyncio
    >>> with ServerThread(make_sim_app(seed=1)) as server:
    ...     model = Model(OpenAIProvider("sim-1", base_url=server.base_url))
    ...     [s] = asyncio.run(model.sample([{"role": "user", "content": "Prove 1+1=2."}], Sampling(max_tokens=10**6)))
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
import socket
import time
import weakref
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2  # the transport of openai>=3 (errors raised while a stream is read are not wrapped)
import openai
import pydantic
from dotenv import load_dotenv

from proofloop.errors import (AuthError, BadRequestError, ContextWindowError, EmptyResponseError, IncompatibleServer,
                              ModelConnectionError, ModelError, ModelNotFoundError, ModelTimeoutError,
                              RateLimitError, ServerError, UserInputError)
from proofloop.models.base import ACTIVITY, Completion, Message, ProviderResponse, Sampling, Timeouts, Usage
from proofloop.models.limiter import sequence_finished
from proofloop.models.replicas import ReplicaSet, split_base_urls

log = logging.getLogger(__name__)

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_CONTEXT_WORDS = re.compile(r"context.length|context.window|maximum context|prompt is too long|too many tokens|"
                            r"reduce the length|maximum model length|max_model_len", re.I)
_UNRESOLVED_WORDS = ("name or service not known", "nodename nor servname", "getaddrinfo failed",
                     "temporary failure in name resolution", "no address associated with hostname")
HTML_RETRY_S = 1.0  # an HTML 5xx comes from a proxy whose backend is down: retry soon, not with long backoff


def check_base_url(base_url: str) -> str:
    """`base_url` if it has an http(s) scheme and a host (and a numeric port, if any)."""
    try:
        parts = urlsplit(base_url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise UserInputError(f"base URL must look like http://host:port/v1, got {base_url!r}")
    return base_url


def check_base_urls(value: str) -> str:
    """`value` (one URL or several, comma-separated: replicas of one model) with each URL
    checked, as one comma-separated string."""
    urls = split_base_urls(value)
    if not urls:
        raise UserInputError(f"no base URL in {value!r}")
    return ",".join(check_base_url(u) for u in urls)


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


def _chain(exc: BaseException | None) -> list[BaseException]:
    """exc and its causes / contexts (at most 10)."""
    out: list[BaseException] = []
    while exc is not None and len(out) < 10:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _refused(exc: BaseException) -> bool:
    return any(isinstance(e, ConnectionRefusedError) or "refused" in str(e).lower() for e in _chain(exc))


def _unresolved(exc: BaseException) -> bool:
    """The host name does not resolve (DNS): as hopeless as a refused connection."""
    return any(isinstance(e, socket.gaierror) or any(w in str(e).lower() for w in _UNRESOLVED_WORDS)
               for e in _chain(exc))


def describe_body(text: str) -> str:
    """A short description of a response body that is not the JSON we expected."""
    t = text.strip()
    if not t:
        return "an empty body"
    if t.startswith("<") or "<html" in t[:500].lower():
        title = re.search(r"<title[^>]*>(.*?)</title>", t, re.I | re.S)
        return "an HTML page" + (f" ({' '.join(title.group(1).split())[:80]!r})" if title else "")
    return f"non-JSON text {t[:80]!r}"


def map_openai_error(exc: BaseException, *, endpoint: str = "", model: str = "") -> ModelError:
    """Turn an openai SDK / httpx2 / decoding exception into a proofloop ModelError. `endpoint`
    and `model` only make messages clearer."""
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, openai.APITimeoutError) or isinstance(exc, httpx2.TimeoutException):
        return ModelTimeoutError(f"no data from the server within the read/connect timeout ({exc.__cause__!r})")
    if isinstance(exc, openai.APIConnectionError) or isinstance(exc, httpx2.TransportError):
        cause = exc.__cause__ or exc
        if _refused(exc):
            return ModelConnectionError(f"connection refused: {cause}", refused=True)
        if _unresolved(exc):
            host = urlsplit(endpoint).hostname or endpoint
            return ModelConnectionError(f"host name {host!r} does not resolve: {cause}", refused=True)
        return ModelConnectionError(f"connection failed or dropped: {cause!r}")
    if isinstance(exc, openai.APIStatusError):
        return _status_error(exc, endpoint, model)
    if isinstance(exc, (json.JSONDecodeError, pydantic.ValidationError, openai.APIResponseValidationError)):
        return ServerError(f"malformed response: {exc!r}")
    if isinstance(exc, openai.APIError):  # e.g. an error object inside a stream
        return ServerError(f"server reported an error: {exc}")
    raise exc  # anything else is a bug here, not a model failure


def _status_error(exc: openai.APIStatusError, endpoint: str, model: str) -> ModelError:
    status = exc.status_code
    retry_after = parse_retry_after(exc.response.headers)
    message, is_html = _status_message(exc)
    if status == 429:
        return RateLimitError(message, status=status, retry_after=retry_after)
    if status in (401, 403):
        return AuthError(message, status=status)
    if status == 408:
        return ModelTimeoutError(message, status=status, retry_after=retry_after)
    if status >= 500:
        if is_html:  # a proxy (nginx, a load balancer) answering for a backend that is down
            message = f"server at {endpoint} answered {status} with {message}; the model server behind it may be down"
            retry_after = HTML_RETRY_S if retry_after is None else retry_after
        return ServerError(message, status=status, retry_after=retry_after)
    if status in (400, 413, 422) and _CONTEXT_WORDS.search(message):
        return ContextWindowError(message, status=status)
    if status in (400, 404) and "model" in message.lower():
        return ModelNotFoundError(f"{message} (model {model!r} at {endpoint})", status=status)
    if status == 404:
        return BadRequestError(f"{message}: is '/v1' missing from the base URL {endpoint!r} "
                               f"(e.g. http://host:8000/v1)? Or the model {model!r} may not exist there", status=status)
    return BadRequestError(message, status=status)


def _status_message(exc: openai.APIStatusError) -> tuple[str, bool]:
    """(the server's own error text, whether the body was an HTML page). Understands OpenAI's
    {"error": {"message"}}, {"message"}, and FastAPI's {"detail": str | [validation errors]}."""
    try:
        text = exc.response.text
    except Exception:  # the body could not be read (a closed stream)
        text = None
    try:
        body = json.loads(text) if text else exc.body
    except ValueError:
        return describe_body(text), describe_body(text).startswith("an HTML page")
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"], False
        if isinstance(err, str):
            return err, False
        if isinstance(body.get("message"), str):
            return body["message"], False
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail, False
        if isinstance(detail, list) and detail:
            return "; ".join(_validation_error(d) for d in detail), False
    return str(exc.message), False


def _validation_error(item: Any) -> str:
    """One FastAPI / pydantic validation error, e.g. "body.model: Field required"."""
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc") or [])
    return f"{where}: {item.get('msg', item)}" if where else str(item.get("msg", item))


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
        self.base_url = check_base_url(base_url) if base_url is not None else None
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
            raise map_openai_error(exc, endpoint=self.endpoint, model=self.model) from exc

    def _not_openai(self, what: str) -> IncompatibleServer:
        return IncompatibleServer(f"server at {self.endpoint} answered 200 with {what}, not an OpenAI-compatible "
                                  f"chat-completions response; check the base URL (it usually ends in /v1)")

    def _whole(self, resp: Any, n: int) -> ProviderResponse:
        """A whole (non-streamed) response. Fewer choices than n are returned as they are (the
        server ignores n); the wrapper asks for the rest."""
        if isinstance(resp, str):  # the SDK hands back the body when it is not JSON
            raise self._not_openai(describe_body(resp))
        choices = getattr(resp, "choices", None)
        if choices is None:
            raise self._not_openai("JSON without 'choices'")
        if not choices:
            raise EmptyResponseError(f"server at {self.endpoint} answered with an empty 'choices' list", status=200)
        if len(choices) > n:
            raise ServerError(f"malformed response: expected {n} choices, got {len(choices)}")
        completions = []
        for choice in sorted(choices, key=lambda c: c.index or 0):
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
        text: dict[int, list[str]] = {}
        reasoning: dict[int, list[str]] = {}
        finish: dict[int, str | None] = {}
        usage: Usage | None = None
        async with stream:
            if "text/html" in stream.response.headers.get("content-type", ""):  # a web page, not an API
                page = await stream.response.aread()
                raise self._not_openai(describe_body(page.decode("utf-8", errors="replace")))
            async for chunk in stream:
                if getattr(chunk, "usage", None) is not None:
                    usage = _usage_of(chunk.usage)
                for choice in chunk.choices or []:
                    if not 0 <= choice.index < n:
                        raise ServerError(f"malformed response: choice index {choice.index} for n={n}")
                    delta = choice.delta
                    if delta is not None:
                        ACTIVITY.streamed += 1
                        if delta.content:
                            text.setdefault(choice.index, []).append(delta.content)
                        piece = _reasoning_of(delta)
                        if piece:
                            reasoning.setdefault(choice.index, []).append(piece)
                    text.setdefault(choice.index, [])
                    if choice.finish_reason is not None and choice.index not in finish:
                        finish[choice.index] = choice.finish_reason
                        sequence_finished()  # the server freed this sample's sequence: so does the client's cap
        if not text:
            content_type = stream.response.headers.get("content-type", "")
            if "event-stream" not in content_type and "json" not in content_type:
                raise self._not_openai(f"{content_type or 'no content type'} instead of an event stream")
            raise EmptyResponseError(f"server at {self.endpoint} sent a stream without any choice", status=200)
        seen = sorted(text)
        unfinished = [i for i in seen if i not in finish]
        if unfinished:  # cut off: the answer is incomplete
            raise ModelConnectionError(f"stream ended before choices {unfinished} finished")
        if seen != list(range(len(seen))):
            raise ServerError(f"malformed response: choices {seen} for n={n}")
        # Choices that never appeared: the server ignores n (the wrapper asks for the rest).
        completions = [Completion(text="".join(text[i]), reasoning="".join(reasoning.get(i, [])) or None,
                                  finish_reason=finish[i]) for i in seen]
        return ProviderResponse(completions, usage or Usage())

    async def aclose(self) -> None:
        for client in list(self._clients.values()):
            await client.close()
        self._clients = weakref.WeakKeyDictionary()


def provider_from_settings(settings: Any, *, api_key: str | None = None, timeouts: Timeouts | None = None,
                           notice: Any = print) -> OpenAIProvider | ReplicaSet:
    """The registry's factory for "openai" (entry point in pyproject.toml; models/registry.py).
    Several base URLs (comma-separated) are replicas of one model: a ReplicaSet over them."""
    urls: list[str | None] = list(split_base_urls(settings.base_url)) or [None]
    members = [OpenAIProvider(settings.model, base_url=url, api_key=api_key or "EMPTY",
                              timeouts=timeouts or Timeouts(), stream=settings.stream, max_n=settings.max_n)
               for url in urls]
    return members[0] if len(members) == 1 else ReplicaSet(members)

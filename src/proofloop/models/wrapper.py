"""`Model`: the one wrapper around a Provider that owns everything shared by all backends.

It owns, once: retries (tenacity, exponential backoff with jitter, Retry-After honoured, only
retryable errors), attempt and total timeouts, a concurrency cap per endpoint (shared by all
Model instances that point at the same endpoint), n samples per request split by the
provider's max_n, the call cache (looked up before sending, written before returning) and
token / cost accounting.

    >>> import asyncio
    >>> from proofloop.models.base import Completion, ProviderResponse, Sampling, Usage
    >>> from proofloop.models.cache import InMemoryCallCache
    >>> class Echo:
    ...     name = "echo"; model = "echo-1"; max_n = 2
    ...     async def complete(self, messages, sampling, n):
    ...         return ProviderResponse([Completion(messages[-1]["content"]) for _ in range(n)], Usage(10, 2 * n))
    >>> m = Model(Echo(), cache=InMemoryCallCache(), pricing={"echo-1": Price(1.0, 0.1, 2.0)})
    >>> msgs = [{"role": "user", "content": "hi"}]
    >>> [s.completion.text for s in asyncio.run(m.sample(msgs, Sampling(), n=3))]
    ['hi', 'hi', 'hi']
    >>> m.accounting.total.calls, m.accounting.total.prompt_tokens   # 2 requests (max_n=2)
    (2, 20)
    >>> [s.cached for s in asyncio.run(m.sample(msgs, Sampling(), n=3))]
    [True, True, True]

Failures never raise out of `sample()`: each affected Sample carries its `error` (and every
failed attempt is recorded in the cache), except AuthError and EndpointUnreachable, which no
retry can fix and which the CLI turns into one line and exit code 2.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from proofloop.errors import AuthError, EndpointUnreachable, ModelConnectionError, ModelError, ModelTimeoutError, ServerError
from proofloop.models.base import Completion, Message, Provider, ProviderResponse, Sampling
from proofloop.models.cache import CallCache, CallRecord, call_key
from proofloop.models.pricing import Price, Pricing, cost_usd, price_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_s: float = 1.0  # first backoff; doubles per retry, plus up to initial_s of jitter
    max_s: float = 60.0  # backoff cap (a server's Retry-After is honoured even when longer)
    refused_attempts: int = 3  # "connection refused" this many times in a row: nobody is there


@dataclass(frozen=True)
class Timeouts:
    """connect_s and idle_read_s are enforced by the provider's HTTP client (idle_read_s is the
    longest silence between two received chunks, so a long live stream is never cut);
    attempt_s and total_s are enforced here: an attempt timeout is retried, the total timeout
    (all attempts and backoff of one request) ends the call."""

    connect_s: float = 10.0
    idle_read_s: float = 600.0
    attempt_s: float | None = None
    total_s: float | None = None


@dataclass
class Sample:
    index: int
    key: str
    completion: Completion | None
    error: ModelError | None
    cached: bool
    latency_s: float

    @property
    def ok(self) -> bool:
        return self.completion is not None


@dataclass
class Tally:
    """Counts for real requests; cache hits are counted only in `cached_calls`."""

    calls: int = 0  # successful requests
    samples: int = 0  # completions those requests returned
    cached_calls: int = 0  # samples served from the call cache (no request)
    failures: int = 0  # failed attempts (retried or not)
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None once any request had no known price

    def add(self, *, cost: float | None, calls: int = 0, samples: int = 0, cached_calls: int = 0,
            failures: int = 0, prompt_tokens: int = 0, cached_prompt_tokens: int = 0,
            completion_tokens: int = 0) -> None:
        self.calls += calls
        self.samples += samples
        self.cached_calls += cached_calls
        self.failures += failures
        self.prompt_tokens += prompt_tokens
        self.cached_prompt_tokens += cached_prompt_tokens
        self.completion_tokens += completion_tokens
        if calls:
            self.cost_usd = None if (cost is None or self.cost_usd is None) else self.cost_usd + cost


@dataclass
class Accounting:
    """Totals and per-tag tallies. `priced` False: the model's price is unknown, costs are None."""

    priced: bool = True
    total: Tally = field(init=False)
    by_tag: dict[str, Tally] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.total = self._new()

    def _new(self) -> Tally:
        return Tally(cost_usd=0.0 if self.priced else None)

    def add(self, tag: str, **counts: Any) -> None:
        self.total.add(**counts)
        if tag not in self.by_tag:
            self.by_tag[tag] = self._new()
        self.by_tag[tag].add(**counts)

    def as_dict(self) -> dict[str, Any]:
        return {"total": asdict(self.total), "by_tag": {t: asdict(v) for t, v in self.by_tag.items()}}


# One semaphore per (event loop, endpoint): every Model pointing at an endpoint shares its cap.
# Keyed by loop too because an asyncio.Semaphore must not cross event loops.
_LIMITERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]]" = (
    weakref.WeakKeyDictionary())
_LIMITS: dict[str, int] = {}  # endpoint -> cap (the first Model to name an endpoint sets it)


def endpoint_limiter(endpoint: str, max_concurrency: int) -> asyncio.Semaphore:
    limit = _LIMITS.setdefault(endpoint, max_concurrency)
    if limit != max_concurrency:
        log.warning("endpoint %s already capped at %d concurrent requests; keeping that (asked %d)",
                    endpoint, limit, max_concurrency)
    per_loop = _LIMITERS.setdefault(asyncio.get_running_loop(), {})
    if endpoint not in per_loop:
        per_loop[endpoint] = asyncio.Semaphore(limit)
    return per_loop[endpoint]


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ModelError) and exc.retryable


def _split_evenly(total: int, parts: int) -> list[int]:
    q, r = divmod(total, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]


class Model:
    def __init__(self, provider: Provider, *, namespace: str = "", retry: RetryPolicy = RetryPolicy(),
                 timeouts: Timeouts | None = None, max_concurrency: int = 8, cache: CallCache | None = None,
                 pricing: Pricing | None = None, endpoint: str | None = None):
        """`timeouts` None keeps the provider's own; given, they are passed to the provider
        (connect / idle read) through its optional `apply_timeouts` method."""
        self.provider = provider
        self.namespace = namespace
        self.retry = retry
        if timeouts is not None and hasattr(provider, "apply_timeouts"):
            provider.apply_timeouts(timeouts)
        self.timeouts = timeouts or getattr(provider, "timeouts", None) or Timeouts()
        self.max_concurrency = max_concurrency
        self.cache = cache
        self.price: Price | None = price_for(provider.model, pricing)
        self.endpoint = endpoint or getattr(provider, "endpoint", None) or f"{provider.name}:{provider.model}"
        self.accounting = Accounting(priced=self.price is not None)
        self._backoff = wait_exponential_jitter(multiplier=retry.initial_s, max=retry.max_s,
                                                jitter=retry.initial_s)

    @property
    def model(self) -> str:
        return self.provider.model

    def key(self, messages: list[Message], sampling: Sampling, index: int) -> str:
        return call_key(self.namespace, self.provider.model, sampling, messages, index)

    async def sample(self, messages: list[Message], sampling: Sampling, n: int = 1, *, start: int = 0,
                     tag: str = "") -> list[Sample]:
        """One Sample per index in range(start, start + n), cached ones without any request."""
        keys = {i: self.key(messages, sampling, i) for i in range(start, start + n)}
        samples: dict[int, Sample] = {}
        missing: list[int] = []
        for i, key in keys.items():
            rec = self.cache.get(key) if self.cache is not None else None
            if rec is None:
                missing.append(i)
            else:
                samples[i] = Sample(i, key, rec.completion, None, True, rec.latency_s)
        if samples:
            self._count(tag, cached_calls=len(samples))
        groups = self._groups(missing)
        results = await asyncio.gather(*(self._request(messages, sampling, g, keys, tag) for g in groups),
                                       return_exceptions=True)
        for r in results:  # every finished request was stored already; now surface the fatal ones
            if isinstance(r, BaseException):
                raise r
            samples.update({s.index: s for s in r})
        return [samples[i] for i in sorted(samples)]

    # -- internals ---------------------------------------------------------------------------

    def _groups(self, missing: list[int]) -> list[list[int]]:
        """Consecutive runs of missing indices, cut into at most max_n each: deterministic, so
        a resumed run sends the same requests as an uninterrupted one would have."""
        cap = self.provider.max_n or len(missing) or 1
        runs: list[list[int]] = []
        for i in missing:
            if runs and runs[-1][-1] == i - 1 and len(runs[-1]) < cap:
                runs[-1].append(i)
            else:
                runs.append([i])
        return runs

    def _count(self, tag: str, **counts: Any) -> None:
        counts.setdefault("cost", None)
        self.accounting.add(tag, **counts)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return float(retry_after) if retry_after is not None else self._backoff(state)

    async def _request(self, messages: list[Message], sampling: Sampling, indices: list[int],
                       keys: dict[int, str], tag: str) -> list[Sample]:
        group_keys = [keys[i] for i in indices]
        # With a seed, each request gets seed + its first index: otherwise n single-sample
        # requests would all return the same sample. The cache key keeps the base seed.
        sent = sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + indices[0])
        attempt_no = 0
        refused = []  # per failed attempt: was it "connection refused"?
        t_call = time.monotonic()

        def fail(error: ModelError, latency: float) -> None:
            refused.append(isinstance(error, ModelConnectionError) and error.refused)
            self._count(tag, failures=1)
            if self.cache is not None:
                self.cache.record_failure(group_keys, namespace=self.namespace, model=self.provider.model,
                                          tag=tag, attempt=attempt_no, error=error, latency_s=latency)

        async def attempt() -> tuple[ProviderResponse, float]:
            nonlocal attempt_no
            async with endpoint_limiter(self.endpoint, self.max_concurrency):
                attempt_no += 1  # counted once it holds a slot, i.e. once it is really sent
                t0 = time.monotonic()
                try:
                    try:
                        async with asyncio.timeout(self.timeouts.attempt_s):
                            resp = await self.provider.complete(messages, sent, len(indices))
                    except TimeoutError:
                        raise ModelTimeoutError(f"attempt took longer than {self.timeouts.attempt_s}s") from None
                    if len(resp.completions) != len(indices):
                        raise ServerError(f"malformed response: {len(resp.completions)} completions "
                                          f"for n={len(indices)}")
                except ModelError as e:
                    fail(e, time.monotonic() - t0)
                    if e.retryable and attempt_no < self.retry.max_attempts:
                        log.warning("%s (attempt %d/%d on %s), retrying", e, attempt_no,
                                    self.retry.max_attempts, self.endpoint)
                    raise
                return resp, time.monotonic() - t0

        try:
            async with asyncio.timeout(self.timeouts.total_s):
                # Stop early when nobody listens: a refused connection rarely heals in seconds,
                # and the user should hear "unreachable" at once rather than after minutes.
                nobody_there = lambda state: (len(refused) >= self.retry.refused_attempts  # noqa: E731
                                              and all(refused[-self.retry.refused_attempts:]))
                async for state in AsyncRetrying(stop=stop_after_attempt(self.retry.max_attempts) | nobody_there,
                                                 wait=self._wait, retry=retry_if_exception(_is_retryable),
                                                 sleep=asyncio.sleep, reraise=True):
                    with state:
                        resp, latency = await attempt()
        except TimeoutError:
            error: ModelError = ModelTimeoutError(f"call took longer than the total timeout of "
                                                  f"{self.timeouts.total_s}s ({attempt_no} attempts)")
            if len(refused) < attempt_no:  # the attempt in flight was cut off: record it too
                fail(error, time.monotonic() - t_call)
            return self._failed(indices, keys, error, t_call)
        except AuthError:
            raise
        except ModelError as e:
            if refused and all(refused):
                raise EndpointUnreachable(f"no server answers at {self.endpoint} (connection refused, "
                                          f"{attempt_no} attempts)") from e
            return self._failed(indices, keys, e, t_call)
        return self._store(messages, sampling, indices, keys, resp, latency, attempt_no, tag)

    def _failed(self, indices: list[int], keys: dict[int, str], error: ModelError, t0: float) -> list[Sample]:
        return [Sample(i, keys[i], None, error, False, time.monotonic() - t0) for i in indices]

    def _store(self, messages: list[Message], sampling: Sampling, indices: list[int], keys: dict[int, str],
               resp: ProviderResponse, latency: float, attempt_no: int, tag: str) -> list[Sample]:
        k = len(indices)
        usage = resp.usage
        prompt = _split_evenly(usage.prompt_tokens, k)
        cached = _split_evenly(usage.cached_prompt_tokens, k)
        per_choice = [c.completion_tokens for c in resp.completions]
        completion = (per_choice if all(t is not None for t in per_choice)
                      else _split_evenly(usage.completion_tokens, k))
        request_cost = cost_usd(self.price, prompt_tokens=usage.prompt_tokens,
                                cached_prompt_tokens=usage.cached_prompt_tokens,
                                completion_tokens=usage.completion_tokens)
        records = [CallRecord(
            key=keys[i], namespace=self.namespace, model=self.provider.model, provider=self.provider.name,
            sampling=sampling.as_key(), messages=messages, index=i, completion=c, prompt_tokens=prompt[j],
            completion_tokens=completion[j], cached_prompt_tokens=cached[j], latency_s=latency, tag=tag,
            cost_usd=cost_usd(self.price, prompt_tokens=prompt[j], cached_prompt_tokens=cached[j],
                              completion_tokens=completion[j]),
            attempt=attempt_no, request_size=k) for j, (i, c) in enumerate(zip(indices, resp.completions))]
        if self.cache is not None:
            self.cache.put_many(records)  # before anyone sees the results
        self._count(tag, cost=request_cost, calls=1, samples=k, prompt_tokens=usage.prompt_tokens,
                    cached_prompt_tokens=usage.cached_prompt_tokens, completion_tokens=usage.completion_tokens)
        return [Sample(i, keys[i], c, None, False, latency) for i, c in zip(indices, resp.completions)]

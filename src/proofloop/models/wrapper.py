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
    >>> again = asyncio.run(m.sample(msgs, Sampling(), n=3))
    >>> [s.cached for s in again], [s.usage.prompt_tokens for s in again]
    ([True, True, True], [5, 5, 10])

Every Sample carries its `usage`: its share of its request's tokens and cost (the stored share
on a cache hit), so callers never look the cache up again to charge a budget.

Failures never raise out of `sample()`: each affected Sample carries its `error` (and every
failed attempt is recorded in the cache, one row per attempt naming all keys of its request),
except the `fatal` errors (AuthError, EndpointUnreachable and its IncompatibleServer), which no
retry can fix and which the CLI turns into one line and exit code 2.

Servers that ignore `n` (fewer choices than asked) are detected on the first short answer: its
completions are kept, the missing indices go out one per request, and from then on every
request to that endpoint asks for one sample (one warning per endpoint).

Logging (logger `proofloop.models.wrapper`): a retry after a refused connection or an
unresolvable host is INFO (routine while a server starts; shown with --verbose); other
retries, "ignores n" and "byte-identical samples" are WARNING.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from proofloop.errors import (EmptyResponseError, EndpointUnreachable, ModelConnectionError, ModelError,
                              ModelTimeoutError, ServerError)
from proofloop.models.base import (ACTIVITY, FREE, Completion, Message, Provider, ProviderResponse, RetryPolicy, Sampling,
                                   Timeouts, Usage)
from proofloop.models.batches import LoopBatch
from proofloop.models.cache import CallCache, CallRecord, cached_calls, call_key
from proofloop.models.limiter import PriorityLimiter, freeing_sequences
from proofloop.models.pricing import Price, Pricing, price_for, priced

log = logging.getLogger(__name__)


@dataclass
class Sample:
    index: int
    key: str
    completion: Completion | None
    error: ModelError | None
    cached: bool
    latency_s: float
    # This sample's share of its request's tokens and cost (the stored share on a cache hit;
    # nothing for a failed sample). cost_usd None: the model's price is unknown.
    usage: Usage = field(default_factory=Usage)

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
    usage: Usage = FREE  # tokens and cost of the successful requests (cost None once a price is unknown)

    @property
    def prompt_tokens(self) -> int:
        return self.usage.prompt_tokens

    @property
    def cached_prompt_tokens(self) -> int:
        return self.usage.cached_prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.usage.completion_tokens

    @property
    def cost_usd(self) -> float | None:
        return self.usage.cost_usd

    def add(self, *, calls: int = 0, samples: int = 0, cached_calls: int = 0, failures: int = 0,
            usage: Usage | None = None) -> None:
        self.calls += calls
        self.samples += samples
        self.cached_calls += cached_calls
        self.failures += failures
        if usage is not None:
            self.usage = self.usage + usage

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "samples": self.samples, "cached_calls": self.cached_calls,
                "failures": self.failures, "prompt_tokens": self.prompt_tokens,
                "cached_prompt_tokens": self.cached_prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost_usd": self.cost_usd}


@dataclass
class Accounting:
    """Totals and per-tag tallies. `priced` False: the model's price is unknown, costs are None."""

    priced: bool = True
    total: Tally = field(init=False)
    by_tag: dict[str, Tally] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.total = self._new()

    def _new(self) -> Tally:
        return Tally(usage=FREE if self.priced else Usage())

    def add(self, tag: str, **counts: Any) -> None:
        self.total.add(**counts)
        if tag not in self.by_tag:
            self.by_tag[tag] = self._new()
        self.by_tag[tag].add(**counts)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total.as_dict(), "by_tag": {t: v.as_dict() for t, v in self.by_tag.items()}}


# One limiter per (event loop, endpoint, unit): every Model pointing at an endpoint shares its
# caps. Keyed by loop too because asyncio primitives must not cross event loops. Waiters are
# admitted by priority (limiter.py): the client orders what a FIFO server would not.
_LIMITERS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], PriorityLimiter]]" = (
    weakref.WeakKeyDictionary())
_LIMITS: dict[tuple[str, str], int] = {}  # (endpoint, unit) -> cap (the first Model to name it sets it)
# Endpoints found to ignore `n` (fewer choices than asked): one sample per request from then
# on, for every Model of this process that points there.
_ONE_PER_REQUEST: set[str] = set()
_SAME_TEXT_WARNED: set[str] = set()  # endpoints already warned about identical samples


def endpoint_limiter(endpoint: str, cap: int, unit: str = "requests") -> PriorityLimiter:
    """The shared cap on `unit` ("requests", or "sequences": samples) in flight to `endpoint`."""
    limit = _LIMITS.setdefault((endpoint, unit), cap)
    if limit != cap:
        log.warning("endpoint %s already capped at %d %s in flight; keeping that (asked %d)",
                    endpoint, limit, unit, cap)
    per_loop = _LIMITERS.setdefault(asyncio.get_running_loop(), {})
    if (endpoint, unit) not in per_loop:
        per_loop[(endpoint, unit)] = PriorityLimiter(limit)
    return per_loop[(endpoint, unit)]


def forget_endpoints() -> None:
    """Forget what was learnt about endpoints (ignoring n, warnings given): for tests, and for a
    long-lived process whose server was replaced."""
    _ONE_PER_REQUEST.clear()
    _SAME_TEXT_WARNED.clear()


def endpoint_max_n(endpoint: str, provider_max_n: int | None) -> int | None:
    """Most samples per request for `endpoint`: 1 once it was seen ignoring n, else the provider's."""
    return 1 if endpoint in _ONE_PER_REQUEST else provider_max_n


def note_ignores_n(endpoint: str, asked: int, got: int) -> None:
    if endpoint not in _ONE_PER_REQUEST:
        _ONE_PER_REQUEST.add(endpoint)
        log.warning("server at %s ignores n (asked for %d samples, got %d); sending one sample per request",
                    endpoint, asked, got)


def warn_if_identical(endpoint: str, completions: list[Completion], sampling: Sampling) -> None:
    """n byte-identical texts from one sampled request: the server likely ignores temperature or
    seed, and counting them as independent votes would be wrong. Once per endpoint."""
    if (len(completions) < 2 or sampling.temperature == 0 or endpoint in _SAME_TEXT_WARNED
            or len({c.text for c in completions}) > 1):
        return
    _SAME_TEXT_WARNED.add(endpoint)
    log.warning("server at %s returned %d byte-identical samples for one request at temperature %g: it may "
                "ignore temperature/seed, and identical samples are not independent votes",
                endpoint, len(completions), sampling.temperature)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ModelError) and exc.retryable


def _nobody_there(exc: BaseException | None) -> bool:
    return isinstance(exc, ModelConnectionError) and exc.refused


def _split_evenly(total: int, parts: int) -> list[int]:
    q, r = divmod(total, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]


class Model:
    def __init__(self, provider: Provider, *, namespace: str = "", retry: RetryPolicy = RetryPolicy(),
                 timeouts: Timeouts | None = None, max_concurrency: int = 8, cache: CallCache | None = None,
                 pricing: Pricing | None = None, endpoint: str | None = None, max_sequences: int | None = None):
        """`timeouts` None keeps the provider's own; given, they are passed to the provider
        (connect / idle read) through its optional `apply_timeouts` method. `max_sequences`
        also caps the samples in flight: a request of n holds n sequence slots and gives
        each back as its sample ends when the provider can tell (a streamed choice's
        finish_reason, the simulator; limiter.sequence_finished), else all at its end. Set
        to the server's batch size (vLLM's max-num-seqs; bench/search/README.md), the
        server's queue stays empty, so calls run in the order the client releases them
        (Sampling.client_priority)."""
        self.provider = provider
        self.namespace = namespace
        self.retry = retry
        if timeouts is not None and hasattr(provider, "apply_timeouts"):
            provider.apply_timeouts(timeouts)
        self.timeouts = timeouts or getattr(provider, "timeouts", None) or Timeouts()
        self.max_concurrency = max_concurrency
        self.max_sequences = max_sequences
        self.cache = cache
        self.price: Price | None = price_for(provider.model, pricing)
        self.endpoint = endpoint or getattr(provider, "endpoint", None) or f"{provider.name}:{provider.model}"
        self.accounting = Accounting(priced=self.price is not None)
        self._backoff = wait_exponential_jitter(multiplier=retry.initial_s, max=retry.max_s,
                                                jitter=retry.initial_s)
        # The look-ups and the stores of requests that come together (a batch of proofs graded
        # at once) reach the cache as one query and one transaction (models/batches.py).
        self._lookups: LoopBatch[list[str], dict[str, CallRecord]] = LoopBatch(self._lookup_many)
        self._puts: LoopBatch[list[CallRecord], None] = LoopBatch(self._put_many)

    @property
    def model(self) -> str:
        return self.provider.model

    def key(self, messages: list[Message], sampling: Sampling, index: int) -> str:
        return call_key(self.namespace, self.provider.model, sampling, messages, index)

    async def sample(self, messages: list[Message], sampling: Sampling, n: int = 1, *, start: int = 0,
                     tag: str = "") -> list[Sample]:
        """One Sample per index in range(start, start + n), cached ones without any request.

        A request for indices [i, ..., j] is sent with seed + i (when a seed is set) and its
        k-th choice becomes index i + k. When a server returns fewer choices than asked, the
        ones it returned keep that mapping and every index it left out is sent alone (seed +
        index): with a server that ignores n the samples are key for key those of a run with
        max_n 1."""
        keys = {i: self.key(messages, sampling, i) for i in range(start, start + n)}
        samples: dict[int, Sample] = {}
        missing: list[int] = []
        found = await self._lookups(list(keys.values())) if self.cache is not None else {}
        for i, key in keys.items():
            rec = found.get(key)
            if rec is None:
                missing.append(i)
            else:
                usage = Usage(rec.prompt_tokens, rec.completion_tokens, rec.cached_prompt_tokens, rec.cost_usd)
                samples[i] = Sample(i, key, rec.completion, None, True, rec.latency_s, usage)
        if samples:
            self.accounting.add(tag, cached_calls=len(samples))
        groups = self._groups(missing)
        while groups:
            results = await asyncio.gather(*(self._request(messages, sampling, g, keys, tag) for g in groups),
                                           return_exceptions=True)
            groups = []
            for r in results:  # every finished request was stored already; now surface the fatal ones
                if isinstance(r, BaseException):
                    raise r
                done, unanswered = r
                samples.update({s.index: s for s in done})
                groups += [[i] for i in unanswered]
        return [samples[i] for i in sorted(samples)]

    # -- internals ---------------------------------------------------------------------------

    def _groups(self, missing: list[int]) -> list[list[int]]:
        """Consecutive runs of missing indices, cut into at most max_n each: deterministic, so
        a resumed run sends the same requests as an uninterrupted one would have."""
        cap = endpoint_max_n(self.endpoint, self.provider.max_n) or len(missing) or 1
        runs: list[list[int]] = []
        for i in missing:
            if runs and runs[-1][-1] == i - 1 and len(runs[-1]) < cap:
                runs[-1].append(i)
            else:
                runs.append([i])
        return runs

    @asynccontextmanager
    async def _admitted(self, samples: int, priority: int | None) -> AsyncIterator[None]:
        """Hold a request slot (and `samples` sequence slots with max_sequences) of this endpoint."""
        async with endpoint_limiter(self.endpoint, self.max_concurrency).slot(1, priority):
            if self.max_sequences is None:
                yield
                return
            async with endpoint_limiter(self.endpoint, self.max_sequences, "sequences").slot(samples, priority) as held:
                with freeing_sequences(held):  # each sample's slot is freed when the provider sees it end
                    yield

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return float(retry_after) if retry_after is not None else self._backoff(state)

    async def _request(self, messages: list[Message], sampling: Sampling, indices: list[int],
                       keys: dict[int, str], tag: str) -> tuple[list[Sample], list[int]]:
        """Send one request (with retries) for `indices`: (its samples, the indices it left unanswered)."""
        group_keys = [keys[i] for i in indices]
        # With a seed, each request gets seed + its first index: otherwise n single-sample
        # requests would all return the same sample. The cache key keeps the base seed.
        sent = sampling if sampling.seed is None else replace(sampling, seed=sampling.seed + indices[0])
        attempt_no = 0
        refused = []  # per failed attempt: was nobody there (refused, unresolvable)?
        t_call = time.monotonic()

        def fail(error: ModelError, latency: float) -> None:
            refused.append(_nobody_there(error))
            self.accounting.add(tag, failures=1)
            if self.cache is not None:  # one row per failed attempt, naming every key it covered
                self.cache.record_failure(group_keys, namespace=self.namespace, model=self.provider.model,
                                          tag=tag, attempt=attempt_no, error=error, latency_s=latency)

        async def attempt() -> tuple[ProviderResponse, float]:
            nonlocal attempt_no
            async with self._admitted(len(indices), sampling.client_priority):
                attempt_no += 1  # counted once it holds a slot, i.e. once it is really sent
                t0 = time.monotonic()
                ACTIVITY.sent += 1
                ACTIVITY.in_flight += 1
                try:
                    resp = await self._complete(messages, sent, len(indices))
                except ModelError as e:
                    fail(e, time.monotonic() - t0)
                    if e.retryable and attempt_no < self.retry.max_attempts:
                        # "nobody there" is routine while a server starts: only --verbose shows it
                        log.log(logging.INFO if _nobody_there(e) else logging.WARNING,
                                "%s (attempt %d/%d on %s), retrying", e, attempt_no, self.retry.max_attempts,
                                self.endpoint)
                    raise
                finally:
                    ACTIVITY.in_flight -= 1
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
            return self._failed(indices, keys, error, t_call), []
        except ModelError as e:
            if e.fatal:
                raise
            if refused and all(refused):
                raise EndpointUnreachable(f"no server answers at {self.endpoint} ({e.message}; "
                                          f"{attempt_no} attempts)") from e
            return self._failed(indices, keys, e, t_call), []
        answered = indices[:len(resp.completions)]
        if len(answered) < len(indices):
            note_ignores_n(self.endpoint, len(indices), len(answered))
        warn_if_identical(self.endpoint, resp.completions, sampling)
        done = await self._store(messages, sampling, answered, keys, resp, latency, attempt_no, tag, len(indices))
        return done, indices[len(answered):]

    async def _complete(self, messages: list[Message], sampling: Sampling, n: int) -> ProviderResponse:
        """One attempt under the attempt timeout; between 1 and n completions, or a ModelError."""
        try:
            async with asyncio.timeout(self.timeouts.attempt_s):
                resp = await self.provider.complete(messages, sampling, n)
        except TimeoutError:
            raise ModelTimeoutError(f"attempt took longer than {self.timeouts.attempt_s}s") from None
        if not resp.completions:
            raise EmptyResponseError(f"server at {self.endpoint} answered without any completion (n={n})")
        if len(resp.completions) > n:
            raise ServerError(f"malformed response: {len(resp.completions)} completions for n={n}")
        return resp

    def _failed(self, indices: list[int], keys: dict[int, str], error: ModelError, t0: float) -> list[Sample]:
        return [Sample(i, keys[i], None, error, False, time.monotonic() - t0, FREE) for i in indices]

    def _shares(self, resp: ProviderResponse) -> list[Usage]:
        """Each completion's share of its request's usage, priced: the prompt of an n-sample
        request is billed once, so its tokens are split evenly; completion tokens are the
        choice's own count when the provider gives one."""
        k = len(resp.completions)
        usage = resp.usage
        prompt = _split_evenly(usage.prompt_tokens, k)
        cached = _split_evenly(usage.cached_prompt_tokens, k)
        per_choice = [c.completion_tokens for c in resp.completions]
        completion = (per_choice if all(t is not None for t in per_choice)
                      else _split_evenly(usage.completion_tokens, k))
        return [priced(Usage(prompt[j], completion[j], cached[j]), self.price) for j in range(k)]

    def _lookup_many(self, asked: list[list[str]]) -> list[dict[str, CallRecord]]:
        found = cached_calls(self.cache, [key for keys in asked for key in keys])
        return [{key: found[key] for key in keys if key in found} for keys in asked]

    def _put_many(self, stored: list[list[CallRecord]]) -> list[None]:
        self.cache.put_many([record for records in stored for record in records])  # type: ignore[union-attr]
        return [None] * len(stored)

    async def _store(self, messages: list[Message], sampling: Sampling, indices: list[int], keys: dict[int, str],
               resp: ProviderResponse, latency: float, attempt_no: int, tag: str, asked: int) -> list[Sample]:
        shares = self._shares(resp)
        records = [CallRecord(
            key=keys[i], namespace=self.namespace, model=self.provider.model, provider=self.provider.name,
            sampling=sampling.as_key(), messages=messages, index=i, completion=c, prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens, cached_prompt_tokens=u.cached_prompt_tokens, latency_s=latency,
            tag=tag, cost_usd=u.cost_usd, attempt=attempt_no, request_size=asked,
            endpoint=resp.endpoint or self.endpoint)
            for i, c, u in zip(indices, resp.completions, shares)]
        if self.cache is not None:
            await self._puts(records)  # stored before anyone sees the results
        self.accounting.add(tag, calls=1, samples=len(indices), usage=priced(resp.usage, self.price))
        return [Sample(i, keys[i], c, None, False, latency, u) for i, c, u in zip(indices, resp.completions, shares)]

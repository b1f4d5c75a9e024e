"""Call keys, call records and the call-cache protocol. Pure: no I/O here.

Every model call is keyed by (namespace, model, sampling parameters, messages, sample index).
The wrapper (models/wrapper.py) looks each index up before sending anything and stores every
finished request with `put_many` before returning its results, so a killed run resumes
without repeating finished work. The SQLite run store implements the same `CallCache`
protocol; `InMemoryCallCache` is the in-process version for tests and library use.

    >>> from proofloop.models.base import Sampling, Completion
    >>> msgs = [{"role": "user", "content": "Prove that 2 is prime."}]
    >>> k0 = call_key("demo", "m", Sampling(), msgs, 0)
    >>> k0 == call_key("demo", "m", Sampling(), msgs, 0), k0 == call_key("demo", "m", Sampling(), msgs, 1)
    (True, False)
    >>> cache = InMemoryCallCache()
    >>> cache.put_many([CallRecord(key=k0, namespace="demo", model="m", provider="echo",
    ...     sampling=Sampling().as_key(), messages=msgs, index=0, completion=Completion("ok"))])
    >>> cache.get(k0).completion.text
    'ok'
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from proofloop.errors import ModelError
from proofloop.models.base import Completion, Message, Sampling

KEY_VERSION = 1  # bump when the key's ingredients change, so old entries stop matching


def call_key(namespace: str, model: str, sampling: Sampling, messages: list[Message], index: int) -> str:
    """sha256 (hex) of a canonical JSON of everything that determines one sample."""
    payload = {"v": KEY_VERSION, "namespace": namespace, "model": model,
               "sampling": sampling.as_key(), "messages": messages, "index": index}
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class CallRecord:
    """One successful sample. Token counts are this sample's share of its request: the prompt
    of an n-sample request is billed once, so its tokens are split over the n records."""

    key: str
    namespace: str
    model: str
    provider: str
    sampling: dict[str, Any]
    messages: list[Message]
    index: int
    completion: Completion
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    latency_s: float = 0.0
    tag: str = ""
    cost_usd: float | None = None  # this sample's share; None when the price is unknown
    attempt: int = 1  # which attempt of its request succeeded
    request_size: int = 1  # how many samples its request asked for
    endpoint: str | None = None  # the server that answered (not part of the key; the store keeps it, v6)
    created_at: float = field(default_factory=time.time)


@dataclass
class FailureRecord:
    """One failed attempt of one request (which covered `keys`)."""

    keys: list[str]
    namespace: str
    model: str
    tag: str
    attempt: int
    kind: str  # ModelError.kind
    message: str
    status: int | None
    retryable: bool
    latency_s: float
    created_at: float = field(default_factory=time.time)


@runtime_checkable
class CallCache(Protocol):
    def get(self, key: str) -> CallRecord | None:
        """The stored successful sample for `key`, or None. Failures are never returned.
        A cache may also have `get_many(keys) -> {key: CallRecord}` (see cached_calls)."""
        ...

    def put_many(self, records: list[CallRecord]) -> None:
        """Store all records of one finished request at once (all or nothing)."""
        ...

    def record_failure(self, keys: list[str], *, namespace: str, model: str, tag: str, attempt: int,
                       error: ModelError, latency_s: float) -> None:
        """Record one failed attempt of one request (also one later retried successfully).

        `keys` are the call keys of every sample that request asked for. An implementation
        stores ONE row per failed attempt (a failed attempt of an 8-sample request is one failure, not
        eight) holding the whole list, so failure counts match requests sent. A bare string is
        refused: it would silently be read as a list of characters."""
        ...


def cached_calls(cache: CallCache | None, keys: list[str]) -> dict[str, CallRecord]:
    """The stored calls among `keys`, by key: in one look-up when the cache has `get_many`
    (the run store answers all n keys of a request with one query), else key by key."""
    if cache is None:
        return {}
    get_many = getattr(cache, "get_many", None)
    if get_many is not None:
        return get_many(keys)
    found = {key: cache.get(key) for key in keys}
    return {key: rec for key, rec in found.items() if rec is not None}


class InMemoryCallCache:
    """A dict-backed CallCache. Thread-safe; `failures` holds one FailureRecord per failed attempt."""

    def __init__(self) -> None:
        self.records: dict[str, CallRecord] = {}
        self.failures: list[FailureRecord] = []
        self._lock = threading.Lock()

    def get(self, key: str) -> CallRecord | None:
        with self._lock:
            return self.records.get(key)

    def get_many(self, keys: list[str]) -> dict[str, CallRecord]:
        with self._lock:
            return {key: self.records[key] for key in keys if key in self.records}

    def put_many(self, records: list[CallRecord]) -> None:
        with self._lock:
            self.records.update({r.key: r for r in records})

    def record_failure(self, keys: list[str], *, namespace: str, model: str, tag: str, attempt: int,
                       error: ModelError, latency_s: float) -> None:
        if isinstance(keys, str) or not keys:
            raise TypeError(f"record_failure takes the non-empty list of keys of one request, got {keys!r}")
        with self._lock:
            self.failures.append(FailureRecord(
                keys=list(keys), namespace=namespace, model=model, tag=tag, attempt=attempt, kind=error.kind,
                message=error.message, status=error.status, retryable=error.retryable, latency_s=latency_s))

    def __len__(self) -> int:
        return len(self.records)

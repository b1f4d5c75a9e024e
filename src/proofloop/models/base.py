"""The one small provider interface every model backend implements.

A provider turns (messages, sampling parameters, n) into n completions with text, reasoning,
finish reason and token usage. It does nothing else: retries, timeouts, concurrency limits,
n-splitting, the call cache and cost accounting live once in models/wrapper.py.

    >>> import asyncio
    >>> class Echo:
    ...     name = "echo"; model = "echo-1"; max_n = None
    ...     async def complete(self, messages, sampling, n):
    ...         text = messages[-1]["content"]
    ...         return ProviderResponse([Completion(text=text) for _ in range(n)], Usage(3, 1))
    >>> asyncio.run(Echo().complete([{"role": "user", "content": "hi"}], Sampling(), 2)).completions[1].text
    'hi'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from proofloop.protocol.types import Message  # the chat message the protocol renders



@dataclass(frozen=True)
class Sampling:
    """Sampling parameters. `extra` goes to the server as-is (e.g. {"top_k": 20}).
    `client_priority` is never sent: it orders the call among those waiting for the
    endpoint's concurrency caps (lower first; models/limiter.py), and like `priority` in
    `extra` it is not part of the call key."""

    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 8192
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    client_priority: int | None = None

    def as_key(self) -> dict[str, Any]:
        """The part of the call-cache key that the parameters contribute. Scheduling hints in
        `extra` (`priority`, vLLM's per-request scheduling priority) are left out: they change
        when the server runs a request, not what a sample is, so a replay or a resume finds
        its samples in the cache whatever priority it sends them with."""
        scheduling_hints = ("priority",)
        extra = {k: v for k, v in sorted(self.extra.items()) if k not in scheduling_hints}
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed, "extra": extra}


@dataclass(frozen=True)
class Usage:
    """Tokens of a request or of one sample, and their cost in US dollars.

    `cost_usd` None means the price is unknown (never "free"); a provider leaves it None and
    the wrapper prices it. A sum's cost is unknown as soon as any part's cost is unknown:

    >>> (Usage(10, 2, cost_usd=0.5) + Usage(4, 1, 1, cost_usd=0.25)).cost_usd
    0.75
    >>> (Usage(10, 2, cost_usd=0.5) + Usage(4, 1)).cost_usd is None
    True
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens the server served from its prefix cache
    cost_usd: float | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: "Usage") -> "Usage":
        cost = None if self.cost_usd is None or other.cost_usd is None else self.cost_usd + other.cost_usd
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.cached_prompt_tokens + other.cached_prompt_tokens, cost)


FREE = Usage(cost_usd=0.0)  # nothing spent: the start of a sum whose parts all have a price


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    initial_s: float = 1.0  # first backoff; doubles per retry, plus up to initial_s of jitter
    max_s: float = 60.0  # backoff cap (a server's Retry-After is honoured even when longer)
    refused_attempts: int = 3  # refused / unresolvable this many times in a row: nobody is there


@dataclass(frozen=True)
class Timeouts:
    """connect_s and idle_read_s are enforced by the provider's HTTP client (idle_read_s is the
    longest silence between two received chunks, so a long live stream is never cut);
    attempt_s and total_s are enforced by the wrapper: an attempt timeout is retried, the total
    timeout (all attempts and backoff of one request) ends the call."""

    connect_s: float = 10.0
    idle_read_s: float = 600.0
    attempt_s: float | None = None
    total_s: float | None = None


@dataclass
class Completion:
    text: str
    reasoning: str | None = None
    finish_reason: str | None = "stop"  # "stop", "length" (truncated), ...
    completion_tokens: int | None = None


@dataclass
class ProviderResponse:
    """What one request returned: the completions and the usage billed for the whole request
    (with n > 1 in one request the prompt is billed once). A server that ignores `n` returns
    fewer completions than asked; the wrapper sends the rest one per request."""

    completions: list[Completion]
    usage: Usage
    endpoint: str | None = None  # the server that answered, when a provider has several (models/replicas.py)


@runtime_checkable
class Provider(Protocol):
    name: str  # "openai", "local", "sim"
    model: str  # the model id sent to / loaded by the backend
    max_n: int | None  # most samples the backend returns per request (None: no cap)

    async def complete(self, messages: list[Message], sampling: Sampling, n: int) -> ProviderResponse:
        """One request for n completions. Raise a proofloop.errors.ModelError on failure."""
        ...


@dataclass
class Activity:
    """What the model layer is doing right now, for progress displays: request attempts sent
    and in flight, and tokens generated so far (streamed pieces from a server, about one token
    each on vLLM and SGLang; generated tokens on the local model)."""

    sent: int = 0
    in_flight: int = 0
    streamed: int = 0


ACTIVITY = Activity()  # one per process: the wrapper and the streaming provider count into it


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

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters. `extra` goes to the server as-is (e.g. {"top_k": 20})."""

    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 8192
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_key(self) -> dict[str, Any]:
        """The part of the call-cache key that the parameters contribute. Scheduling hints in
        `extra` (`priority`, vLLM's per-request scheduling priority) are left out: they change
        when the server runs a request, not what a sample is, so a replay or a resume finds
        its samples in the cache whatever priority it sends them with."""
        scheduling_hints = ("priority",)
        extra = {k: v for k, v in sorted(self.extra.items()) if k not in scheduling_hints}
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed, "extra": extra}


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens the server served from its prefix cache

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt_tokens + other.prompt_tokens,
                     self.completion_tokens + other.completion_tokens,
                     self.cached_prompt_tokens + other.cached_prompt_tokens)


@dataclass
class Completion:
    text: str
    reasoning: str | None = None
    finish_reason: str | None = "stop"  # "stop", "length" (truncated), ...
    completion_tokens: int | None = None


@dataclass
class ProviderResponse:
    """What one request returned: the completions and the usage billed for the whole request
    (with n > 1 in one request the prompt is billed once)."""

    completions: list[Completion]
    usage: Usage


@runtime_checkable
class Provider(Protocol):
    name: str  # "openai", "local", "sim"
    model: str  # the model id sent to / loaded by the backend
    max_n: int | None  # most samples the backend returns per request (None: no cap)

    async def complete(self, messages: list[Message], sampling: Sampling, n: int) -> ProviderResponse:
        """One request for n completions. Raise a proofloop.errors.ModelError on failure."""
        ...

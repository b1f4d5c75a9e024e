"""The simulated model as an in-process Provider (models/base.py), with optional server timing.

    >>> import asyncio
    >>> from proofloop.models.base import Sampling
    >>> from proofloop.sim.model import make_problems
    >>> p = SimProvider(server=ServerModel(time_scale=1e6), seed=0)
    >>> msgs = [{"role": "user", "content": make_problems(1)[0] + "\\n## Self Evaluation"}]
    >>> r = asyncio.run(p.complete(msgs, Sampling(max_tokens=100_000, seed=0), 4))
    >>> len(r.completions), r.usage.prompt_tokens > 0, r.usage.cached_prompt_tokens
    (4, True, 0)

Sample numbering: with `sampling.seed = s` the n completions are samples s .. s+n-1 of this
prompt (a pure function of prompt and number: replay gives the same texts); with seed None
each request gets fresh numbers from a per-prompt counter, like a real server sampling anew.
With `server=None` answers come at once (no timing, no prefix cache: cached tokens are 0).
`sampling.extra["priority"]` (an integer, lower first, default 0) is the request's place in
the server's queue, as the body field `priority` is for vLLM; it changes timing only.
"""

from __future__ import annotations

from typing import Any, Callable

from proofloop.errors import BadRequestError, ContextWindowError
from proofloop.models.base import Completion, Message, ProviderResponse, Sampling, Usage
from proofloop.models.limiter import sequence_callback
from proofloop.sim.model import SimConfig, SimModel
from proofloop.sim.server import ServerModel, request_priority

__all__ = ["SimProvider", "ServerModel", "provider_from_settings"]


def provider_from_settings(settings: Any, *, api_key: str | None = None, timeouts: Any = None,
                           notice: Callable[[str], None] = print) -> "SimProvider":
    """The registry's factory for "sim" (entry point in pyproject.toml; models/registry.py)."""
    return SimProvider(seed=settings.sim_seed, max_n=settings.max_n)


class SimProvider:
    """Provider "sim" (model "sim-1"): SimModel answers, ServerModel (if given) paces them."""

    name = "sim"
    accepts_priority = True  # reads Sampling.extra["priority"] (search.pool sends it by default)

    def __init__(self, config: SimConfig | None = None, server: ServerModel | None = None, seed: int = 0,
                 *, max_n: int | None = None, model: str = "sim-1", context_window: int | None = None):
        self.sim = SimModel(config, seed)
        self.server = server
        self.max_n = max_n
        self.model = model
        self.context_window = context_window  # None: no limit; else prompt + max_tokens must fit
        self._counters: dict[str, int] = {}
        self.requests = 0

    async def complete(self, messages: list[Message], sampling: Sampling, n: int) -> ProviderResponse:
        if n < 1:
            raise BadRequestError(f"n must be at least 1, got {n}", status=400)
        if self.max_n is not None and n > self.max_n:
            raise BadRequestError(f"n={n} exceeds max_n={self.max_n}", status=400)
        if not messages:
            raise BadRequestError("no messages", status=400)
        prompt_tokens = self.sim.prompt_tokens(messages)
        if self.context_window is not None and prompt_tokens + (sampling.max_tokens or 0) > self.context_window:
            raise ContextWindowError(f"prompt ({prompt_tokens}) + max_tokens ({sampling.max_tokens}) exceeds "
                                     f"the context window ({self.context_window})", status=400)
        try:
            priority = request_priority(sampling.extra.get("priority"))
        except ValueError as e:
            raise BadRequestError(str(e), status=400) from None
        if sampling.seed is not None:
            first = int(sampling.seed)
        else:
            key = self.sim.request_key(messages)
            first = self._counters.get(key, 0)
            self._counters[key] = first + n
        self.requests += 1
        outs = self.sim.respond(messages, n, sampling.max_tokens, first_sample=first)
        cached = 0
        if self.server is not None:
            info = await self.server.run(self.sim.prompt_blocks(messages, self.server.block_chars),
                                         [o.completion_tokens for o in outs], priority,
                                         on_sequence_done=sequence_callback())
            cached = info.cached_tokens
        completions = [Completion(text=o.text, reasoning=o.reasoning, finish_reason=o.finish_reason,
                                  completion_tokens=o.completion_tokens) for o in outs]
        return ProviderResponse(completions, Usage(prompt_tokens, sum(o.completion_tokens for o in outs), cached))

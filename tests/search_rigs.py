"""Test rigs for the search tests: the simulator with some outputs rigged (truncated, failed,
unparsable), and a context over it. Deterministic: no server, no clock."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from proofloop.errors import ServerError
from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model, RetryPolicy
from proofloop.search.base import MemoryRecorder, SearchContext
from proofloop.sim.provider import SimProvider

SAMPLING = Sampling(seed=0, max_tokens=200_000)
GENERATION = ("generate", "refine")


class Rigged:
    """SimProvider(seed) whose generation samples with `truncate(index)` come back cut at the
    token limit (finish_reason "length", the text kept, so the proof still has a solution);
    requests of the roles in `fail` raise a server error; outputs of the roles in `garble` lose
    their boxed score (unparsable)."""

    name = "sim"
    max_n = None

    def __init__(self, seed: int = 1, truncate: Callable[[int], bool] = lambda i: False,
                 fail: tuple[str, ...] = (), garble: tuple[str, ...] = ()):
        self.inner = SimProvider(seed=seed)
        self.model = self.inner.model
        self.truncate, self.fail, self.garble = truncate, fail, garble

    async def complete(self, messages, sampling, n):
        role = self.inner.sim.role_of(messages)
        if role in self.fail:
            raise ServerError("rigged failure", status=500)
        response = await self.inner.complete(messages, sampling, n)
        first = sampling.seed or 0
        out = []
        for i, c in enumerate(response.completions):
            if role in GENERATION and self.truncate(first + i):
                c = dataclasses.replace(c, finish_reason="length")
            if role in self.garble:
                c = dataclasses.replace(c, text=c.text.replace("\\boxed", "\\fbox"))
            out.append(c)
        return dataclasses.replace(response, completions=out)


def rig_context(provider=None, *, namespace: str = "", seed: int = 0, **rig) -> SearchContext:
    model = Model(provider or Rigged(**rig), namespace=namespace, retry=RetryPolicy(max_attempts=1))
    return SearchContext(model, gen_sampling=SAMPLING, verify_sampling=SAMPLING, meta_sampling=SAMPLING,
                         recorder=MemoryRecorder(), seed=seed)


def solve(strategy, problem: str, ctx: SearchContext):
    return asyncio.run(strategy.solve(problem, ctx))

"""A concurrency cap that admits its waiters by priority: the client's own scheduling queue.

A server with a FIFO queue (vLLM's default policy, hosted APIs) runs requests in the order
they arrive. When the client holds back what exceeds a cap (requests, or sequences: the
samples of those requests) and releases it by priority, the work that gates the most (a
search's later rounds, its refinements) still goes first, and the server's own queue stays
short. `PriorityLimiter` is that cap: `async with limiter.slot(weight, priority)`.

Rules: lower priority first, None counts as 0 (vLLM's default), ties in arrival order. A
waiter is admitted only when its weight fits and no waiter ranked before it is still
waiting, so a large request is not starved by a stream of small ones; a request heavier
than the whole cap is admitted alone. Cancelling a waiter removes it.

Sequences end one by one. A request of n samples holds n sequence slots, but the server frees
each sequence as its sample ends, and the slowest of 64 heavy-tailed samples can run long
after the others. A provider that sees a sample end (a streamed choice's finish_reason, the
simulator's sequence) calls `sequence_finished()`, and the holder's slot for that sample is
given back at once (`freeing_sequences` names the holder for the request being served).

    >>> import asyncio
    >>> async def demo():
    ...     lim, order = PriorityLimiter(1), []
    ...     async def call(name, prio):
    ...         async with lim.slot(priority=prio):
    ...             order.append(name)
    ...             await asyncio.sleep(0)
    ...     async with lim.slot():  # hold the only slot while three calls queue up
    ...         tasks = [asyncio.create_task(call(n, p)) for n, p in (("late", 5), ("urgent", -1), ("plain", None))]
    ...         await asyncio.sleep(0)
    ...     await asyncio.gather(*tasks)
    ...     return order
    >>> asyncio.run(demo())
    ['urgent', 'plain', 'late']
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar


class PriorityLimiter:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.in_use = 0
        self._waiting: list[tuple[int, int, int, asyncio.Future]] = []  # (priority, arrival, weight, future)
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, fut in self._waiting if not fut.done())

    def _fits(self, weight: int) -> bool:
        return self.in_use == 0 or self.in_use + weight <= self.capacity

    def _wake(self) -> None:
        """Admit waiters from the head of the queue while the head fits."""
        while self._waiting:
            _, _, weight, fut = self._waiting[0]
            if fut.done():  # cancelled while waiting
                heapq.heappop(self._waiting)
                continue
            if not self._fits(weight):
                return
            heapq.heappop(self._waiting)
            self.in_use += weight
            fut.set_result(None)

    async def acquire(self, weight: int = 1, priority: int | None = None) -> None:
        weight = max(1, weight)
        if not self._waiting and self._fits(weight):
            self.in_use += weight
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority or 0, next(self._arrivals), weight, fut))
        self._wake()  # ranked first and fits: in at once, not at the next release
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # admitted just as it was cancelled: give it back
                self.release(weight)
            else:
                self._wake()  # it may have been the head that blocked smaller ones
            raise

    def release(self, weight: int = 1) -> None:
        self.in_use -= max(1, weight)
        self._wake()

    @asynccontextmanager
    async def slot(self, weight: int = 1, priority: int | None = None) -> AsyncIterator["Held"]:
        """Hold `weight` units while the block runs; the `Held` can give some back earlier."""
        await self.acquire(weight, priority)
        held = Held(self, max(1, weight))
        try:
            yield held
        finally:
            held.give_back(held.left)


class Held:
    """Units of a limiter held by one caller, given back as the work behind them ends."""

    def __init__(self, limiter: PriorityLimiter, units: int):
        self.limiter, self.left = limiter, units

    def give_back(self, units: int = 1) -> None:
        """Give back `units` of those still held (more than are held: all of them)."""
        units = min(units, self.left)
        if units > 0:
            self.left -= units
            self.limiter.release(units)


# The holder of the sequence slots of the request being served in this task (None: no cap).
_sequence_done: ContextVar[Callable[[], None] | None] = ContextVar("proofloop_sequence_done", default=None)


@contextmanager
def freeing_sequences(held: Held) -> Iterator[None]:
    """While the block runs, `sequence_finished()` in this task gives back one of `held`."""
    token = _sequence_done.set(held.give_back)
    try:
        yield
    finally:
        _sequence_done.reset(token)


def sequence_finished() -> None:
    """One sample of the request being served has ended: free its sequence slot now (a no-op
    when the request holds none). Providers call it; call it once per sample."""
    done = _sequence_done.get()
    if done is not None:
        done()


def sequence_callback() -> Callable[[], None] | None:
    """`sequence_finished` bound to this task's request, for code that runs outside the task
    (a future's done-callback); None when the request holds no sequence slots."""
    return _sequence_done.get()

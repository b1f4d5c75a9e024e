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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


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
    async def slot(self, weight: int = 1, priority: int | None = None) -> AsyncIterator[None]:
        await self.acquire(weight, priority)
        try:
            yield
        finally:
            self.release(weight)

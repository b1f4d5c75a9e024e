"""`LoopBatch`: what several tasks ask for in one stretch of the event loop, done in one go.

A store look-up or write costs about the same for one request's rows as for many: a
transaction, a statement, SQLAlchemy's work around it. When many requests finish together
(a batch of proofs to grade, n searches at once), the tasks that ask in the same pass of the
event loop are answered by ONE call of `do`, made just after that pass; each task awaits its
own share of the result, so nothing it asked for is used before `do` has returned (a call
stored, a record written). An exception of `do` is raised in every task of its batch.

    >>> import asyncio
    >>> calls = []
    >>> def lookup(asked):              # one call for every task's keys
    ...     calls.append(asked)
    ...     return [key.upper() for key in asked]
    >>> batch = LoopBatch(lookup)
    >>> async def main():
    ...     return await asyncio.gather(*(batch(k) for k in "abc"))
    >>> asyncio.run(main()), calls
    (['A', 'B', 'C'], [['a', 'b', 'c']])
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["LoopBatch"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class LoopBatch(Generic[Item, Result]):
    """`await batch(item)` -> `do(items)[i]` for this task's item, one `do` per loop pass.

    `do` is called on the event loop's thread (as the caller would have called it) with the
    items in the order they were asked for, and returns one result per item. Each event loop
    has its own batch (a Model may be used by several asyncio.run calls, one after another or
    in threads)."""

    def __init__(self, do: Callable[[list[Item]], Sequence[Result]]):
        self.do = do
        self.pending: dict[asyncio.AbstractEventLoop, list[tuple[Item, asyncio.Future[Result]]]] = {}
        self.lock = threading.Lock()

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        # A future per task: a task cancelled while it waits cancels its own, not the others'.
        future: asyncio.Future[Result] = loop.create_future()
        with self.lock:
            waiting = self.pending.setdefault(loop, [])
            waiting.append((item, future))
            first = len(waiting) == 1
        if first:
            loop.call_soon(self._run, loop)
        return await future

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        with self.lock:
            waiting = self.pending.pop(loop, [])
        try:
            results = self.do([item for item, _ in waiting])
            if len(results) != len(waiting):
                raise RuntimeError(f"a batch of {len(waiting)} got {len(results)} results")
        except BaseException as e:  # every task of the batch sees why
            for _, future in waiting:
                if not future.done():
                    future.set_exception(e)
            if not isinstance(e, Exception):
                raise
            return
        for (_, future), result in zip(waiting, results):
            if not future.done():
                future.set_result(result)

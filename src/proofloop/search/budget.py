"""Budgets: tokens, cost and wall time, per problem and per run.

A problem's budget may have a parent (the run's budget, shared by all its problems); spending
is charged to both. When either runs out, `watch()` raises BudgetExceeded with the reason, and
the problem's scope (scheduler.py) cancels its outstanding work. Calls already in flight when
a budget runs out are cancelled, not waited for, so a budget is overshot by at most the
calls that finished in the same instant; tokens of a call are known only once it finished.

Spending is a models.base.Usage (a sample's `usage`, as the wrapper priced it) and is summed
with Usage's `+`: once any part's cost is unknown, the spent cost is unknown, and a cost
budget cannot be kept.

    >>> run = Budget(tokens=100, scope="run")
    >>> problem = Budget(tokens=1000, parent=run)
    >>> problem.charge(Usage(100, 50))
    >>> problem.exhausted()
    'run token budget of 100 spent (150)'
    >>> problem.exhausted_why()[0]
    'budget_tokens'
    >>> run.spent.cost_usd is None   # a price was unknown
    True
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from proofloop.errors import BudgetExceeded
from proofloop.models.base import FREE, Usage


@dataclass
class Budget:
    tokens: int | None = None  # prompt + completion tokens
    cost_usd: float | None = None
    wall_s: float | None = None
    parent: "Budget | None" = None
    scope: str = "problem"
    spent: Usage = FREE  # everything charged so far (cost None once a price was unknown)
    _started: float | None = field(default=None, repr=False)
    _event: asyncio.Event | None = field(default=None, repr=False)

    def start(self) -> None:
        """Start the wall clock (once: a run's budget starts with its first problem)."""
        if self._started is None:
            self._started = time.monotonic()
        if self.parent is not None:
            self.parent.start()

    @property
    def spent_tokens(self) -> int:
        return self.spent.tokens

    @property
    def spent_cost(self) -> float | None:
        return self.spent.cost_usd

    def charge(self, usage: Usage) -> None:
        self.spent = self.spent + usage
        if self.parent is not None:
            self.parent.charge(usage)
        if self._own_exhausted() and self._event is not None:
            self._event.set()

    def remaining_s(self) -> float | None:
        """Seconds left on the tighter of this and the parent's wall clocks (None: no limit)."""
        mine = None
        if self.wall_s is not None:
            elapsed = time.monotonic() - self._started if self._started is not None else 0.0
            mine = self.wall_s - elapsed
        theirs = self.parent.remaining_s() if self.parent is not None else None
        return min((x for x in (mine, theirs) if x is not None), default=None)

    def _own_exhausted(self) -> tuple[str, str] | None:
        """(stop reason, message) when this budget (not its parent) is spent."""
        if self.tokens is not None and self.spent_tokens >= self.tokens:
            return "budget_tokens", f"{self.scope} token budget of {self.tokens} spent ({self.spent_tokens})"
        if self.cost_usd is not None:
            if self.spent_cost is None:
                return "budget_cost", f"{self.scope} cost budget cannot be kept: the model's price is unknown"
            if self.spent_cost >= self.cost_usd:
                return "budget_cost", f"{self.scope} cost budget of ${self.cost_usd} spent (${self.spent_cost:.4f})"
        if self.wall_s is not None and self._started is not None and time.monotonic() - self._started >= self.wall_s:
            return "budget_wall", f"{self.scope} wall-time budget of {self.wall_s}s spent"
        return None

    def exhausted_why(self) -> tuple[str, str] | None:
        """(stop reason: budget_tokens / budget_cost / budget_wall, message) of the budget
        (this one's or the parent's) that forbids more work, or None."""
        return (self.parent.exhausted_why() if self.parent is not None else None) or self._own_exhausted()

    def exhausted(self) -> str | None:
        """Why no more work may start (this budget's or the parent's), or None."""
        why = self.exhausted_why()
        return why[1] if why else None

    def check(self) -> None:
        """Raise BudgetExceeded (its `kind` the stop reason) once a budget is spent."""
        why = self.exhausted_why()
        if why is not None:
            error = BudgetExceeded(why[1])
            error.kind = why[0]
            raise error

    def _events(self) -> list[asyncio.Event]:
        if self._event is None:
            self._event = asyncio.Event()
        return [self._event] + (self.parent._events() if self.parent is not None else [])

    async def watch(self) -> None:
        """Return never; raise BudgetExceeded the moment this budget or its parent runs out
        (events fire on spending, the timeout on the wall clock)."""
        self.start()
        events = self._events()
        while True:
            self.check()
            waits = [asyncio.ensure_future(e.wait()) for e in events]
            try:
                await asyncio.wait(waits, timeout=self.remaining_s(), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

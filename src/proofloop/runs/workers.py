"""Many workers: one run's work split over several processes, on any number of machines,
sharing one store (PostgreSQL for several machines; SQLite for several processes of one).

The run's creator stores the run and its work items (bench: problem ids; label: proof ids)
and does no work; each worker (`--worker RUN`, runs/execute.py `execute_worker`) then claims
items one at a time with an expiring claim (Store.claim_work), renews its claims while it
works (a Heartbeat thread, every ttl/3) and marks each item done when its records are stored.
A worker killed with kill -9 stops renewing: after the claim's ttl another worker takes the
item over, and since every finished call is in the shared call cache, it repeats none of them.

    >>> import asyncio
    >>> from proofloop.store import Store
    >>> store = Store(":memory:")
    >>> run_id = store.create_run("bench", {})
    >>> store.add_work(run_id, ["p1", "p2", "p3"])
    >>> async def solve(x):
    ...     return x * 10
    >>> claims = WorkClaims(store, run_id, owner="host:123", ttl_s=60)
    >>> sorted(asyncio.run(claims.each({"p1": 1, "p2": 2, "p3": 3}, solve, parallel=2)))
    [10, 20, 30]
    >>> store.work_status(run_id)
    {'done': 3, 'held': 0, 'free': 0}

The worker that sees every item done finishes the run (runs/execute.py).

`work_progress` sums a split run's items up for `proofloop runs show`: done, claimed (by whom,
until when), pending, and how many each worker finished.

    >>> progress = work_progress(store.work_items(run_id), now=0.0)
    >>> progress["total"], progress["done"], progress["by_worker"]
    (3, 3, {'host:123': 3})
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

from proofloop.errors import UserInputError
from proofloop.store import Store, WorkItem

T = TypeVar("T")

# A claim its worker stopped renewing for this long is taken over by another worker.
CLAIM_TTL_S = float(os.environ.get("PROOFLOOP_CLAIM_TTL_S", "60"))
POLL_S = min(2.0, CLAIM_TTL_S / 4)  # how often an idle worker looks for expired claims


class WorkClaims:
    """One worker's claims on one run's work items. Has `renew()`, `run_id` and `ttl_s`, so a
    store Heartbeat keeps the claims alive while the worker works."""

    def __init__(self, store: Store, run_id: str, owner: str, ttl_s: float = CLAIM_TTL_S,
                 poll_s: float = POLL_S, notice: Callable[[str], None] = print):
        self.store, self.run_id, self.owner, self.ttl_s, self.poll_s = store, run_id, owner, ttl_s, poll_s
        self.notice = notice
        self.in_flight: set[str] = set()
        self.done: list[str] = []

    def renew(self) -> None:
        self.store.renew_work(self.run_id, self.owner, self.ttl_s)

    def give_back(self) -> None:
        """Let this worker's unfinished items be claimed at once (it stops: Ctrl-C, an error)."""
        try:
            self.store.renew_work(self.run_id, self.owner, ttl_s=-1.0)
        except Exception as e:  # noqa: BLE001 - the claims then expire on their own
            self.notice(f"proofloop: warning: could not give back the claims: {e}")

    def claim(self) -> str | None:
        """A new item for this worker, or None when none is free now. claim_work also returns
        the items this owner holds already (in flight here), so ask for one more than those."""
        got = self.store.claim_work(self.run_id, self.owner, self.ttl_s, limit=len(self.in_flight) + 1)
        new = [item for item in got if item not in self.in_flight]
        if not new:
            return None
        self.in_flight.add(new[0])
        return new[0]

    def finish(self, item: str) -> None:
        self.in_flight.discard(item)
        if self.store.finish_work(self.run_id, item, self.owner):
            self.done.append(item)
        else:  # our claim expired (a long stall) and another worker did it too: same calls, same records
            self.notice(f"proofloop: item {item} was taken over by another worker")

    def all_done(self) -> bool:
        status = self.store.work_status(self.run_id)
        return status["free"] == 0 and status["held"] == 0

    async def each(self, items: Mapping[str, T], do: Callable[[T], Awaitable[Any]], parallel: int) -> list[Any]:
        """Claim items until every one of the run's items is done (by anyone), calling `do`
        on each claimed one, `parallel` at a time; the results of this worker's items."""
        results: list[Any] = []

        async def loop() -> None:
            while True:
                item = self.claim()
                if item is None:
                    if self.all_done():
                        return
                    await asyncio.sleep(self.poll_s)  # held elsewhere: wait for it to finish or expire
                    continue
                if item not in items:
                    raise UserInputError(f"run {self.run_id}: work item {item!r} is not one of its items")
                results.append(await do(items[item]))
                self.finish(item)

        await asyncio.gather(*(loop() for _ in range(max(1, parallel))))
        return results


def work_progress(items: Sequence[WorkItem], now: float) -> dict[str, Any]:
    """A split run's work at time `now` (epoch seconds): items total, done, claimed (a live
    claim: item, worker, when the claim expires), pending (nobody holds it, or its claim
    expired: the next worker takes it), and per worker how many items it finished.
    total == done + len(claimed) + pending."""
    claimed = [{"item": w.item, "worker": w.owner, "expires_at": _iso(w.expires_at),
                "expires_in_s": round(w.expires_at - now, 1)}
               for w in items if not w.done_by and w.owner and w.expires_at is not None and w.expires_at >= now]
    done = [w for w in items if w.done_by]
    by_worker: dict[str, int] = {}
    for w in done:
        by_worker[w.done_by] = by_worker.get(w.done_by, 0) + 1  # type: ignore[index]
    expired = sum(1 for w in items if not w.done_by and w.owner and (w.expires_at is None or w.expires_at < now))
    return {"total": len(items), "done": len(done), "claimed": claimed,
            "pending": len(items) - len(done) - len(claimed), "expired_claims": expired,
            "by_worker": dict(sorted(by_worker.items()))}


def run_work(store: Store, run_id: str) -> dict[str, Any] | None:
    """`work_progress` of a split run now; None for a run without work items (not split)."""
    items = store.work_items(run_id)
    return work_progress(items, now=time.time()) if items else None


def render_progress(progress: Mapping[str, Any], most: int = 10) -> list[str]:
    """`work_progress` as lines for a person (at most `most` claimed items listed)."""
    claimed = progress["claimed"]
    lines = [f"work items: {progress['total']} in all, {progress['done']} done, {len(claimed)} claimed, "
             f"{progress['pending']} pending" + (f" ({progress['expired_claims']} of them from expired claims)"
                                                  if progress["expired_claims"] else "")]
    lines += [f"   {c['item']} claimed by {c['worker']} until {c['expires_at']} ({c['expires_in_s']:.0f} s more)"
              for c in claimed[:most]]
    if len(claimed) > most:
        lines.append(f"   ... and {len(claimed) - most} more claimed")
    if progress["by_worker"]:
        lines.append("done by worker: " + ", ".join(f"{w} {n}" for w, n in progress["by_worker"].items()))
    return lines


def _iso(epoch_s: float | None) -> str | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="seconds")

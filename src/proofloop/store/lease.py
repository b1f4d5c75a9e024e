"""Run leases: a run being worked on is held by one owner until an expiry time, renewed by a
heartbeat. A process killed mid-run stops renewing, its lease expires, and the run then reads
as `interrupted` (a computed status: the row still says running) until someone resumes it.

A runner takes the lease before it works on a run, keeps it alive with a Heartbeat and
releases it with the run's final status (runs/execute.py does exactly that).

The store does the compare-and-set (Store.acquire_run, renew_lease, release_run, each one
IMMEDIATE transaction); this module holds the caller's handle and the heartbeat thread.

    >>> from proofloop.store import Store
    >>> store = Store(":memory:")
    >>> run = store.create_run("prove", {})
    >>> lease = store.acquire_run(run, owner="host:123", ttl_s=30)
    >>> with Heartbeat(lease):
    ...     store.get_run(run).owner
    'host:123'
    >>> lease.release("finished")
    >>> store.get_run(run).status.value, store.get_run(run).owner
    ('finished', None)
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def default_owner() -> str:
    """host:pid, so the holder of a run can be found."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_gone(owner: str | None) -> bool:
    """True when `owner` is a process of this host that no longer exists (killed with -9, say):
    its lease need not be waited out. An owner on another host is never judged from here."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False


@dataclass
class Lease:
    """A held lease on one run. `renew` and `release` raise RunBusy when it was lost (it
    expired and another owner took the run)."""

    store: Any  # the Store (typed loosely: db.py imports this module)
    run_id: str
    owner: str
    ttl_s: float
    expires_at: float

    def renew(self) -> None:
        """Push the expiry to now + ttl_s (the heartbeat)."""
        self.expires_at = self.store.renew_lease(self.run_id, self.owner, self.ttl_s)

    def release(self, status: str, summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Set the run's final status (finished, failed, interrupted) and let go of it."""
        self.store.release_run(self.run_id, self.owner, status, summary=summary, error=error)


class Heartbeat:
    """A daemon thread renewing `lease` every ttl/3 while the `with` block runs. A failed
    renewal (lost lease, locked store) is kept in `error` and passed to `on_lost`; the thread
    then stops: the caller decides whether to abort the run."""

    def __init__(self, lease: Lease, *, every_s: float | None = None,
                 on_lost: Callable[[BaseException], None] | None = None):
        self.lease, self.every_s = lease, every_s or lease.ttl_s / 3
        self.on_lost = on_lost or (lambda error: None)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{lease.run_id}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.lease.renew()
            except Exception as e:  # noqa: BLE001 - reported to the caller, not lost
                self.error = e
                self.on_lost(e)
                return

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

"""Which samples a run stored and which a server was asked for (from the simulator's request
log), comparable: (prompt fingerprint, sample seed). A resume that repeats no finished call
asks for none of the samples stored before the kill."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

from proofloop.sim.http import fingerprint
from proofloop.store import Store


def stored_samples(store: Store, run_id: str) -> set[tuple[str, int]]:
    """(prompt fingerprint, sample seed) of every call the run stored."""
    return {(fingerprint({"messages": c.messages}), c.sampling["seed"] + c.index) for c in store.calls(run_id)}


def sent_samples(entries: list[dict], since: float) -> list[tuple[str, int]]:
    """Every sample asked for after `since`: a request of n samples with seed s asks for s .. s+n-1."""
    return [(e["messages_sha"], e["seed"] + i) for e in entries
            if e.get("t_start", 0) >= since and "messages_sha" in e for i in range(e.get("n") or 1)]


def kill_9_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout_s: float = 120) -> float:
    """SIGKILL `proc` once `ready()` holds (its run mid-way); the time of the kill, after the
    server has had a moment to log the requests the dead client left behind."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"not ready within {timeout_s} s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    time.sleep(0.5)
    return time.time()

"""The server's background workers: stored runs executed in threads through the one runner
(runs/execute.py), so a run started over HTTP is the same as `proofloop resume RUN`: same
lease and heartbeat, same call cache, same budgets and per-run concurrency cap.

A run is queued (stored running, no lease owner) until a worker takes it; `--workers N` runs
at most N at a time. Cancelling a queued run stores it as interrupted at once; cancelling an
executing one sets its cancel event (runs/execute.py stops it like Ctrl-C). Either way the
run's config gets `api.cancelled = true`, so a restarted server leaves it alone.

At start-up `resume_unfinished` queues every run this service started that is not finished,
failed or cancelled: runs a killed server left (their lease owner is gone) finish without
repeating a finished call, since every finished call replays from the store.

    >>> from proofloop.store import Store
    >>> store = Store(":memory:")
    >>> run = store.create_run("verify", {"api": {"service": True}})
    >>> api_status(store.get_run(run))     # stored, no worker has it yet
    'queued'
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from proofloop.errors import ProofloopError
from proofloop.runs import RunCancelled, execute
from proofloop.store import RunBusy, Store
from proofloop.store.schema import Run, RunStatus

log = logging.getLogger("proofloop.api")

API_STATUSES = ("queued", "running", "finished", "failed", "interrupted", "cancelled")
CANCELLED = "cancelled"
SERVER_STOPPED = "the server stopped; it resumes this run when it starts again"


class Conflict(ProofloopError):
    """The request cannot apply to the run in its present state (HTTP 409)."""


def api_status(run: Run) -> str:
    """The status a client sees: the store's, plus queued (no worker yet) and cancelled."""
    if (run.config.get("api") or {}).get(CANCELLED) and run.status is not RunStatus.FINISHED:
        return CANCELLED
    if run.status is RunStatus.RUNNING and run.owner is None:
        return "queued"
    return run.status.value


@dataclass
class Job:
    run_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    future: "Future[dict[str, Any] | None] | None" = None


class Workers:
    """A fixed pool of threads executing stored runs, one run per thread at a time."""

    def __init__(self, store: Store, workers: int, api_key: str | None = None):
        self.store, self.api_key = store, api_key
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="proofloop-run")
        self.jobs: dict[str, Job] = {}  # queued or executing in this process
        self.lock = threading.Lock()

    # ---- state, for /metrics and /readyz --------------------------------------------------

    def queue_depth(self) -> int:
        with self.lock:
            return sum(not j.started for j in self.jobs.values())

    def status(self, run: Run) -> str:
        """api_status, and queued for a run that waits for a worker here (a killed server's run
        reads as interrupted in the store until a worker takes its lease)."""
        status = api_status(run)
        with self.lock:
            job = self.jobs.get(run.id)
        return "queued" if status == "interrupted" and job is not None and not job.started else status

    def executing(self) -> int:
        with self.lock:
            return sum(j.started for j in self.jobs.values())

    # ---- submitting and cancelling ----------------------------------------------------------

    def submit(self, run_id: str) -> "Future[dict[str, Any] | None]":
        """Queue a stored run (a run already queued or executing here keeps its job)."""
        with self.lock:
            job = self.jobs.get(run_id)
            if job is None:
                job = self.jobs[run_id] = Job(run_id)
                job.future = self.pool.submit(self._work, job)
            assert job.future is not None
            return job.future

    def _work(self, job: Job) -> dict[str, Any] | None:
        with self.lock:
            if job.cancel.is_set():
                self.jobs.pop(job.run_id, None)
                return None
            job.started = True
        try:
            return execute(self.store, job.run_id, api_key=self.api_key, cancel=job.cancel,
                           notice=lambda line: log.info("run %s: %s", job.run_id, line))
        except RunCancelled:
            log.info("run %s: cancelled", job.run_id)
        except RunBusy as e:  # another process holds it (a CLI resume, a second server)
            log.warning("run %s: not executed: %s", job.run_id, e)
        except Exception as e:  # noqa: BLE001 - execute stored it on the run as failed
            log.warning("run %s: failed: %s", job.run_id, e)
        finally:
            with self.lock:
                self.jobs.pop(job.run_id, None)
        return None

    def cancel(self, run_id: str) -> None:
        """Stop a run of this store: queued or executing here, or left interrupted. A finished or
        failed run, or one another process executes, is a Conflict."""
        run = self.store.get_run(run_id)
        if run is None:
            raise KeyError(run_id)
        status = self.status(run)
        if status in ("finished", "failed", CANCELLED):
            raise Conflict(f"run {run_id} is {status}: nothing to cancel")
        with self.lock:
            job = self.jobs.get(run_id)
            if job is None and status == "running":
                raise Conflict(f"run {run_id} is executed by another process ({run.owner}); stop it there")
            self.store.update_run_config(run_id, {"api": {**(run.config.get("api") or {}), CANCELLED: True}})
            if job is None or not job.started:  # nothing executes it: store the outcome now
                self.store.set_run_status(run_id, RunStatus.INTERRUPTED, error="cancelled")
            if job is not None:
                job.cancel.set()

    # ---- start-up and shut-down -------------------------------------------------------------

    def resume_unfinished(self) -> list[str]:
        """Queue every unfinished, uncancelled run this service started (oldest first)."""
        runs = self.store.list_runs(limit=1_000_000)
        todo = [r.id for r in reversed(runs) if (r.config.get("api") or {}).get("service")
                and api_status(r) in ("queued", "interrupted")]
        for run_id in todo:
            self.submit(run_id)
        if todo:
            log.info("resuming %d unfinished run(s): %s", len(todo), ", ".join(todo[:10]))
        return todo

    def shutdown(self) -> None:
        """Stop every executing run (stored interrupted, resumed at the next start) and wait."""
        with self.lock:
            stopped = [j.run_id for j in self.jobs.values() if j.started]
            for job in self.jobs.values():
                job.cancel.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for run_id in stopped:  # say why: the runner calls every stop through `cancel` "cancelled"
            run = self.store.get_run(run_id)
            if run is not None and api_status(run) == "interrupted":
                self.store.set_run_status(run_id, RunStatus.INTERRUPTED, error=SERVER_STOPPED)

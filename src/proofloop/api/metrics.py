"""`/metrics` in the Prometheus text format, from what already counts: the model layer's
ACTIVITY (requests sent, in flight, tokens streamed), the run store's call and failure rows
(the wrapper stores each call with its role tag, model, tokens, cost and latency, and each
failed attempt with its kind), the workers' queue, and the HTTP requests this server answered.

Model calls are counted from the store as they are stored, from this server's start on (a
counter that starts at 0 with each process, as Prometheus expects): calls, tokens and cost by
role and model, failures by kind, latency as a histogram by role. Runs by kind and status
are read from the store at each scrape.

    >>> from proofloop.store import Store
    >>> m = Metrics(Store(":memory:"), queue_depth=lambda: 0, executing=lambda: 0)
    >>> text = m.render().decode()
    >>> "proofloop_model_requests_in_flight" in text and "proofloop_queue_depth 0.0" in text
    True
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from proofloop.models.base import ACTIVITY
from proofloop.store import Store
from proofloop.store.schema import CallRow, FailureRow, RunRow

from proofloop.api.workers import api_status

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """One registry per app (tests start many apps in one process)."""

    def __init__(self, store: Store, *, queue_depth: Callable[[], int], executing: Callable[[], int]):
        self.store = store
        self.registry = r = CollectorRegistry()
        self.lock = threading.Lock()
        self.calls_since, self.seen_at_mark, self.failure_id = time.time(), set[str](), self._last_failure_id()
        self.calls = Counter("proofloop_model_calls", "Model calls stored (one per sample)", ["role", "model"], registry=r)
        self.tokens = Counter("proofloop_model_tokens", "Tokens of stored calls", ["role", "model", "type"], registry=r)
        self.cost = Counter("proofloop_model_cost_usd", "Cost of stored calls with a known price", ["role", "model"],
                            registry=r)
        self.failures = Counter("proofloop_model_failures", "Failed request attempts", ["kind", "role", "model"],
                                registry=r)
        self.latency = Histogram("proofloop_model_call_seconds", "Latency of stored calls", ["role"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.http = Counter("proofloop_http_requests", "HTTP requests answered", ["method", "route", "status"],
                            registry=r)
        self.http_latency = Histogram("proofloop_http_request_seconds", "HTTP request time", ["route"], registry=r)
        self.runs = Gauge("proofloop_runs", "Runs in the store by kind and status", ["kind", "status"], registry=r)
        Gauge("proofloop_queue_depth", "Runs waiting for a worker", registry=r).set_function(queue_depth)
        Gauge("proofloop_runs_executing", "Runs executing in this server", registry=r).set_function(executing)
        Gauge("proofloop_model_requests_in_flight", "Model requests in flight",
              registry=r).set_function(lambda: ACTIVITY.in_flight)
        Gauge("proofloop_model_requests_sent", "Model request attempts sent by this process (a count)",
              registry=r).set_function(lambda: ACTIVITY.sent)
        Gauge("proofloop_model_tokens_streamed", "Tokens streamed so far by this process (a count)",
              registry=r).set_function(lambda: ACTIVITY.streamed)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http.labels(method, route, str(status)).inc()
        self.http_latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        """Bring the store-derived series up to date, then the exposition text."""
        with self.lock:
            self._count_new_calls()
            self._count_new_failures()
            self._count_runs()
        return generate_latest(self.registry)

    def _count_new_calls(self) -> None:
        cols = (CallRow.key, CallRow.tag, CallRow.model, CallRow.prompt_tokens, CallRow.completion_tokens,
                CallRow.cached_prompt_tokens, CallRow.cost_usd, CallRow.latency_s, CallRow.created_at)
        with Session(self.store.engine) as s, s.begin():
            rows = s.execute(select(*cols).where(CallRow.created_at >= self.calls_since)).all()
        fresh = [r for r in rows if not (r.created_at == self.calls_since and r.key in self.seen_at_mark)]
        for r in fresh:
            role, model = r.tag or "untagged", r.model
            self.calls.labels(role, model).inc()
            for kind, n in (("prompt", r.prompt_tokens), ("completion", r.completion_tokens),
                            ("cached_prompt", r.cached_prompt_tokens)):
                self.tokens.labels(role, model, kind).inc(n or 0)
            if r.cost_usd is not None:
                self.cost.labels(role, model).inc(r.cost_usd)
            if r.latency_s is not None:
                self.latency.labels(role).observe(r.latency_s)
        if rows:
            mark = max(r.created_at for r in rows)
            at_mark = {r.key for r in rows if r.created_at == mark}
            self.seen_at_mark = at_mark | (self.seen_at_mark if mark == self.calls_since else set())
            self.calls_since = mark

    def _last_failure_id(self) -> int:
        with Session(self.store.engine) as s, s.begin():
            return s.scalar(select(func.max(FailureRow.id))) or 0

    def _count_new_failures(self) -> None:
        with Session(self.store.engine) as s, s.begin():
            rows = s.execute(select(FailureRow.id, FailureRow.kind, FailureRow.tag, FailureRow.model)
                             .where(FailureRow.id > self.failure_id).order_by(FailureRow.id)).all()
        for r in rows:
            self.failures.labels(r.kind, r.tag or "untagged", r.model or "unknown").inc()
            self.failure_id = r.id

    def _count_runs(self) -> None:
        counts: dict[tuple[str, str], int] = {}
        with Session(self.store.engine) as s, s.begin():
            cancelled = RunRow.config[("api", "cancelled")].as_boolean()  # as api_status reads it (any back end)
            settled = s.execute(select(RunRow.kind, RunRow.status, cancelled, func.count())
                                .where(RunRow.status != "running").group_by(RunRow.kind, RunRow.status, cancelled)).all()
            live = s.scalars(select(RunRow.id).where(RunRow.status == "running")).all()
        for kind, status, flag, n in settled:
            key = (kind, "cancelled" if flag and status != "finished" else status)
            counts[key] = counts.get(key, 0) + n
        for run_id in live:  # queued, running or interrupted: needs the lease (and cancelled flag)
            run = self.store.get_run(run_id)
            if run is not None:
                key = (run.kind, api_status(run))
                counts[key] = counts.get(key, 0) + 1
        self.runs.clear()
        for (kind, status), n in counts.items():
            self.runs.labels(kind, status).set(n)

"""Doing the work of a stored run, whatever its kind; `resume` is the same call again.

`execute(store, run_id)` looks the run's kind up in the registry, rebuilds the model from the
stored config, runs the kind's `execute` in an event loop and stores the summary. Every LLM
call goes through the call cache keyed on the run id, so a resumed run replays finished calls
from the store and repeats none of them; the records it re-derives carry the same ids, so
storing them again is a no-op.

Resume policy: `resume` finishes unfinished work. A call that failed (after its retries) is
not stored as a finished call, so resuming sends it again, and everything decided from it is
decided again from the new answer: a resumed run is the same as a run that never failed.

`cancel` (a threading.Event, for a service that runs runs in worker threads) stops a run from
another thread: its work is cancelled like Ctrl-C and it is stored as interrupted with the
error "cancelled"; finished calls stay, so a resume still finishes it.

A run holds a lease while it executes (renewed every 20 s): a second process cannot execute it
at the same time, and a run whose process was killed reads as `interrupted` once the lease
expires (after at most a minute), never `running` forever.

A run created for workers (`--split`) is worked on by `execute_worker` in several processes
at once (runs/workers.py): each claims work items, holds no run lease and prunes nothing (the
other workers' records are not its own); the worker that finds every item done finishes the
run with `execute`, which replays every call from the shared store and writes the summary.
`resume` of such a run (`execute`) first does its unfinished items as one more worker, under
the run's lease: the items a killed worker held are taken over once their claims expire, the
live claims of running workers are waited for, and every item ends done exactly once.

Server settings may change on resume (base URL, key, concurrency, timeouts): none of them is
part of a call key, so a run can be finished on a server that moved. The model name and the
sampling are part of the keys and cannot change.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from proofloop.errors import ProofloopError, UserInputError
from proofloop.models.replicas import ReplicaSet, affinity_share
from proofloop.runs.context import RunContext
from proofloop.runs.registry import get_kind
from proofloop.runs.workers import WorkClaims
from proofloop.store import Heartbeat, Run, RunBusy, RunStatus, RunUsage, Store, default_owner

LEASE_TTL_S = 60.0  # a run whose process stopped renewing for this long reads as interrupted


class AllCallsFailed(ProofloopError):
    """Every model call of a run failed: an unusable server, not an empty result."""


class RunCancelled(ProofloopError):
    """The run was stopped through its `cancel` event; it is stored as interrupted."""


def execute(store: Store, run_id: str, *, api_key: str | None = None,
            on_record: Callable[[str, Any], None] | None = None,
            notice: Callable[[str], None] = print, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Do (or finish) the work of a run; return its summary, which is also stored on the run.
    Whatever happens, every finished call and record stays in the store. Setting `cancel`
    (from another thread) stops it: RunCancelled, stored as interrupted."""
    # The run and how many work items it has left, in one read. Read before the lease, the
    # work can only look less done than it is (items are added when a run is created, then
    # only claimed and finished): "nothing left" stays true.
    found = store.run_records(run_id, work=True)
    if found is None:
        raise UserInputError(f"no run {run_id!r} in {store.where}")
    run = found.run
    kind = get_kind(run.kind)
    # One process at a time: a second `resume` of a running run stops here (RunBusy, one line).
    lease = store.acquire_run(run_id, owner=default_owner(), ttl_s=LEASE_TTL_S)
    with Heartbeat(lease, on_lost=lambda e: notice(f"proofloop: warning: {e}")):
        try:
            # A split run (runs/workers.py) resumed: first its unfinished work items, claimed
            # like one more worker (another worker's live claim is waited for, an expired one
            # taken over), so that its work items and its status agree at the end.
            do_work_items(store, run, found.work, api_key=api_key, on_record=on_record, notice=notice, cancel=cancel)
            ctx = RunContext.build(store, run_id, run.config, api_key=api_key, on_record=on_record, notice=notice)
            notice(ctx.setup.describe())
            with _sigterm_as_interrupt() as sigterm:
                summary = asyncio.run(_execute_and_close(kind.execute, ctx, cancel))
            if sigterm.is_set():  # asked to stop, even if the work ran to its end (see below)
                raise KeyboardInterrupt
            usage = store.run_usage(run_id)  # calls stored under the run: made now or by an earlier execution
            _check_some_call_succeeded(store, run_id, usage)
            prune_orphans(store, run_id, ctx.recorder.recorded)
        except KeyboardInterrupt:
            lease.release("interrupted", error="interrupted (Ctrl-C or SIGTERM)")
            raise
        except RunCancelled:
            lease.release("interrupted", error="cancelled")
            raise
        except BaseException as e:
            lease.release("failed", error=str(e) or type(e).__name__)
            raise
    summary = {"run_id": run_id, **summary, **endpoint_report(ctx), "usage": usage_summary(usage)}
    lease.release("finished", summary=summary)
    return summary


def execute_worker(store: Store, run_id: str, *, api_key: str | None = None,
                   on_record: Callable[[str, Any], None] | None = None,
                   notice: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Join a run created for workers: do the work items this process claims until every item
    is done (by anyone). The worker that sees the last item done finishes the run (`execute`,
    every call replayed from the store) and returns its summary; the others return None."""
    run = store.get_run(run_id)
    if run is None:
        raise UserInputError(f"no run {run_id!r} in {store.where}")
    work = store.work_status(run_id)
    if sum(work.values()) == 0:
        raise UserInputError(f"run {run_id} has no work items: create it with --split to share it among workers")
    do_work_items(store, run, work, api_key=api_key, on_record=on_record, notice=notice)
    now = store.get_run(run_id)
    if now is not None and now.status == RunStatus.FINISHED:
        return None
    try:
        return execute(store, run_id, api_key=api_key, on_record=on_record, notice=notice)
    except RunBusy:  # another worker (or a resume) is finishing it
        return None


def do_work_items(store: Store, run: Run, work: dict[str, int], *, api_key: str | None = None,
                  on_record: Callable[[str, Any], None] | None = None, notice: Callable[[str], None] = print,
                  cancel: threading.Event | None = None) -> WorkClaims | None:
    """Claim and do `run`'s work items until every one is done (by this process or another
    worker); the claims, or None when the run has no unfinished item (or none at all). Each
    item is marked done once its records are stored; on any error or interruption the
    claims are given back, so the other workers need not wait for them to expire. `work`:
    the run's work_status, as the caller read it."""
    if work["free"] == 0 and work["held"] == 0:
        return None
    run_id = run.id
    claims = WorkClaims(store, run_id, owner=default_owner(), notice=notice)
    # WorkClaims has the Lease's renew / run_id / ttl_s: the Heartbeat renews its claims.
    with Heartbeat(claims, on_lost=lambda e: notice(f"proofloop: warning: {e}")):  # type: ignore[arg-type]
        ctx = RunContext.build(store, run_id, run.config, api_key=api_key, on_record=on_record, notice=notice)
        ctx.work = claims
        try:
            with _sigterm_as_interrupt() as sigterm:
                asyncio.run(_execute_and_close(get_kind(run.kind).execute, ctx, cancel))
            if sigterm.is_set():  # asked to stop: do not go on to finish the run
                raise KeyboardInterrupt
        except BaseException:
            claims.give_back()
            raise
    notice(f"worker {claims.owner}: {len(claims.done)} item{'s' if len(claims.done) != 1 else ''} done")
    return claims


def endpoint_report(ctx: RunContext) -> dict[str, Any]:
    """{"endpoints": ...} when the run's model is served by several replicas: per replica the
    requests, failures and breaker openings of this execution (models/replicas.py), and, read
    from the store over every call of the run whichever process made it (a resumed or split
    run replays most of its calls), the samples each replica answered and the affinity share:
    over all prompts, and over verification prompts (the analyses of one proof on one replica)."""
    reports = [m.provider.report() for m in ctx.models() if isinstance(m.provider, ReplicaSet)]
    if not reports:
        return {}
    served = ctx.store.served_by(ctx.run_id)
    samples: Counter[str] = Counter()
    for counts in served.values():
        samples.update(counts)
    replicas = [{**r, "stored_samples": samples.get(r["endpoint"], 0)} for r in reports[0]["replicas"]]
    verifications = ctx.store.served_by(ctx.run_id, tag="verify")
    return {"endpoints": {**reports[0], "replicas": replicas, "affinity_share": affinity_share(served.values()),
                          "verification_affinity_share": affinity_share(verifications.values())}}


async def _execute_and_close(execute_kind: Callable[[RunContext], Any], ctx: RunContext,
                             cancel: threading.Event | None = None) -> dict[str, Any]:
    """Run the work, then close the providers' HTTP clients inside the same event loop."""
    try:
        if cancel is None:
            return await execute_kind(ctx)
        return await _cancellable(execute_kind(ctx), cancel)
    finally:
        for model in ctx.models():
            close = getattr(model.provider, "aclose", None)
            if close is not None:
                await close()
        ctx.recorder.flush()  # the records held back for a batch are stored whatever happened


async def _cancellable(work: Any, cancel: threading.Event) -> dict[str, Any]:
    """Await `work`, cancelling it once `cancel` is set (looked at every 0.1 s)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        if cancel.is_set():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                raise RunCancelled("cancelled") from None
        await asyncio.wait({task}, timeout=0.1)
    return task.result()


@contextmanager
def _sigterm_as_interrupt() -> Iterator[threading.Event]:
    """SIGTERM stops a run like Ctrl-C: status interrupted, everything finished kept. It is
    turned into SIGINT, which asyncio.run handles by cancelling its main task (a
    KeyboardInterrupt raised in whatever frame was running would leave a task's error behind).
    The event it yields says a SIGTERM came: Python 3.11's TaskGroup can drop that
    cancellation when a child fails at the same moment (CPython issue 116720), and the run
    must still end as interrupted, not as finished."""
    requested = threading.Event()

    def interrupt(signum: int, frame: Any) -> None:
        requested.set()
        signal.raise_signal(signal.SIGINT)

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield requested
        return
    try:
        yield requested
    finally:
        signal.signal(signal.SIGTERM, previous)


def prune_orphans(store: Store, run_id: str, recorded: dict[str, set[str]]) -> None:
    """Delete the derived records this (finished) execution did not derive again: on a resume
    after failed calls the decisions are made again, and what the earlier decisions produced
    (a refinement of a proof that is no longer chosen, a call error since answered) would
    otherwise stay in the store beside the run's summary."""
    derived = store.derived_ids(run_id)  # ids only: a paper-sized run holds gigabytes of text
    orphans = {kind: [i for i in ids if i not in recorded[kind]] for kind, ids in derived.items()}
    if any(orphans.values()):
        store.delete_records(run_id, proofs=orphans["proof"], verifications=orphans["analysis"],
                             meta_verifications=orphans["meta"])


def _check_some_call_succeeded(store: Store, run_id: str, usage: RunUsage) -> None:
    if usage.failures and not usage.calls:
        last = store.failures(run_id)[-1]
        raise AllCallsFailed(f"every model call failed ({usage.failures} failed request{'s' if usage.failures != 1 else ''}); "
                             f"the last error: {last.kind}: {last.message}")


def run_usage(store: Store, run_id: str) -> dict[str, Any]:
    """The run's usage as the store counts it, so summary, `runs show` and the store agree. Cost
    is None (unknown) once any call's price is unknown, never a partial sum."""
    return usage_summary(store.run_usage(run_id))


def usage_summary(u: RunUsage) -> dict[str, Any]:
    """The summary's usage figures of a run's stored usage (see run_usage)."""
    return {"calls": u.calls, "failures": u.failures, "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens, "cached_prompt_tokens": u.cached_prompt_tokens,
            "cost_usd": None if u.unpriced_calls else u.cost_usd}


def update_server(store: Store, run_id: str, *, base_url: str | None = None, max_n: int | None = None,
                  max_concurrency: int | None = None, attempt_timeout: float | None = None,
                  model: str | None = None) -> None:
    """Point a stored run at a server that moved before resuming it. None leaves a setting as
    it is; the model name cannot change (it is part of every call key)."""
    run = store.get_run(run_id)
    if run is None:
        raise UserInputError(f"no run {run_id!r} in {store.where}")
    settings = dict(run.config["model"])
    if model is not None and model != settings.get("model"):
        raise UserInputError(f"run {run_id} was made with model {settings.get('model')!r}; resuming with "
                             f"{model!r} would change every call: start a new run instead")
    if base_url is not None:
        from proofloop.models.openai_provider import check_base_urls

        base_url = check_base_urls(base_url)
    changes: dict[str, Any] = {}
    if base_url is not None or max_n is not None:
        settings.update({k: v for k, v in (("base_url", base_url), ("max_n", max_n)) if v is not None})
        changes["model"] = settings
    if max_concurrency is not None:
        changes["max_concurrency"] = max_concurrency
    if attempt_timeout is not None:
        changes["timeouts"] = {**(run.config.get("timeouts") or {}), "attempt_s": attempt_timeout}
    if changes:
        store.update_run_config(run_id, changes)

"""The /v1 routes: start runs (prove, verify, grade), list and read them, follow their events,
cancel them. Starting a run stores it (the run layer's create_* functions, with the server's
model set-up and the request's sampling and budgets) and queues it on the workers; a
verify/grade batch of at most `sync_max_pairs` pairs is answered with its results.

    POST /v1/prove            {"problem": ..., "strategy": "sequential", "options": {...},
                               "budgets": {"tokens": ...}, "sampling": {"seed": 1}}  -> 202 {"id", "status"}
    POST /v1/verify, /v1/grade {"pairs": [{"problem", "proof"}, ...], "n": 4}
                              -> 200 {"id", "status", "results"} (small) | 202 {"id", "status"}
    GET  /v1/runs?kind=&status=&limit=&cursor=      -> {"runs": [...], "next": cursor | null}
    GET  /v1/runs/{id}        status, progress, best proof so far, usage (tokens, cost), summary
    GET  /v1/runs/{id}/results  the pairs of a verify/grade run with their scores and issues
    GET  /v1/runs/{id}/events   text/event-stream (api/events.py); Last-Event-ID resumes
    POST /v1/runs/{id}/cancel -> {"id", "status"}
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from proofloop.errors import UserInputError
from proofloop.store import RunRecords
from proofloop.store.schema import Run

from proofloop.api.events import BATCH, end_event, is_after, parse_event_id, record_events
from proofloop.api.schemas import Budgets, GradeRequest, ProveRequest, SamplingIn, VerifyRequest
from proofloop.api.settings import Limits, ServeSettings
from proofloop.api.views import run_detail, runs_page
from proofloop.api.workers import API_STATUSES

RunId = Path(min_length=1, max_length=40, pattern=r"^[\w.-]+$", description="a run id, e.g. r-20260101-a1b2c3")
LIVE = ("queued", "running")
POLL_S = 0.25  # how often an event stream looks at the store when nothing wakes it
GATHER_S = 0.02  # after a wake, let a burst of writes land: one look for them all
KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies from closing an idle stream


def _services(request: Request) -> Any:
    return request.app.state.services


def _run_or_404(request: Request, run_id: str) -> Run:
    run = _services(request).store.get_run(run_id)
    if run is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return run


def setup_for(settings: ServeSettings, sampling: SamplingIn | None) -> Any:
    """The server's model set-up with the request's sampling on top (unset fields kept)."""
    setup = settings.model_setup()
    changes = sampling.model_dump(exclude_none=True) if sampling else {}
    return dataclasses.replace(setup, **changes) if changes else setup


def mark_service_run(services: Any, run_id: str, budgets: Budgets | None) -> None:
    """Flag a run as this service's (resumed on restart) and give it its run budget, then queue it."""
    services.store.update_run_config(run_id, service_flags(budgets))


def service_flags(budgets: Budgets | None) -> dict[str, Any]:
    """What a run's config holds when this service started it: the flag, its run budget."""
    changes: dict[str, Any] = {"api": {"service": True}}
    if budgets is not None and budgets.model_dump(exclude_none=True):
        changes["run_budget"] = budgets.model_dump(exclude_none=True)
    return changes


def check_option_sizes(options: dict[str, Any], cap: int) -> None:
    """A service caps the numbers in strategy options (a request for a billion threads is
    refused here, not discovered by the worker that runs out of memory)."""
    for key, value in options.items():
        if key.startswith("budget_"):  # spending limits, not amounts of work
            continue
        numbers = value if isinstance(value, list) else [value]
        if any(isinstance(n, (int, float)) and not isinstance(n, bool) and n > cap for n in numbers):
            raise UserInputError(f"option {key}={value} is over this server's cap of {cap} per option")


def start_prove(services: Any, body: ProveRequest) -> str:
    from proofloop.runs import create_prove_run

    from proofloop.search.options import validate_options

    check_option_sizes(validate_options(body.strategy, dict(body.options)), services.settings.limits.max_option)
    run_id = create_prove_run(services.store, body.problem, setup_for(services.settings, body.sampling),
                              strategy=body.strategy, options=dict(body.options))
    mark_service_run(services, run_id, body.budgets)
    services.workers.submit(run_id)
    return run_id


def start_pairs(services: Any, body: VerifyRequest, grader: str) -> str:
    """A `bench-grade` run over the pairs (the verifier's n analyses, or the autograder)."""
    from proofloop.bench.runs import create_grade_run

    rows = [{"id": p.id or f"pair-{i}", "statement": p.problem, "proof": p.proof,
             "reference_solution": p.reference_solution, "guidelines": p.guidelines}
            for i, p in enumerate(body.pairs)]
    # Flagged as this service's as it is created (grading has no budget: its size is pairs x n)
    run_id = create_grade_run(services.store, setup_for(services.settings, body.sampling), grader=grader,
                              n=body.n, rows=rows, config=service_flags(None))
    services.workers.submit(run_id)
    return run_id


def pair_records(services: Any, run_id: str) -> RunRecords:
    """A run with what its pair results need (proofs, analyses, grades), in one read; 404 when unknown."""
    found = services.store.run_records(run_id, proofs=True, verifications=True, grades=True, lineage=False)
    if found is None:
        raise HTTPException(404, f"no run {run_id!r}")
    return found


def pair_results(found: RunRecords) -> list[dict[str, Any]]:
    """Each pair of a verify/grade run: its grade (the grader's normalised score), the
    verifier's scores and the issues its analyses found."""
    grader = (found.run.config.get("grader") or {}).get("name")
    grades = {g.proof_id: g for g in found.grades if g.grader == grader}
    analyses: dict[str, list[Any]] = {}
    for v in found.verifications:
        analyses.setdefault(v.proof_id, []).append(v)
    out = []
    for proof in found.proofs:
        g, vs = grades.get(proof.id), analyses.get(proof.id, [])
        out.append({"id": proof.id, "score": g.normalised if g else None, "status": g.status if g else "pending",
                    "cause": g.cause if g else None, "scores": [v.score for v in vs],
                    "issues": [i for v in vs for i in v.issues]})
    return out


def v1_router(settings: ServeSettings) -> APIRouter:
    """The /v1 routes with the limits of `settings` (they appear in the OpenAPI schema)."""
    router = APIRouter(prefix="/v1", tags=["v1"])  # its own prefix: route templates in metrics say /v1
    add_start_routes(router, settings.limits)
    add_run_routes(router, settings.limits)
    return router


def add_start_routes(router: APIRouter, limits: Limits) -> None:
    @router.post("/prove", status_code=202)
    async def prove(request: Request, body: ProveRequest) -> dict[str, Any]:
        """Start a proof search; follow it with GET /v1/runs/{id} or its events."""
        run_id = await run_in_threadpool(start_prove, _services(request), body)
        return {"id": run_id, "status": "queued"}

    async def pairs(request: Request, body: VerifyRequest, grader: str) -> JSONResponse:
        s = _services(request)
        run_id = await run_in_threadpool(start_pairs, s, body, grader)
        wait = body.wait if body.wait is not None else len(body.pairs) <= limits.sync_max_pairs
        done = False
        if wait:  # a small batch: answer with its results (or 202 if it takes over sync_wait_s)
            job = s.workers.submit(run_id)
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(job)), limits.sync_wait_s)
            except asyncio.TimeoutError:
                pass
            done = job.done()
        if not done:  # not waited for, or still going: its records are not read (a large run's are many)
            run = await run_in_threadpool(_run_or_404, request, run_id)
            if not wait or s.workers.status(run) in LIVE:  # follow it at /v1/runs/{id} (and /results once done)
                return JSONResponse({"id": run_id, "status": s.workers.status(run)}, status_code=202)
        found = await run_in_threadpool(pair_records, s, run_id)  # the run and its results: one read
        status = s.workers.status(found.run)
        if status in LIVE:  # another process executes it: follow it at /v1/runs/{id}
            return JSONResponse({"id": run_id, "status": status}, status_code=202)
        return JSONResponse({"id": run_id, "status": status, "error": found.run.error, "results": pair_results(found)})

    @router.post("/verify", responses={202: {"description": "a large batch: started as a run"}})
    async def verify(request: Request, body: VerifyRequest) -> JSONResponse:
        """Verify many (problem, proof) pairs: n verifier analyses each, mean score and issues."""
        return await pairs(request, body, "verifier")

    @router.post("/grade", responses={202: {"description": "a large batch: started as a run"}})
    async def grade(request: Request, body: GradeRequest) -> JSONResponse:
        """Grade many pairs with the verifier or the reference-guided autograder."""
        return await pairs(request, body, body.grader)


def add_run_routes(router: APIRouter, limits: Limits) -> None:
    @router.get("/runs")
    async def list_runs(request: Request,
                        kind: str | None = Query(None, min_length=1, max_length=40, pattern=r"^[\w.-]+$"),
                        status: Literal[API_STATUSES] | None = Query(None),  # type: ignore[valid-type]
                        limit: int = Query(20, ge=1, le=limits.page_max),
                        cursor: str | None = Query(None, min_length=1, max_length=80)) -> dict[str, Any]:
        """Runs, newest first, `limit` per page; pass `next` back as `cursor` for the next page."""
        s = _services(request)
        return await run_in_threadpool(runs_page, s.store, limit=limit, kind=kind, status=status, cursor=cursor,
                                       status_of=s.workers.status)

    @router.get("/runs/{run_id}")
    async def get_run(request: Request, run_id: str = RunId) -> dict[str, Any]:
        """Status, progress, best proof so far, tokens and cost, and the summary once done."""
        s = _services(request)
        run = await run_in_threadpool(_run_or_404, request, run_id)
        return await run_in_threadpool(run_detail, s.store, run, s.workers.status)

    @router.get("/runs/{run_id}/results")
    async def results(request: Request, run_id: str = RunId) -> dict[str, Any]:
        """The pairs of a verify/grade run with their scores and issues (pending until graded)."""
        s = _services(request)
        run = await run_in_threadpool(_run_or_404, request, run_id)  # a prove run's records are not read
        if run.kind != "bench-grade":
            raise HTTPException(409, f"run {run_id} is a {run.kind} run: only verify/grade runs have pair results")
        found = await run_in_threadpool(pair_records, s, run_id)
        return {"id": run_id, "status": s.workers.status(found.run), "results": pair_results(found)}

    @router.post("/runs/{run_id}/cancel")
    async def cancel(request: Request, run_id: str = RunId) -> dict[str, Any]:
        """Stop a queued or running run (finished calls stay stored); 409 when it is done."""
        s = _services(request)
        await run_in_threadpool(_run_or_404, request, run_id)
        await run_in_threadpool(s.workers.cancel, run_id)
        return {"id": run_id, "status": "cancelled"}

    @router.get("/runs/{run_id}/events", response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
    async def events(request: Request, run_id: str = RunId,
                     last_event_id: str | None = Header(None, max_length=500),
                     after: str | None = Query(None, max_length=500, description="as Last-Event-ID")) -> StreamingResponse:
        """Progress as server-sent events: one per stored record, then `end`. Reconnect with
        Last-Event-ID (or ?after=) to continue after the last event seen."""
        start = last_event_id or after
        if start and parse_event_id(start) is None:
            raise HTTPException(400, "Last-Event-ID is not an event id of this server")
        await run_in_threadpool(_run_or_404, request, run_id)
        return StreamingResponse(event_stream(request, run_id, start), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def event_stream(request: Request, run_id: str, after: str | None) -> AsyncIterator[str]:
    """Every record event after `after`, as they are stored, then `end` once the run stops.
    The status is read before the records, so records stored before it stopped are all sent."""
    s = _services(request)
    yield "retry: 1000\n\n"
    idle = 0.0
    while not await request.is_disconnected():
        seen = s.writes.count  # before looking: a write during the look wakes the wait below
        run = await run_in_threadpool(s.store.get_run, run_id)
        status = s.workers.status(run) if run is not None else "failed"
        batch = await run_in_threadpool(record_events, s.store, run_id, after)
        while batch:
            for event in batch:
                yield event.sse()
                after = event.id
            batch = await run_in_threadpool(record_events, s.store, run_id, after) if len(batch) == BATCH else []
            idle = 0.0
        if run is None or status not in LIVE:
            last = end_event(run, status, after) if run is not None else None
            if last is not None and is_after(last, after):
                yield last.sse()
            return
        if idle >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            idle = 0.0
        waited = time.monotonic()
        if await s.writes.wait(seen, POLL_S):  # this process stored something (or POLL_S passed)
            await asyncio.sleep(GATHER_S)
        idle += time.monotonic() - waited

"""The web viewer's routes: pages rendered on the server (Jinja2, autoescape on) from the run
store, usable with JavaScript off. The only script is static/live.js (live progress on a
running run's page, from the API's server-sent events); every response carries a
Content-Security-Policy that forbids inline script and anything not served from here.

    from fastapi import FastAPI
    from proofloop.api.viewer import viewer_router
    app = FastAPI()
    app.include_router(viewer_router(Store("runs.db"), start_verify=my_start_verify), prefix="/ui")

Pages: `/` runs list; `/runs/{id}` a run (its problem inline when it has one); `/runs/{id}/problems/{pid}`
the proof pool, its scores round by round, the chosen proof and its lineage; `/runs/{id}/proofs/{proof}`
one proof and its analyses a page at a time; `/runs/{id}/bench` grades and calibration; `/verify`
the paste-a-proof form (POST starts a run through `start_verify` and redirects to its page).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from proofloop.api.auth import COOKIE
from proofloop.api.markdown import render_inline
from proofloop.api.viewer import pages
from proofloop.api.viewer.queries import proof_text
from proofloop.bench.metrics import DEFAULT_THRESHOLD
from proofloop.errors import UserInputError
from proofloop.runs.workers import render_progress, run_work
from proofloop.store import Store

HERE = Path(str(files("proofloop.api.viewer")))
STATIC = {"viewer.css": "text/css; charset=utf-8", "live.js": "text/javascript; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
# No inline script or style, nothing from elsewhere; forms post only here; no framing.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}
MAX_FORM_BYTES = 1_000_000  # a problem and a proof; more is refused with 413
EVENTS_URL = "/v1/runs/{run_id}/events"

StartVerify = Callable[[str, str], Any]  # (problem, proof) -> run id (or an awaitable of it)


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["score"] = lambda x: "-" if x is None else f"{x:.3f}"
    env.filters["money"] = lambda x: "unknown" if x is None else f"${x:.4f}"
    env.filters["inline_md"] = lambda s: Markup(render_inline(str(s)))  # safe: escaped by the renderer
    env.filters["short"] = lambda s: s if len(str(s)) <= 14 else f"{str(s)[:12]}…"
    return env


def as_store(store: Store | Callable[[], Store] | str | Path) -> Callable[[], Store]:
    """A function giving the store: a Store as is; a path opened once, on first use."""
    if isinstance(store, Store):
        return lambda: store
    if isinstance(store, (str, Path)):
        return lru_cache(maxsize=1)(lambda: Store(store))
    return store


class Renderer:
    """Pages from the templates, with the security headers; `link` in a template is a route's path."""

    def __init__(self) -> None:
        self.env = environment()

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(link=Links(request), request=request, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def not_found(self, request: Request, what: str) -> HTMLResponse:
        return self.page(request, "message.html", 404, title="Not found", message=what)


class Links:
    """A route's path, as `request.url_for(route, **params).path` gives it, but with one route
    lookup per route name and page: a page of the proof pool holds over a thousand links, and
    url_for walks every route of the app each time (a tenth of the page's server time)."""

    PLAIN = re.compile(r"^[\w.~-]+$")  # values url_for puts into the path as they are

    def __init__(self, request: Request):
        self.request = request
        self.templates: dict[tuple[str, ...], str] = {}

    def __call__(self, route: str, **params: Any) -> str:
        values = {k: str(v) for k, v in params.items()}
        if not all(self.PLAIN.match(v) for v in values.values()):  # anything unusual: url_for's own answer
            return self.request.url_for(route, **values).path
        key = (route, *sorted(values))
        if key not in self.templates:  # the path with {name} left in place of each value
            self.templates[key] = self.request.url_for(route, **{k: "{" + k + "}" for k in values}).path
        path = self.templates[key]
        for k, v in values.items():
            path = path.replace("{" + k + "}", v)
        return path


def viewer_router(store: Store | Callable[[], Store] | str | Path, *, start_verify: StartVerify | None = None,
                  events_url: str = EVENTS_URL, check_token: Callable[[str], bool] | None = None) -> APIRouter:
    """The viewer's pages over a run store. `start_verify(problem, proof)` starts a verify run
    and returns its id (None: the verify form says the server does not offer it);
    `events_url` is where a running run's page listens for progress ({run_id} filled in);
    `check_token(token)` tells the login page whether a token is known (None: no login)."""
    router, render, get_store = APIRouter(), Renderer(), as_store(store)
    add_static(router)
    add_run_pages(router, render, get_store, events_url)
    add_record_pages(router, render, get_store)
    add_verify(router, render, start_verify)
    add_login(router, render, check_token)
    return router


def safe_next(target: str, fallback: str) -> str:
    """Only a path of this site: no scheme, no host, no `//host` (not an open redirect)."""
    ok = target.startswith("/") and not target.startswith("//") and "\\" not in target and ":" not in target.split("?")[0]
    return target if ok else fallback


def add_login(router: APIRouter, render: Renderer, check_token: Callable[[str], bool] | None) -> None:
    """A form that takes a bearer token and keeps it as a cookie, for browsers: they cannot send
    the Authorization header on links or on the live-progress EventSource."""

    @router.get("/login", name="viewer_login_form", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, next: str = Query("", max_length=2000)) -> HTMLResponse:
        return render.page(request, "login.html", next=next, error=None, enabled=check_token is not None)

    @router.post("/login", name="viewer_login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = await request.body()
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()} if len(body) < 10_000 else {}
        target = safe_next(form.get("next", ""), request.url_for("viewer_runs").path)
        if not same_origin(request) or check_token is None or not check_token(form.get("token", "")):
            return render.page(request, "login.html", 401, next=target, error="unknown token",
                               enabled=check_token is not None)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, form["token"], httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response


def add_static(router: APIRouter) -> None:
    @router.get("/static/{name}", name="viewer_static", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", 404, media_type="text/plain")
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name],
                        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})


PageNo = Query(1, alias="page", ge=1, le=10_000)


def add_run_pages(router: APIRouter, render: Renderer, get_store: Callable[[], Store], events_url: str) -> None:
    @router.get("/", name="viewer_runs", response_class=HTMLResponse, include_in_schema=False)
    def runs(request: Request, page_no: int = PageNo, kind: str = Query("", max_length=40)) -> HTMLResponse:
        return render.page(request, "runs.html", **pages.run_list(get_store(), page=page_no, kind=kind))

    @router.get("/runs/{run_id}", name="viewer_run", response_class=HTMLResponse, include_in_schema=False)
    def run(request: Request, run_id: str, page_no: int = PageNo) -> HTMLResponse:
        s = get_store()
        found = s.get_run(run_id)
        if found is None:
            return render.not_found(request, f"no run {run_id!r}")
        problems = s.problems(run_id)
        view = pages.problem_view(s, found, problems[0], page=page_no) if len(problems) == 1 else None
        work = run_work(s, run_id)  # a split run: how far its workers are, as `proofloop runs show` says it
        return render.page(request, "run.html", run=found, usage=pages.run_usage_view(s, found), problems=problems,
                           view=view, bench=found.kind in pages.BENCH_KINDS, events=events_url.format(run_id=run_id),
                           work=render_progress(work) if work is not None else [])

    @router.get("/runs/{run_id}/problems/{problem_id}", name="viewer_problem", response_class=HTMLResponse,
                include_in_schema=False)
    def problem(request: Request, run_id: str, problem_id: int, page_no: int = PageNo) -> HTMLResponse:
        s = get_store()
        found = s.get_run(run_id)
        chosen = [p for p in s.problems(run_id) if p.id == problem_id] if found else []
        if not chosen:
            return render.not_found(request, f"no problem {problem_id} in run {run_id!r}")
        return render.page(request, "problem.html", run=found,
                           view=pages.problem_view(s, found, chosen[0], page=page_no))


def add_record_pages(router: APIRouter, render: Renderer, get_store: Callable[[], Store]) -> None:
    @router.get("/runs/{run_id}/proofs/{proof_id}", name="viewer_proof", response_class=HTMLResponse,
                include_in_schema=False)
    def proof(request: Request, run_id: str, proof_id: str, page_no: int = PageNo) -> HTMLResponse:
        s = get_store()
        found = s.get_run(run_id)
        stored = proof_text(s, run_id, proof_id) if found else None
        if stored is None:
            return render.not_found(request, f"no proof {proof_id!r} in run {run_id!r}")
        return render.page(request, "proof.html", run=found, view=pages.proof_view(s, found, stored, page=page_no))

    @router.get("/runs/{run_id}/bench", name="viewer_bench", response_class=HTMLResponse, include_in_schema=False)
    def bench(request: Request, run_id: str, threshold: float = Query(DEFAULT_THRESHOLD, ge=0.0, le=1.0),
              grader: str = Query("", max_length=40)) -> HTMLResponse:
        s = get_store()
        found = s.get_run(run_id)
        if found is None:
            return render.not_found(request, f"no run {run_id!r}")
        return render.page(request, "bench.html", run=found,
                           view=pages.bench_view(s, found, threshold=threshold, grader=grader or None))


def same_origin(request: Request) -> bool:
    """False when the browser says the post came from another site: Sec-Fetch-Site where the
    browser sends it, else Origin; a client that sends neither (curl, a test) is let through."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


def add_verify(router: APIRouter, render: Renderer, start_verify: StartVerify | None) -> None:
    @router.get("/verify", name="viewer_verify_form", response_class=HTMLResponse, include_in_schema=False)
    def verify_form(request: Request) -> HTMLResponse:
        return render.page(request, "verify.html", problem="", proof="", error=None, enabled=start_verify is not None)

    @router.post("/verify", name="viewer_verify", include_in_schema=False)
    async def verify(request: Request) -> Response:
        if not same_origin(request):  # another site's page must not start (paid) runs in a reader's name
            return render.page(request, "message.html", 403, title="Refused",
                               message="the verify form only accepts posts from this site's own page")
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return render.page(request, "message.html", 413, title="Too large",
                               message=f"a problem and a proof of at most {MAX_FORM_BYTES} bytes, please")
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        problem_text, proof_text_ = form.get("problem", "").strip(), form.get("proof", "").strip()
        error = None if start_verify else "this server does not verify proofs"
        if not error and not (problem_text and proof_text_):
            error = "give both a problem and a proof"
        if not error:
            try:
                run_id = await run_in_threadpool(start_verify, problem_text, proof_text_)
                run_id = await run_id if inspect.isawaitable(run_id) else run_id
                return RedirectResponse(request.url_for("viewer_run", run_id=run_id).path, status_code=303)
            except UserInputError as e:
                error = str(e)
        return render.page(request, "verify.html", 400 if start_verify else 503, problem=problem_text,
                           proof=proof_text_, error=error, enabled=start_verify is not None)

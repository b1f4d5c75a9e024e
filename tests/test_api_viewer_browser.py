"""The web viewer in headless Chromium (Debian's /usr/bin/chromium driven by Playwright)
against a real uvicorn on 127.0.0.1 serving the viewer over simulator runs: pages load with
no console error (a CSP violation is one), formulas are MathML with no raw delimiter left in
the visible text, the chart is drawn, a hostile proof runs nothing, the live box follows
server-sent events, and the pages and the verify form work with JavaScript off.
Screenshots go to tests/artifacts/viewer/ (ignored by git). Skipped, saying why, where
Chromium or Playwright is missing."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from support.viewer_runs import ViewerRuns, make_runs

CHROMIUM = os.environ.get("PROOFLOOP_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "viewer"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed")
if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set PROOFLOOP_CHROMIUM)",
                allow_module_level=True)


def app_for(runs: ViewerRuns):
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    from proofloop.api.viewer import viewer_router

    app = FastAPI()
    app.include_router(viewer_router(runs.store, start_verify=lambda problem, proof: runs.running), prefix="/ui")

    @app.get("/v1/runs/{run_id}/events")  # stands in for the API's event stream
    async def events(run_id: str):
        async def stream():
            yield "retry: 60000\n\n"
            yield f"id: 1\nevent: progress\ndata: {json.dumps({'status': 'running', 'proofs': 3})}\n\n"
            for _ in range(100):  # stay open a while, as a live stream does
                await asyncio.sleep(0.1)
                yield ": keep-alive\n\n"
        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    runs = make_runs(tmp_path_factory.mktemp("viewer-browser") / "runs.db")
    # port 0: uvicorn binds a free port itself (a port picked here and bound later could be taken meanwhile)
    server = uvicorn.Server(uvicorn.Config(app_for(runs), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield runs, f"http://127.0.0.1:{port}/ui"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Watched:
    """A page whose dialogs, console errors and uncaught errors are recorded."""

    def __init__(self, browser, *, javascript: bool = True):
        self.context = browser.new_context(java_script_enabled=javascript, viewport={"width": 1200, "height": 900})
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, url: str, shot: str):
        response = self.page.goto(url)
        assert response is not None and response.status == 200, url
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
        return self.page

    def close(self):
        self.context.close()


@pytest.fixture
def watched(browser):
    w = Watched(browser)
    yield w
    w.close()
    print(f"screenshots: {ARTIFACTS}")


def test_every_page_loads_without_a_console_error(served, watched):
    runs, base = served
    proof = runs.store.get_run(runs.pool).summary["best_proof_id"]
    for url, shot in [("/", "runs"), (f"/runs/{runs.pool}", "search"), (f"/runs/{runs.pool}/proofs/{proof}", "proof"),
                      (f"/runs/{runs.graded}/bench?threshold=0.5", "bench"), ("/verify", "verify")]:
        page = watched.open(base + url, shot)
        assert page.locator("h1").count() >= 1
    assert watched.errors == [] and watched.dialogs == []


def test_formulas_are_mathematics_with_no_raw_delimiter_left(served, watched):
    runs, base = served
    page = watched.open(f"{base}/runs/{runs.hostile}", "hostile-proof")
    proof = page.locator("article.proof-text")
    assert proof.locator("math").count() == 5
    box = proof.locator("math").first.bounding_box()
    assert box is not None and box["width"] > 10 and box["height"] > 5  # laid out as mathematics
    visible = proof.inner_text()
    for raw in ("\\(", "\\)", "\\[", "$"):
        assert raw not in visible, (raw, visible)


def test_the_chart_is_drawn(served, watched):
    runs, base = served
    page = watched.open(f"{base}/runs/{runs.pool}", "search-chart")
    chart = page.locator("svg.chart")
    assert chart.count() == 1 and chart.locator("polyline").count() == 2
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    line = chart.locator("polyline.mean").bounding_box()
    assert line is not None and line["width"] > 50  # the line spans several rounds


def test_a_hostile_proof_runs_nothing(served, watched):
    runs, base = served
    page = watched.open(f"{base}/runs/{runs.hostile}", "hostile")
    page.wait_for_timeout(300)  # give an onerror handler time to fire, were there one
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("article.proof-text img, article.proof-text script").count() == 0
    assert page.locator("a[href^='javascript' i]").count() == 0
    page.get_by_text("a link", exact=False).first.click()
    page.wait_for_timeout(100)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert watched.dialogs == [] and watched.errors == []


def test_the_verify_form_goes_to_a_run_page_that_follows_its_events(served, watched):
    runs, base = served
    page = watched.open(f"{base}/verify", "verify-form")
    page.fill("#problem", "Show that $1 + 1 = 2$.")
    page.fill("#proof", "## Solution\n$1 + 1 = 2$.")
    page.click("button[type=submit]")
    page.wait_for_url(f"**/ui/runs/{runs.running}")
    # (not wait_for_function: a string evaluated as script is what the page's CSP forbids)
    sync_api.expect(page.locator("#live-line")).to_contain_text("progress", timeout=20_000)
    assert "proofs 3" in page.inner_text("#live-line")
    page.screenshot(path=str(ARTIFACTS / "live.png"), full_page=True)
    assert watched.errors == []


def test_with_javascript_off_pages_and_the_form_still_work(served, browser):
    runs, base = served
    w = Watched(browser, javascript=False)
    try:
        page = w.open(f"{base}/runs/{runs.pool}", "search-no-js")
        assert page.locator("svg.chart polyline").count() == 2 and page.locator("math").count() > 0
        page = w.open(f"{base}/verify", "verify-no-js")
        page.fill("#problem", "P")
        page.fill("#proof", "Q")
        page.click("button[type=submit]")
        page.wait_for_url(f"**/ui/runs/{runs.running}")
        assert page.get_by_role("link", name="Refresh").count() == 1
    finally:
        w.close()

"""What keeps the viewer's pages fast on a large search (bench/serve/RESULTS.md), checked by
counting work rather than timing it: one route lookup per route name and page, and a finished
run's chosen proof read and parsed once, not on every view."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.requests import Request

from proofloop.api.viewer import pages, viewer_router
from proofloop.api.viewer.routes import Links
from proofloop.store.derive import derived_fields
from support.viewer_runs import ViewerRuns, make_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> ViewerRuns:
    return make_runs(tmp_path_factory.mktemp("viewer-speed") / "runs.db")


@pytest.fixture(scope="module")
def app(runs: ViewerRuns) -> FastAPI:
    app = FastAPI()
    app.include_router(viewer_router(runs.store), prefix="/ui")
    return app


def request_for(app: FastAPI, root_path: str = "") -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "root_path": root_path, "query_string": b"",
                    "headers": [], "app": app, "router": app.router, "server": ("test", 80), "scheme": "http"})


@pytest.mark.parametrize("root_path", ["", "/behind/a/proxy"])
@pytest.mark.parametrize(("route", "params"), [
    ("viewer_runs", {}),
    ("viewer_run", {"run_id": "r-20260101-a1b2c3"}),
    ("viewer_problem", {"run_id": "r-1", "problem_id": 12}),
    ("viewer_proof", {"run_id": "r-1", "proof_id": "p00-01"}),
    ("viewer_proof", {"run_id": "r.1~x", "proof_id": "0af3_9"}),
    ("viewer_proof", {"run_id": "r-1", "proof_id": "odd id?x=1#y"}),  # not plain: url_for itself answers
    ("viewer_proof", {"run_id": "r-1", "proof_id": "{run_id}"}),
    ("viewer_static", {"name": "viewer.css"}),
])
def test_links_are_the_paths_url_for_gives(app, root_path, route, params):
    request = request_for(app, root_path)
    links = Links(request)
    expected = request.url_for(route, **{k: str(v) for k, v in params.items()}).path
    assert links(route, **params) == expected
    assert links(route, **params) == expected  # again, from the kept template


def test_links_made_from_one_template_differ_by_their_values(app):
    links = Links(request_for(app))
    paths = [links("viewer_proof", run_id="r", proof_id=f"p{i}") for i in range(5)]
    assert paths == [f"/ui/runs/r/proofs/p{i}" for i in range(5)]


def test_a_pool_page_looks_each_route_up_once(app, runs, monkeypatch):
    calls = []
    real = Request.url_for

    def counted(self: Request, route: str, /, **params: str):
        calls.append(route)
        return real(self, route, **params)

    monkeypatch.setattr(Request, "url_for", counted)
    html = TestClient(app).get(f"/ui/runs/{runs.pool}").text
    proof_links = html.count(f"/ui/runs/{runs.pool}/proofs/")
    assert proof_links > 10
    assert calls.count("viewer_proof") == 1
    assert len(calls) == len(set(calls))


def test_a_finished_run_reads_its_chosen_proofs_analyses_once(app, runs, monkeypatch):
    """The chosen proof's analyses are parsed for their issues (a paper-size search: 64 texts):
    kept with the run's other aggregates while the run stays finished."""
    reads = []
    real = runs.store.verifications
    monkeypatch.setattr(runs.store, "verifications", lambda *a, **kw: reads.append(kw) or real(*a, **kw))
    pages.clear_settled()
    client = TestClient(app)
    first = client.get(f"/ui/runs/{runs.pool}").text
    assert len(reads) == 1
    assert client.get(f"/ui/runs/{runs.pool}").text == first
    assert len(reads) == 1
    pages.clear_settled()
    assert client.get(f"/ui/runs/{runs.pool}").text == first
    assert len(reads) == 2


def test_a_proof_page_parses_only_the_analyses_it_shows(app, runs, monkeypatch):
    from proofloop.api.viewer import queries

    proof = max(runs.store.proofs(runs.pool), key=lambda p: len(runs.store.verifications(runs.pool, proof_id=p.id)))
    total = len(runs.store.verifications(runs.pool, proof_id=proof.id))
    assert total >= 3
    monkeypatch.setattr(pages, "ANALYSES_PER_PAGE", 2)
    parsed = []
    monkeypatch.setattr(queries, "derived_fields", lambda kind, *text: parsed.append(kind) or derived_fields(kind, *text))
    html = TestClient(app).get(f"/ui/runs/{runs.pool}/proofs/{proof.id}?page=2").text
    assert html.count('<section class="analysis') == 2
    assert parsed.count("verification") == 2  # (and the proof itself)

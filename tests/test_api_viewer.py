"""The web viewer's pages (api/viewer) through FastAPI's TestClient, over runs the simulator
made: what each page shows, that no page carries inline script or a script link, the
Content-Security-Policy, pagination, the calibration numbers, the verify form, and 404s."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from proofloop.api.viewer import pages, viewer_router
from proofloop.api.viewer.routes import CSP
from proofloop.errors import UserInputError
from support.viewer_runs import HUMAN, ViewerRuns, make_runs


class Page(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for t, attrs in self.tags if t == tag]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> ViewerRuns:
    return make_runs(tmp_path_factory.mktemp("viewer") / "runs.db")


@pytest.fixture(scope="module")
def started() -> list[tuple[str, str]]:
    return []


@pytest.fixture(scope="module")
def client(runs: ViewerRuns, started) -> TestClient:
    def start_verify(problem: str, proof: str) -> str:
        if problem == "bad":
            raise UserInputError("the problem is bad")
        started.append((problem, proof))
        return runs.hostile

    app = FastAPI()
    app.include_router(viewer_router(runs.store, start_verify=start_verify), prefix="/ui")
    return TestClient(app)


def get(client: TestClient, url: str, status: int = 200) -> Page:
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    page = Page(r.text)
    for attrs in page.all("script"):
        assert attrs.get("src", "").startswith("/ui/static/"), attrs  # no inline script
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") or name == "style" for name in attrs), (tag, attrs)
        assert not (attrs.get("href") or "").lower().startswith(("javascript", "data", "vbscript")), attrs
    return page


def text_of(page: Page) -> str:
    return " ".join(" ".join(page.text).split())


# ---- runs list -------------------------------------------------------------------------


def test_the_runs_list_shows_each_run_with_status_progress_tokens_and_cost(client, runs):
    page = get(client, "/ui/")
    links = [a["href"] for a in page.all("a")]
    for rid in (runs.pool, runs.hostile, runs.graded, runs.ungraded, runs.running):
        assert f"/ui/runs/{rid}" in links
    text = text_of(page)
    usage = runs.store.run_usage(runs.pool)
    assert f"{usage.prompt_tokens} / {usage.completion_tokens}" in text
    assert "finished" in text and "running" in text
    assert "0 / 2 analyses" in text  # the run that has not started
    assert "unknown" in text  # the simulator has no price: cost unknown, never $0


def test_the_runs_list_filters_by_kind_and_pages(client, runs, monkeypatch):
    text = text_of(get(client, "/ui/?kind=bench-grade"))
    assert runs.graded in text and runs.pool not in text
    monkeypatch.setattr(pages, "RUNS_PER_PAGE", 2)
    first, second, third = (text_of(get(client, f"/ui/?page={n}")) for n in (1, 2, 3))
    shown = [sum(rid in t for rid in (runs.pool, runs.hostile, runs.graded, runs.ungraded, runs.running))
             for t in (first, second, third)]
    assert shown == [2, 2, 1]
    assert "older" in first and "older" not in third
    assert client.get("/ui/?page=0").status_code == 422


# ---- a run and its problem -----------------------------------------------------------------


def test_a_search_page_shows_the_chart_the_chosen_proof_its_lineage_and_usage_per_role(client, runs):
    page = get(client, f"/ui/runs/{runs.pool}")
    html = client.get(f"/ui/runs/{runs.pool}").text
    stats = runs.store.proofs(runs.pool)
    rounds = {p.round for p in stats}
    assert html.count("<svg") == 1 and html.count("<polyline") == 2
    assert html.count('class="range"') == len(rounds)  # one bar per round
    summary = runs.store.get_run(runs.pool).summary
    chosen = summary["best_proof_id"]
    assert f'/ui/runs/{runs.pool}/proofs/{chosen}' in [a["href"] for a in page.all("a")]
    lineage = summary["report"]["lineage"]
    assert html.count("<ol class=\"lineage\">") == 1
    assert re.search(r'<ol class="lineage">(.*?)</ol>', html, re.S).group(1).count("<li>") == len(lineage)
    text = text_of(page)
    for role in runs.store.run_usage(runs.pool).by_tag:
        assert role in text
    assert f"{len(stats)} proofs over {len(rounds)} round(s)" in text
    assert "<math" in html  # the problem's formulas


def test_the_pool_table_pages_through_the_proofs(client, runs, monkeypatch):
    monkeypatch.setattr(pages, "PROOFS_PER_PAGE", 4)
    n = len(runs.store.proofs(runs.pool))
    problem = runs.store.problems(runs.pool)[0].id
    seen = []
    for p in range(1, -(-n // 4) + 1):
        html = client.get(f"/ui/runs/{runs.pool}/problems/{problem}?page={p}").text
        body = re.search(r'<table class="pool">(.*?)</table>', html, re.S).group(1)
        seen += re.findall(r'<tr(?: class="chosen-row")?>\s*<td><a href="[^"]*/proofs/([0-9a-f]+)"', body)
    assert sorted(seen) == sorted(p.id for p in runs.store.proofs(runs.pool))
    get(client, f"/ui/runs/{runs.pool}/problems/{problem}?page=999")  # past the end: the last page


def test_means_and_meta_verdicts_agree_with_the_store(client, runs):
    """The pool's mean per proof leaves out what the meta-verifier rejected, as the search does."""
    store = runs.store
    metas = store.meta_verifications(runs.pool)
    assert metas, "the pool search ran no meta-verification"
    ratings: dict[str, list[float]] = {}
    for m in metas:
        if m.status == "ok" and m.rating is not None:
            ratings.setdefault(m.verification_id, []).append(m.rating)
    rejected = {vid for vid, rs in ratings.items() if sum(r == 0 for r in rs) * 2 > len(rs)}
    problem = store.problems(runs.pool)[0].id
    from proofloop.api.viewer.queries import proof_stats

    for s in proof_stats(store, runs.pool, problem):
        counted = [v.score for v in store.verifications(runs.pool, proof_id=s.id)
                   if v.status == "ok" and v.score is not None and v.id not in rejected]
        assert s.mean_score == (pytest.approx(sum(counted) / len(counted)) if counted else None)
    some = next(v for v in store.verifications(runs.pool) if v.id in ratings)
    text = text_of(get(client, f"/ui/runs/{runs.pool}/proofs/{some.proof_id}?page=1"))
    assert ("rejected" if some.id in rejected else "upheld") in text


def test_a_proof_page_pages_through_its_analyses(client, runs, monkeypatch):
    monkeypatch.setattr(pages, "ANALYSES_PER_PAGE", 3)
    proof = max(runs.store.proofs(runs.pool), key=lambda p: len(runs.store.verifications(runs.pool, proof_id=p.id)))
    analyses = runs.store.verifications(runs.pool, proof_id=proof.id)
    assert len(analyses) > 3
    first = client.get(f"/ui/runs/{runs.pool}/proofs/{proof.id}").text
    second = client.get(f"/ui/runs/{runs.pool}/proofs/{proof.id}?page=2").text
    ids = re.findall(r'<section class="analysis[^"]*" id="a-([0-9a-f]+)"', first + second)
    assert ids == [a.id for a in analyses][:6]
    assert f"analyses 1–3 of {len(analyses)}" in first


def test_a_hostile_proof_is_shown_as_text_with_its_mathematics_rendered(client, runs):
    page = get(client, f"/ui/runs/{runs.hostile}")
    html = client.get(f"/ui/runs/{runs.hostile}").text
    assert "<script>window" not in html and "<img" not in html
    assert "&lt;script&gt;window.__pwned" in html and "&lt;img src=x onerror" in html
    article = re.search(r'<article class="md proof-text">(.*?)</article>', html, re.S).group(1)
    assert article.count("<math") == 5
    visible = " ".join(Page(re.sub(r"<math.*?</math>", "", article, flags=re.S)).text)
    assert "\\(" not in visible and "$" not in visible and "\\[" not in visible
    assert not [a for a in page.all("a") if "script" in (a.get("href") or "").lower()]


def test_a_running_run_follows_its_events_and_refreshes_without_javascript(client, runs):
    page = get(client, f"/ui/runs/{runs.running}")
    live = [attrs for tag, attrs in page.tags if attrs.get("id") == "live"]
    assert live and live[0]["data-events"] == f"/v1/runs/{runs.running}/events"
    html = client.get(f"/ui/runs/{runs.running}").text
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in html
    assert f'<a href="/ui/runs/{runs.running}">Refresh</a>' in html
    assert 'id="live"' not in client.get(f"/ui/runs/{runs.pool}").text


def test_a_run_of_several_problems_lists_them_and_each_has_its_page(client, runs):
    page = get(client, f"/ui/runs/{runs.graded}")
    problems = runs.store.problems(runs.graded)
    links = [a["href"] for a in page.all("a")]
    for p in problems:
        assert f"/ui/runs/{runs.graded}/problems/{p.id}" in links
    assert f"/ui/runs/{runs.graded}/bench" in links
    one = get(client, f"/ui/runs/{runs.graded}/problems/{problems[1].id}")
    html = client.get(f"/ui/runs/{runs.graded}/problems/{problems[1].id}").text
    assert "the only proof" in text_of(one) and "<math" in html  # its statement has a formula


def test_a_store_given_by_path_is_opened_once(runs, tmp_path):
    app = FastAPI()
    app.include_router(viewer_router(runs.store.path))
    c = TestClient(app)
    assert runs.pool in c.get("/").text and runs.pool in c.get("/").text


# ---- bench --------------------------------------------------------------------------------


def expected_confusion(runs: ViewerRuns, threshold: float) -> dict[str, int]:
    verifier = {}
    for g in runs.store.grades(runs.graded, grader="verifier"):
        if g.status == "ok":
            verifier.setdefault(g.proof_id, []).append(g.normalised)
    c = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for i, grade in enumerate(HUMAN):
        scores = verifier.get(f"p{i}")
        if not scores:
            continue
        pred, human = sum(scores) / len(scores) >= threshold, grade / 7 >= 6 / 7
        c[{(True, True): "tp", (True, False): "fp", (False, True): "fn", (False, False): "tn"}[(pred, human)]] += 1
    return c


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.75, 1.0])
def test_the_bench_page_shows_grades_and_the_confusion_table_at_the_threshold(client, runs, threshold):
    html = client.get(f"/ui/runs/{runs.graded}/bench?threshold={threshold}").text
    get(client, f"/ui/runs/{runs.graded}/bench?threshold={threshold}")
    c = expected_confusion(runs, threshold)
    for cell, n in c.items():
        assert f'<td class="{cell}">{n}</td>' in html
    assert sum(c.values()) == len(HUMAN)
    svg = re.search(r'<svg.*?</svg>', html, re.S).group(0)
    assert svg.count("<circle") == len(HUMAN) and 'class="threshold"' in svg
    table = re.search(r'<table class="bench">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    assert table.count("<tr>") == len(HUMAN)


def test_the_bench_page_without_human_grades_says_so(client, runs):
    text = text_of(get(client, f"/ui/runs/{runs.ungraded}/bench"))
    assert "No human grades in this run" in text


@pytest.mark.parametrize("query", ["threshold=2", "threshold=-0.1", "threshold=abc"])
def test_a_bad_threshold_is_a_client_error(client, runs, query):
    assert client.get(f"/ui/runs/{runs.graded}/bench?{query}").status_code == 422


# ---- the verify form -------------------------------------------------------------------------


def test_the_verify_form_starts_a_run_and_goes_to_its_page(client, runs, started):
    get(client, "/ui/verify")
    r = client.post("/ui/verify", data={"problem": "Show $1+1=2$.", "proof": "## Solution\nClear."},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/ui/runs/{runs.hostile}"
    assert started[-1] == ("Show $1+1=2$.", "## Solution\nClear.")


@pytest.mark.parametrize("form, status, message", [
    ({"problem": "", "proof": "x"}, 400, "give both a problem and a proof"),
    ({"problem": "P"}, 400, "give both a problem and a proof"),
    ({"problem": "bad", "proof": "x"}, 400, "the problem is bad"),
])
def test_the_verify_form_says_what_is_wrong(client, form, status, message):
    r = client.post("/ui/verify", data=form)
    assert r.status_code == status and message in r.text
    if form.get("problem"):
        assert f">{form['problem']}</textarea>" in r.text  # what was typed is kept


@pytest.mark.parametrize("headers", [{"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}])
def test_the_verify_form_refuses_a_post_from_another_site(client, started, headers):
    before = len(started)
    r = client.post("/ui/verify", data={"problem": "P", "proof": "Q"}, headers=headers, follow_redirects=False)
    assert r.status_code == 403 and len(started) == before


def test_the_verify_form_accepts_its_own_origin(client, started):
    r = client.post("/ui/verify", data={"problem": "P", "proof": "Q"}, follow_redirects=False,
                    headers={"origin": "http://testserver", "sec-fetch-site": "same-origin"})
    assert r.status_code == 303 and started[-1] == ("P", "Q")


def test_the_verify_form_refuses_a_huge_body_and_works_unwired(runs):
    app = FastAPI()
    app.include_router(viewer_router(runs.store))
    c = TestClient(app)
    assert "does not verify proofs" in c.get("/verify").text
    assert c.post("/verify", data={"problem": "P", "proof": "Q"}).status_code == 503
    assert c.post("/verify", content=b"problem=" + b"x" * 1_100_000,
                  headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413


# ---- not found, static files -----------------------------------------------------------------


@pytest.mark.parametrize("url", ["/ui/runs/nope", "/ui/runs/nope/bench", "/ui/runs/nope/problems/1",
                                 "/ui/runs/nope/proofs/x"])
def test_what_does_not_exist_is_a_404_page(client, url):
    assert "Not found" in text_of(get(client, url, 404))


def test_a_missing_proof_or_problem_of_a_real_run_is_a_404(client, runs):
    get(client, f"/ui/runs/{runs.pool}/proofs/nope", 404)
    get(client, f"/ui/runs/{runs.pool}/problems/99999", 404)


def test_static_files_are_served_from_the_package_and_nothing_else(client):
    r = client.get("/ui/static/live.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "EventSource" in r.text and "innerHTML" not in r.text
    assert client.get("/ui/static/viewer.css").headers["content-type"].startswith("text/css")
    for name in ("../routes.py", "%2e%2e%2froutes.py", "x.js"):
        assert client.get(f"/ui/static/{name}").status_code == 404


def test_the_package_ships_its_templates_and_static_files():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"api/viewer/templates/*.html"' in text and '"api/viewer/static/*.js"' in text

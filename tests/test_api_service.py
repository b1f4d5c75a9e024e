"""What `proofloop serve` serves besides /v1, on a real uvicorn with the simulator as model:
the viewer under /ui behind the same tokens (a login page keeps a token as a read-only cookie
for browsers), the reward server at /v1/rewards, and, in headless Chromium, a proof pasted
into the verify page followed live to its verdict."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from support.api import ApiServer, wait_for
from proofloop.train.rewards import verifier_reward

pytest.importorskip("prometheus_client")

TOKEN = "tok-service-789"
SIM = ["--provider", "sim", "--workers", "2"]
PROBLEM = r"Prove that \(n^2 + n\) is even for every integer \(n\)."
PROOF = (r"## Solution" "\n\n" r"\(n^2 + n = n(n+1)\), a product of two consecutive integers, one of which is even."
         "\n\n## Self Evaluation\n\nHere is my evaluation of the solution: complete.\n\n"
         r"Based on my evaluation, the final overall score should be: \boxed{1}")
ANALYSIS = ("Here is my evaluation of the solution: the factorisation is right and one factor is even.\n\n"
            r"Based on my evaluation, the final overall score should be: \boxed{1}")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "service"
CHROMIUM = os.environ.get("PROOFLOOP_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> ApiServer:
    with ApiServer(tmp_path_factory.mktemp("svc") / "db", SIM, PROOFLOOP_API_TOKENS=TOKEN) as s:
        yield s


def test_viewer_pages_need_a_token_and_the_login_cookie_only_reads_the_api(secured):
    with secured.client(follow_redirects=False) as c:
        r = c.get("/ui/")
        assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
        assert c.get("/ui/static/viewer.css").status_code == 200  # the login page needs it
        assert c.post("/ui/login", data={"token": "wrong", "next": "/ui/"}).status_code == 401
        r = c.post("/ui/login", data={"token": TOKEN, "next": "//evil.example/x"})
        assert r.status_code == 303 and r.headers["location"] == "/ui/"  # no open redirect
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
        assert c.get("/ui/").status_code == 200 and c.get("/v1/runs").status_code == 200
        # The cookie reads; it never starts paid work through the API (the header does).
        pair = {"pairs": [{"problem": PROBLEM, "proof": PROOF}], "wait": False}
        assert c.post("/v1/verify", json=pair).status_code == 401
    with secured.client(TOKEN) as c:
        assert c.post("/v1/verify", json=pair).status_code == 202


def test_the_reward_server_is_mounted_behind_the_tokens(secured):
    body = {"task": "verifier", "items": [{"problem": PROBLEM, "proof": PROOF, "completion": ANALYSIS, "target": 1}]}
    with secured.client() as c:
        assert c.post("/v1/rewards", json=body).status_code == 401
    with secured.client(TOKEN) as c:
        r = c.post("/v1/rewards", json=body)
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    expected = verifier_reward(ANALYSIS, 1.0)
    assert result["total"] == expected.total == 1.0 and result["components"] == expected.components


def test_the_home_page_is_the_viewer(tmp_path):
    with ApiServer(tmp_path / "db", SIM) as s, s.client(follow_redirects=True) as c:
        r = c.get("/")
        assert r.status_code == 200 and "<h1" in r.text and str(r.url).endswith("/ui/")


@pytest.mark.skipif(not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)), reason=f"no Chromium at {CHROMIUM}")
def test_a_pasted_proof_is_verified_and_followed_live_in_a_browser(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with ApiServer(tmp_path / "db", SIM) as s, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(s.base_url + "/ui/verify")
            page.fill("#problem", PROBLEM)
            page.fill("#proof", PROOF)
            page.click("button[type=submit]")
            page.wait_for_url("**/ui/runs/**")
            run_id = page.url.rstrip("/").split("/runs/")[1].split("/")[0]
            with s.client() as c:
                wait_for(lambda: c.get(f"/v1/runs/{run_id}").json()["status"] == "finished", timeout=120)
            # live.js reloads the page when the run's `end` event arrives; a late page is fine too.
            page.locator("#live").wait_for(state="detached", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "verified.png"), full_page=True)
            text = page.inner_text("main")
            assert "finished" in text and "\\(" not in text
            assert page.locator("math").count() >= 1 and not errors
        finally:
            browser.close()

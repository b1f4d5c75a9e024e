"""`proofloop serve` over HTTP (a real uvicorn on 127.0.0.1, the simulator as model): auth on
and off, limits, pagination, verify/grade batches, events with reconnect, metrics, and bad
input answered 4xx with a message, never 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.api import ApiServer, read_events, wait_for
from support.cli import run_cli, cli_env

pytest.importorskip("prometheus_client")

TOKEN, FILE_TOKEN = "tok-env-123", "tok-file-456"
SIM = ["--provider", "sim", "--workers", "2"]
PROBLEM = "Prove that the sum of two odd integers is even."


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> ApiServer:
    tmp = tmp_path_factory.mktemp("api")
    (tmp / "tokens.txt").write_text(f"# service tokens\n{FILE_TOKEN}\n")
    with ApiServer(tmp / "db", SIM + ["--token-file", str(tmp / "tokens.txt"), "--max-body-bytes", "20000"],
                   PROOFLOOP_API_TOKENS=TOKEN) as s:
        yield s


@pytest.fixture(scope="module")
def api(server):
    with server.client(TOKEN) as c:
        yield c


def finished(api, run_id: str) -> dict:
    return wait_for(lambda: (r := api.get(f"/v1/runs/{run_id}").json())["status"] not in ("queued", "running") and r)


# ---- auth ------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers, why", [({}, "missing bearer token"),
                                          ({"Authorization": "Bearer wrong"}, "invalid bearer token"),
                                          ({"Authorization": f"Basic {TOKEN}"}, "missing bearer token")])
def test_tokens_are_required_when_configured(server, headers, why):
    with server.client() as c:
        for path in ("/v1/runs", "/metrics"):
            r = c.get(path, headers=headers)
            assert r.status_code == 401 and why in r.json()["error"]
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").json()["ready"] is True


def test_env_and_file_tokens_both_work_and_are_never_logged(server):
    for token in (TOKEN, FILE_TOKEN):
        with server.client(token) as c:
            assert c.get("/v1/runs").status_code == 200
    assert TOKEN not in server.output() and FILE_TOKEN not in server.output()


def test_non_loopback_bind_without_tokens_refuses_to_start(tmp_path):
    r = run_cli(["serve", "--host", "0.0.0.0", "--port", "0", "--provider", "sim", "--db", str(tmp_path / "db")],
                cli_env(tmp_path / "db"), timeout=60)
    assert r.returncode == 2
    assert "needs bearer tokens" in r.stderr and "--no-auth" in r.stderr


def test_loopback_without_tokens_needs_no_auth(tmp_path):
    with ApiServer(tmp_path / "db", SIM) as s, s.client() as c:
        r = c.post("/v1/verify", json={"pairs": [{"problem": PROBLEM, "proof": "Odd numbers are 2k+1."}], "n": 2})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "finished" and len(r.json()["results"][0]["scores"]) == 2


# ---- limits and bad input ----------------------------------------------------------------------


BAD = [  # (method, path, kwargs, status, words in the message)
    ("post", "/v1/prove", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "json"),
    ("post", "/v1/prove", {"json": {}}, 422, "body.problem"),
    ("post", "/v1/prove", {"json": {"problem": "   "}}, 422, "body.problem"),
    ("post", "/v1/prove", {"json": {"problem": PROBLEM, "strategy": "magic"}}, 422, "body.strategy"),
    ("post", "/v1/prove", {"json": {"problem": PROBLEM, "options": {"no_such_option": 1}}}, 400, "no_such_option"),
    ("post", "/v1/prove", {"json": {"problem": PROBLEM, "surprise": 1}}, 422, "surprise"),
    ("post", "/v1/prove", {"json": {"problem": PROBLEM, "options": {"threads": 10**9}}}, 400, "cap of 1024"),
    ("post", "/v1/prove", {"json": {"problem": PROBLEM, "budgets": {"tokens": 0}}}, 422, "budgets.tokens"),
    ("post", "/v1/prove", {"json": {"problem": PROBLEM, "sampling": {"temperature": 9}}}, 422, "temperature"),
    ("post", "/v1/verify", {"json": {"pairs": []}}, 422, "body.pairs"),
    ("post", "/v1/verify", {"json": {"pairs": [{"problem": "P", "proof": "Q", "id": "a"}] * 2}}, 400, "twice"),
    ("post", "/v1/grade", {"json": {"pairs": [{"problem": "P", "proof": "Q"}], "grader": "autograder"}}, 400,
     "reference solution"),
    ("post", "/v1/verify", {"json": {"pairs": [{"problem": "P", "proof": "Q"}], "n": 0}}, 422, "body.n"),
    ("post", "/v1/prove", {"json": {"problem": "x" * 30000}}, 413, "too large"),
    ("get", "/v1/runs?limit=0", {}, 422, "query.limit"),
    ("get", "/v1/runs?limit=100000", {}, 422, "query.limit"),
    ("get", "/v1/runs?status=sleeping", {}, 422, "query.status"),
    ("get", "/v1/runs?cursor=nonsense", {}, 400, "bad cursor"),
    ("get", "/v1/runs/no-such-run", {}, 404, "no run"),
    ("get", "/v1/runs/bad%20id!", {}, 422, "path.run_id"),
    ("get", "/v1/runs/no-such-run/events", {}, 404, "no run"),
    ("post", "/v1/runs/no-such-run/cancel", {}, 404, "no run"),
    ("get", "/v1/nothing-here", {}, 404, "not found"),
    ("delete", "/v1/runs", {}, 405, "not allowed"),
]


@pytest.mark.parametrize("method, path, kwargs, status, words", BAD, ids=[f"{b[0]} {b[1][:30]} {b[3]}" for b in BAD])
def test_bad_input_is_a_4xx_with_a_message(api, method, path, kwargs, status, words):
    r = getattr(api, method)(path, **kwargs)
    assert r.status_code == status, r.text
    assert words.lower() in r.json()["error"].lower()


def test_a_bad_last_event_id_is_refused(api):
    run_id = api.post("/v1/verify", json={"pairs": [{"problem": "P", "proof": "Q"}], "n": 1}).json()["id"]
    r = api.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "not-an-id"})
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["error"]


# ---- runs: pagination, detail, verify / grade ---------------------------------------------------


def test_pagination_walks_every_run_once_newest_first(server, tmp_path):
    with ApiServer(tmp_path / "db", SIM) as s, s.client() as c:
        ids = [c.post("/v1/prove", json={"problem": f"{PROBLEM} ({i})", "strategy": "single",
                                         "options": {"k": 1}}).json()["id"] for i in range(5)]
        c.post("/v1/verify", json={"pairs": [{"problem": "P", "proof": "Q"}], "n": 1})
        for run_id in ids:
            finished(c, run_id)
        seen, cursor, pages = [], None, 0
        while True:
            page = c.get("/v1/runs", params={"kind": "prove", "limit": 2, **({"cursor": cursor} if cursor else {})}).json()
            assert len(page["runs"]) <= 2
            seen += [r["id"] for r in page["runs"]]
            pages += 1
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == list(reversed(ids)) and pages == 3
        assert {r["kind"] for r in c.get("/v1/runs?limit=50").json()["runs"]} == {"prove", "bench-grade"}
        assert len(c.get("/v1/runs", params={"status": "finished", "kind": "prove"}).json()["runs"]) == 5
        assert c.get("/v1/runs", params={"status": "cancelled"}).json() == {"runs": [], "next": None}


def test_run_detail_has_progress_best_proof_and_usage(api):
    run_id = api.post("/v1/prove", json={"problem": PROBLEM, "strategy": "sequential",
                                         "options": {"threads": 2, "attempts": 2},
                                         "sampling": {"seed": 3}, "budgets": {"tokens": 10**9}}).json()["id"]
    run = finished(api, run_id)
    assert run["status"] == "finished" and run["kind"] == "prove"
    assert run["progress"]["proofs"] == sum(run["summary"]["statuses"].values()) >= 2
    assert run["usage"]["calls"] >= 2 and run["usage"]["completion_tokens"] > 0
    assert run["best_proof"]["id"] == run["summary"]["best_proof_id"] and run["best_proof"]["solution"] == run["summary"]["proof"]
    assert run["config"]["run_budget"] == {"tokens": 10**9} and "api_key" not in str(run)


def test_verify_small_batch_answers_with_results_large_batch_is_a_run(api):
    pairs = [{"problem": PROBLEM, "proof": f"Proof number {i}: odd plus odd is even."} for i in range(3)]
    r = api.post("/v1/verify", json={"pairs": pairs, "n": 2})
    assert r.status_code == 200 and [x["id"] for x in r.json()["results"]] == ["pair-0", "pair-1", "pair-2"]
    assert all(len(x["scores"]) == 2 and x["status"] == "ok" and 0 <= x["score"] <= 1 for x in r.json()["results"])
    r = api.post("/v1/grade", json={"pairs": pairs, "n": 1, "wait": False})
    assert r.status_code == 202 and r.json()["id"].startswith("r-") and "results" not in r.json()
    finished(api, r.json()["id"])
    results = api.get(f"/v1/runs/{r.json()['id']}/results").json()["results"]
    assert len(results) == 3 and all(len(x["scores"]) == 1 for x in results)


# ---- events ---------------------------------------------------------------------------------


def test_events_reconnect_with_last_event_id_misses_nothing(api):
    run_id = api.post("/v1/prove", json={"problem": PROBLEM, "options": {"threads": 2, "attempts": 3},
                                         "sampling": {"seed": 5}}).json()["id"]
    first = read_events(api, run_id, stop_after=2)  # the client goes away after two events
    rest = read_events(api, run_id, last_event_id=first[-1]["id"])
    whole = read_events(api, run_id)  # the run is done now: its whole stream at once
    assert first + rest == whole
    ids = [e["id"] for e in whole]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert whole[-1] == {"id": ids[-1], "event": "end", "data": {"status": "finished", "error": None}}
    run = api.get(f"/v1/runs/{run_id}").json()
    kinds = [e["event"] for e in whole]
    assert kinds.count("proof") == run["progress"]["proofs"] and kinds.count("analysis") == run["progress"]["analyses"]
    assert read_events(api, run_id, last_event_id=ids[-1], timeout=10) == []  # after the end: nothing


# ---- metrics --------------------------------------------------------------------------------


def test_metrics_count_calls_tokens_runs_and_requests(api):
    api.post("/v1/verify", json={"pairs": [{"problem": PROBLEM, "proof": "Because 2k+1 + 2m+1 = 2(k+m+1)."}], "n": 2})
    text = api.get("/metrics").text
    lines = {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln and ln[0] != "#"}
    assert lines['proofloop_model_calls_total{model="sim-1",role="verify"}'] >= 2
    assert lines['proofloop_model_tokens_total{model="sim-1",role="verify",type="completion"}'] > 0
    assert lines['proofloop_model_call_seconds_count{role="verify"}'] >= 2
    assert lines['proofloop_runs{kind="bench-grade",status="finished"}'] >= 1
    assert lines["proofloop_queue_depth"] == 0
    assert lines['proofloop_http_requests_total{method="POST",route="/v1/verify",status="200"}'] >= 1

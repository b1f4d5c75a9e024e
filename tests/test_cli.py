"""The three model-calling commands end to end, as subprocesses, against a real HTTP server on
127.0.0.1 that speaks the OpenAI chat-completions protocol, with injected faults."""

from __future__ import annotations

from pathlib import Path

import pytest

from proofloop.protocol import FINAL_SCORE_PHRASE
from proofloop.sim.http import Choice, Fault, Faults, Reply, ServerThread, make_app
from support.scripted import scripted_responder
from proofloop.store import Store
from support.cli import cli_env, run_cli, run_json
from support.servers import closed_port, running_server

PROBLEM = "Prove that for every positive integer $n$, the number $n^3 - n$ is divisible by $6$."
PROOF = "## Solution\n\n$n^3-n=(n-1)n(n+1)$ is a product of three consecutive integers.\n"
ANALYSIS = ("Here is my evaluation of the solution: the factorisation is right, but the divisibility by 3 "
            "is not justified.\n\n" + FINAL_SCORE_PHRASE + " \\boxed{0.5}")

# Request numbers (1-based, counted by the server) that fail, one fault of each kind.
FAULTS = Faults(by_request={
    1: Fault(kind="rate_limit", retry_after=1),
    2: Fault(kind="server_error"),
    3: Fault(kind="drop"),
    4: Fault(kind="slow", delay_s=60.0),  # past the attempt timeout; it ends when the client gives up
    5: Fault(kind="truncate"),
    6: Fault(kind="malformed"),
    7: Fault(kind="drop_mid"),
})
FAILING = {"rate_limit", "server_error", "drop", "slow", "malformed", "drop_mid"}


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    files = {"problem": PROBLEM, "proof": PROOF, "analysis": ANALYSIS}
    out = {}
    for name, text in files.items():
        out[name] = tmp_path / f"{name}.md"
        out[name].write_text(text)
    return out


def test_prove_verify_meta_verify_through_faults(tmp_path: Path, inputs):
    db = tmp_path / "runs.db"
    with running_server(scripted_responder(reasoning="field"), faults=FAULTS) as (server, log):
        env = cli_env(db, server.base_url)
        # Only the slow fault's request outlasts the attempt timeout; the others take milliseconds,
        # so 5 s leaves a loaded machine room (with 2 s, an answer stalled that long was one failure too many).
        proved = run_json(["prove", str(inputs["problem"]), "--threads", "2", "--attempts", "3", "--seed", "7",
                           "--attempt-timeout", "5", "--max-concurrency", "2"], env)
        verified = run_json(["verify", "--problem", str(inputs["problem"]), "--proof", str(inputs["proof"]),
                             "-n", "4", "--seed", "1", "--max-sequences", "3"], env)  # a request of 4 goes alone
        meta = run_json(["meta-verify", "--problem", str(inputs["problem"]), "--proof", str(inputs["proof"]),
                         "--analysis", str(inputs["analysis"]), "-m", "3"], env)

    assert proved["kind"] == "prove" and proved["proofs"] >= 2
    assert verified["n"] == 4 and len(verified["analyses"]) == 4
    assert meta["m"] == 3

    store = Store(db)
    assert store.get_run(verified["run_id"]).config["max_sequences"] == 3  # a resume keeps the cap
    # Every injected failure is recorded with its cause; the truncated output is a finished call.
    outcomes = [e["outcome"] for e in log]
    failures = [f for r in (proved, verified, meta) for f in store.failures(r["run_id"])]
    assert len(failures) == sum(o in FAILING for o in outcomes) == len(FAILING)
    assert {f.kind for f in failures} >= {"rate_limit", "server_error", "connection", "timeout"}
    statuses = [p.status for p in store.proofs(proved["run_id"])] + [a["status"] for a in verified["analyses"]] \
        + [r["status"] for r in meta["ratings"]]
    assert "truncated" in statuses
    # No finished call was sent twice: each (messages, seed) of a finished request is unique,
    # and every stored call came from exactly one finished request.
    finished = [e for e in log if e["outcome"] in ("ok", "truncate")]
    assert len({(e["messages_sha"], e["seed"]) for e in finished}) == len(finished)
    calls = [c for r in (proved, verified, meta) for c in store.calls(r["run_id"])]
    assert sum(e["n"] for e in finished) == len(calls)
    # reasoning_content was captured and kept apart from the answer
    assert all(c.completion.reasoning for c in calls)
    # n > 1 went out in one request (verify -n 4 with a seed: one request of n=4 unless faulted)
    assert any(e["n"] == 4 for e in finished)


def _verify_responder(texts: list[str]):
    async def respond(req):
        return Reply([Choice(text=texts[((req.seed or 0) + i) % len(texts)]) for i in range(req.n)],
                     prompt_tokens=10)
    return respond


def test_verify_json_keeps_failures_out_of_the_mean(tmp_path: Path, inputs):
    good = "Here is my evaluation of the solution: correct.\n\n" + FINAL_SCORE_PHRASE + " \\boxed{1}"
    half = ("Here is my evaluation of the solution: Step 2 has a gap: the bound is not justified.\n\n"
            + FINAL_SCORE_PHRASE + " \\boxed{0.5}")
    no_box = "Here is my evaluation of the solution: looks fine.\n\n" + FINAL_SCORE_PHRASE + " one"
    bad_score = "Here is my evaluation of the solution: meh.\n\n" + FINAL_SCORE_PHRASE + " \\boxed{7}"
    with running_server(_verify_responder([good, half, no_box, bad_score])) as (server, _):
        out = run_json(["verify", "--problem", str(inputs["problem"]), "--proof", str(inputs["proof"]),
                        "-n", "4", "--seed", "0"], cli_env(tmp_path / "db", server.base_url))
    scores = [a["score"] for a in out["analyses"]]
    assert scores == [1.0, 0.5, None, None]
    assert [a["status"] for a in out["analyses"]] == ["ok", "ok", "no_boxed_score", "invalid_score"]
    assert out["mean_score"] == 0.75 and out["n_valid"] == 2
    assert any("not justified" in issue for issue in out["analyses"][1]["issues"])
    assert out["analyses"][0]["issues"] == []


def _one_line_error(r, *needles: str):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("proofloop: error:"), r.stderr
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, inputs):
    db = tmp_path / "db"
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")
    with running_server() as (server, _):
        env = cli_env(db, server.base_url)
        _one_line_error(run_cli(["prove", str(tmp_path / "missing.md")], env), "not found")
        _one_line_error(run_cli(["prove", str(empty)], env), "empty")
        _one_line_error(run_cli(["prove", "-"], env, input=""), "empty")
        _one_line_error(run_cli(["prove", str(inputs["problem"]), "--templates", str(tmp_path / "nowhere")], env))
        _one_line_error(run_cli(["verify", "--problem", str(inputs["problem"]), "--proof", str(empty)], env), "empty")
        _one_line_error(run_cli(["resume", "r-nope"], env), "no run")
        _one_line_error(run_cli(["prove", str(inputs["problem"]), "--strategy", "magic"], env), "unknown strategy")
    # a finished run stays intact through all of that
    with running_server() as (server, _):
        env = cli_env(db, server.base_url)
        done = run_json(["verify", "--problem", str(inputs["problem"]), "--proof", str(inputs["proof"]), "-n", "2"], env)
    # nobody listening, and a server that refuses the key
    _one_line_error(run_cli(["prove", str(inputs["problem"]), "--threads", "1", "--attempts", "1"],
                            cli_env(db, f"http://127.0.0.1:{closed_port()}/v1")), "unreachable")
    with ServerThread(make_app(scripted_responder(), api_key="right-key")) as server:
        _one_line_error(run_cli(["verify", "--problem", str(inputs["problem"]), "--proof", str(inputs["proof"])],
                                cli_env(db, server.base_url)), "auth")
    store = Store(db)
    assert store.get_run(done["run_id"]).status.value == "finished"
    assert len(store.verifications(run_id=done["run_id"])) == 2
    assert {r.status.value for r in store.list_runs()} >= {"finished", "failed"}


def test_runs_list_show_export(tmp_path: Path, inputs):
    db = tmp_path / "db"
    with running_server() as (server, _):
        env = cli_env(db, server.base_url)
        proved = run_json(["prove", str(inputs["problem"]), "--threads", "2", "--attempts", "2", "--seed", "3"], env)
    env = cli_env(db)
    listed = run_json(["runs", "list"], env)
    assert listed[0]["id"] == proved["run_id"]
    shown = run_json(["runs", "show", proved["run_id"]], env)
    assert shown["status"] == "finished" and shown["proofs"] == proved["proofs"]
    r = run_cli(["runs", "export", proved["run_id"], "-o", str(tmp_path / "run.jsonl")], env)
    assert r.returncode == 0, r.stderr
    import json

    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "run" and lines[1]["type"] == "problem"
    assert len(lines[1]["proofs"]) == proved["proofs"]

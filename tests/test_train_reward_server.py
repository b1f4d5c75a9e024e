"""The reward server (train/reward_server.py) on a real uvicorn on 127.0.0.1, judged by the
scripted test server over HTTP: every total and component equals the pure rewards recomputed
from the judge's own scores; a failed judge is null and counted, never 0; bad input is a 4xx."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from proofloop.models.base import Sampling
from proofloop.protocol import parse_proof
from proofloop.roles import generate
from proofloop.sim.http import Fault, Faults, ServerThread
from proofloop.train.judge import Judge
from proofloop.train.reward_server import RewardLimits, create_app
from proofloop.train.rewards import Reward, generator_reward, meta_verifier_reward, verifier_reward
from support.servers import closed_port, fast_model, running_server

PROBLEM = "Prove that the sum of two even integers is even."
SAMPLING = Sampling(seed=0, max_tokens=4096)
LIMITS = RewardLimits(max_items=16, max_text_chars=20_000)
ANALYSIS = ("Here is my evaluation of the solution: Step 2 has a gap.\n\n"
            "Based on my evaluation, the final overall score should be: \\boxed{{{}}}")
RATING = ('Here is my analysis of the "solution evaluation": the issues are real.\n\n'
          'Based on my analysis, I will rate the "solution evaluation" as: \\boxed{{{}}}')


@pytest.fixture(scope="module")
def judge_url():
    with running_server() as (server, _log):
        yield server.base_url


@pytest.fixture(scope="module")
def judge(judge_url):
    return Judge(fast_model(judge_url, max_concurrency=64), n=3, sampling=SAMPLING)


@pytest.fixture(scope="module")
def rewards_url(judge):
    with ServerThread(create_app(judge, limits=LIMITS)) as server:
        yield server.base_url + "/rewards"


@pytest.fixture(scope="module")
def outputs(judge_url):
    proofs = asyncio.run(generate(fast_model(judge_url, max_concurrency=64), PROBLEM, sampling=SAMPLING, n=6))
    return [p.raw for p in proofs] + ["no sections at all"]


def post(url: str, body) -> httpx.Response:
    return httpx.post(url, json=body, timeout=30)


def assert_same(result: dict, expected: Reward) -> None:
    """The server's result is the pure reward: total, every component and the reason."""
    assert result["total"] == pytest.approx(expected.total) and result["reason"] == expected.reason
    assert result["components"] == pytest.approx(expected.components)


def test_generator_rewards_equal_the_pure_formula_on_the_judges_scores(rewards_url, judge, outputs):
    body = {"task": "generator", "alpha": 0.6, "beta": 0.4,
            "items": [{"problem": PROBLEM, "completion": o} for o in outputs]}
    answer = post(rewards_url, body).json()
    assert answer["stats"] == {**answer["stats"], "completions": 7, "rewarded": 7, "format_failures": 1,
                               "failed_judgements": 0}
    for output, result in zip(outputs, answer["results"]):
        parsed = parse_proof(output)
        if parsed.status.value != "ok":
            expected = generator_reward(output, None, None)
        else:  # asked again, the judge answers from its call cache: the scores the server used
            proof_score = asyncio.run(judge.proof_score(PROBLEM, parsed.solution))
            rating = asyncio.run(judge.rating(PROBLEM, parsed.solution, parsed.self_evaluation))
            expected = generator_reward(output, proof_score, rating, alpha=0.6, beta=0.4)
        assert_same(result, expected)
    assert len({r["total"] for r in answer["results"]}) > 2  # the scripted proofs differ in grade


def test_verifier_rewards_with_the_meta_verifier_and_without(rewards_url, judge, outputs):
    proof = parse_proof(outputs[0]).solution
    items = [{"problem": PROBLEM, "proof": proof, "completion": ANALYSIS.format(s), "target": t}
             for s in ("0", "0.5", "1") for t in (0, 0.5, 1)] + [
            {"problem": PROBLEM, "proof": proof, "completion": "garbled", "target": 1}]
    plain = post(rewards_url, {"task": "verifier", "items": items}).json()["results"]
    judged = post(rewards_url, {"task": "verifier", "with_meta": True, "items": items}).json()["results"]
    for item, p, j in zip(items, plain, judged):
        assert_same(p, verifier_reward(item["completion"], item["target"]))
        if p["components"]["format"] == 0.0:
            assert (j["total"], j["components"]) == (0.0, {"format": 0.0})
            continue
        rating = asyncio.run(judge.rating(PROBLEM, proof, item["completion"]))
        expected = verifier_reward(item["completion"], item["target"], meta=rating, needs_meta=True)
        assert_same(j, expected)


def test_meta_verifier_rewards_are_the_pure_ones(rewards_url):
    items = [{"completion": RATING.format(s), "target": t} for s in ("0", "0.5", "1") for t in (0, 0.5, 1)]
    results = post(rewards_url, {"task": "meta-verifier", "items": items}).json()["results"]
    assert len(results) == len(items)
    for item, result in zip(items, results):
        assert_same(result, meta_verifier_reward(item["completion"], item["target"]))


@pytest.mark.parametrize("where", ["server errors", "nobody listening"])
def test_a_failed_judge_is_null_with_its_cause_and_counted(where, outputs):
    if where == "server errors":  # every judge request fails until the retries run out
        always = Faults(random=[(Fault(kind="server_error"), 1.0)])
        with running_server(faults=always) as (server, _log):
            failing = Judge(fast_model(server.base_url), n=2, sampling=SAMPLING)
            results, stats, totals = score_with(failing, outputs)
    else:
        failing = Judge(fast_model(f"http://127.0.0.1:{closed_port()}/v1"), n=2, sampling=SAMPLING)
        results, stats, totals = score_with(failing, outputs)
    assert [r["total"] for r in results] == [None] * 6 + [0.0]  # the broken output needs no judge
    assert all(r["reason"] for r in results[:6])
    assert (stats["failed_judgements"], stats["rewarded"], stats["format_failures"]) == (6, 1, 1)
    assert (totals["batches"], totals["failed_judgements"]) == (1, 6)


def score_with(judge: Judge, outputs: list[str]):
    with ServerThread(create_app(judge)) as server:
        answer = post(server.base_url + "/rewards", {"task": "generator", "items": [
            {"problem": PROBLEM, "completion": o} for o in outputs]})
        totals = httpx.get(server.base_url + "/rewards/stats").json()
    assert answer.status_code == 200
    return answer.json()["results"], answer.json()["stats"], totals


OK = ANALYSIS.format("1")
BAD_INPUT = [  # (body, status, words the message must have)
    ({"task": "critic", "items": [{"completion": OK, "target": 1}]}, 422, "verifier"),
    ({"task": "verifier", "items": [{"completion": OK, "target": 1}, {"completion": OK}]}, 422, "item 1"),
    ({"task": "verifier", "items": [{"completion": OK, "target": 0.7}]}, 422, "0, 0.5 or 1"),
    ({"task": "verifier", "items": [{"completion": OK, "target": 1, "score": 1}]}, 422, "score"),
    ({"task": "verifier", "items": []}, 422, "at least 1"),
    ({"task": "verifier", "items": [{"completion": 5, "target": 1}]}, 422, "string"),
    ({"task": "verifier", "with_meta": True, "items": [{"completion": OK, "target": 1}]}, 422, "problem, proof"),
    ({"task": "generator", "items": [{"completion": OK}]}, 422, "needs problem"),
    ({"task": "generator", "with_meta": True, "items": [{"problem": "p", "completion": OK}]}, 422, "verifier task only"),
    ({"task": "generator", "alpha": -1, "items": [{"problem": "p", "completion": OK}]}, 422, "greater than"),
    ({"task": "verifier", "items": [{"completion": OK, "target": 1}] * 17}, 413, "limit of 16"),
    ({"task": "verifier", "items": [{"completion": "x" * 20_001, "target": 1}]}, 413, "item 0: completion"),
    ("not an object", 422, "valid dictionary"),
]


@pytest.mark.parametrize("body,status,words", BAD_INPUT)
def test_bad_input_is_a_4xx_with_a_clear_message(rewards_url, body, status, words):
    answer = post(rewards_url, body)
    assert answer.status_code == status and words in answer.text


def test_without_a_judge_only_judged_tasks_are_refused(outputs):
    with ServerThread(create_app(None)) as server:
        url = server.base_url + "/rewards"
        judged = post(url, {"task": "generator", "items": [{"problem": PROBLEM, "completion": outputs[0]}]})
        plain = post(url, {"task": "verifier", "items": [{"completion": OK, "target": 1}]})
    assert judged.status_code == 503 and "--judge-base-url" in judged.json()["detail"]
    assert plain.json()["results"][0]["total"] == 1.0


def test_a_batch_within_the_limits_is_scored_whole(rewards_url):
    items = [{"completion": ANALYSIS.format(s), "target": 1} for s in ("0", "0.5", "1", "1")] * 4  # 16 = the limit
    answer = post(rewards_url, {"task": "verifier", "items": items})
    assert [r["total"] for r in answer.json()["results"]] == [0.0, 0.5, 1.0, 1.0] * 4


def test_the_cli_serves_the_simulator_as_judge(tmp_path):
    """`proofloop train serve-rewards --judge-provider sim` in a subprocess: one generator batch."""
    import subprocess
    import sys
    import time

    url_file = tmp_path / "url"
    proc = subprocess.Popen([sys.executable, "-m", "proofloop.cli", "train", "serve-rewards", "--port", "0",
                             "--judge-provider", "sim", "-n", "2", "--url-file", str(url_file)],
                            stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not url_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the reward server did not start"
            time.sleep(0.05)
        from proofloop.sim import make_problems

        problem = make_problems(1, seed=1)[0]
        proof = ("## Solution\n\nBy induction on n.\n\n## Self Evaluation\n\nHere is my evaluation of the "
                 "solution: complete.\n\nBased on my evaluation, the final overall score should be: \\boxed{1}")
        answer = post(url_file.read_text().strip() + "/rewards",
                      {"task": "generator", "items": [{"problem": problem, "completion": proof}]})
        [result] = answer.json()["results"]
        assert sorted(result["components"]) == ["format", "proof", "self_evaluation", "self_score"]
        assert 0.0 <= result["total"] <= 1.0
    finally:
        proc.terminate()
        proc.wait(10)


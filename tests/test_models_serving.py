"""The test/simulator server itself: endpoints, request log, faults, scripted roles, subprocess."""

import re

import httpx
from support.servers import fast_model, running_server, server_process

from proofloop.models.base import Sampling
from proofloop.sim.http import Fault, Faults, read_request_log
from support.scripted import default_role

GEN = [{"role": "user", "content": "Prove X. Reply with ## Solution then ## Self Evaluation."}]
FINAL = re.compile(r"final overall score should be: \\boxed\{(0|0\.5|1)\}$")


def test_health_models_and_bad_body():
    with running_server(models=["a", "b"]) as (server, log):
        root = server.base_url.removesuffix("/v1")
        assert httpx.get(root + "/health").json() == {"status": "ok"}
        assert [m["id"] for m in httpx.get(server.base_url + "/models").json()["data"]] == ["a", "b"]
        r = httpx.post(server.base_url + "/chat/completions", content=b"{not json")
        assert r.status_code == 400
    assert [e["outcome"] for e in log] == ["invalid_request"]


def test_non_streaming_body_and_usage():
    with running_server() as (server, log):
        r = httpx.post(server.base_url + "/chat/completions",
                       json={"model": "m", "messages": GEN, "n": 2, "top_k": 20}).json()
    assert [c["index"] for c in r["choices"]] == [0, 1]
    assert r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + r["usage"]["completion_tokens"] > 0
    assert log[0]["n"] == 2 and log[0]["outcome"] == "ok" and len(log[0]["fingerprint"]) == 64


async def test_scripted_roles_follow_the_protocol():
    with running_server() as (server, log):
        model = fast_model(server.base_url)
        [g] = await model.sample(GEN, Sampling(seed=1))
        proof = g.completion.text.split("## Self Evaluation")[0]
        verify = [{"role": "user", "content": f"Check this proof.\n\n{proof}"}]
        [v] = await model.sample(verify, Sampling(seed=1))
        meta = [{"role": "user", "content": f'Judge the "solution evaluation".\n{proof}\n{v.completion.text}'}]
        [m] = await model.sample(meta, Sampling(seed=1))
        refine = [{"role": "user", "content": f"{GEN[0]['content']}\n## Candidate Solution(s) to Refine\n{proof}"}]
        [r] = await model.sample(refine, Sampling(seed=1))
    assert g.completion.text.startswith("## Solution") and "Here is my evaluation of the solution:" in g.completion.text
    assert FINAL.search(g.completion.text) and FINAL.search(r.completion.text)
    assert v.completion.text.startswith("Here is my evaluation of the solution:") and FINAL.search(v.completion.text)
    assert m.completion.text.startswith('Here is my analysis of the "solution evaluation":')
    assert re.search(r'I will rate the "solution evaluation" as: \\boxed\{(0|0\.5|1)\}$', m.completion.text)
    assert [default_role(x) for x in (GEN, verify, meta, refine)] == ["generate", "verify", "meta_verify", "refine"]


async def test_scripted_scores_vary_and_are_deterministic():
    with running_server() as (server, log):
        a = await fast_model(server.base_url).sample(GEN, Sampling(seed=0), n=12)
        b = await fast_model(server.base_url, max_n=5).sample(GEN, Sampling(seed=0), n=12)
    scores = {FINAL.search(x.completion.text).group(1) for x in a}
    assert len(scores) >= 2
    assert [x.completion.text for x in a] == [x.completion.text for x in b]


def test_random_faults_depend_only_on_seed_and_request_number():
    faults = Faults(random=[(Fault(kind="server_error"), 0.3), (Fault(kind="rate_limit"), 0.2)], seed=5)
    picks = [faults.pick(i) for i in range(1, 201)]
    again = Faults.model_validate(faults.model_dump()).pick
    assert [p and p.kind for p in picks] == [again(i) and again(i).kind for i in range(1, 201)]
    share = sum(p is not None for p in picks) / 200
    assert 0.35 < share < 0.65


async def test_subprocess_server_writes_a_log_that_survives_kill_9(tmp_path):
    log_path = tmp_path / "requests.jsonl"
    script = {"faults": {"by_request": {"1": {"kind": "server_error"}}}, "responder": {"reasoning": "field"}}
    with server_process(script=script, request_log=log_path) as proc:
        [s] = await fast_model(proc.base_url).sample(GEN, Sampling())
        proc.kill()
        assert proc.proc.returncode == -9
    assert s.ok and s.completion.reasoning
    assert [e["outcome"] for e in read_request_log(log_path)] == ["server_error", "ok"]

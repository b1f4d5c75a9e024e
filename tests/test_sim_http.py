"""The simulator as an OpenAI-compatible HTTP server, driven with the openai SDK on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys

import openai
import pytest
from typer.testing import CliRunner

from proofloop.errors import UserInputError
from proofloop.sim import http as serving
from proofloop.protocol.parsers import parse_proof
from proofloop.protocol.templates import generation_messages
from proofloop.cli.sim import app as sim_cli
from proofloop.sim.model import SimModel, make_problems, true_quality
from proofloop.sim.server import ServerModel
from proofloop.sim.app import build_faults, make_sim_app

MSGS = generation_messages(make_problems(1, seed=5)[0])


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=30)


def test_non_streaming_and_streaming_with_n_and_usage():
    app = make_sim_app(seed=1, server=ServerModel(time_scale=1e5))
    with serving.ServerThread(app) as s:
        c = client(s.base_url)
        r = c.chat.completions.create(model="sim-1", messages=MSGS, n=3, max_tokens=10**6, seed=0)
        assert len(r.choices) == 3
        assert all(parse_proof(ch.message.content).status.value == "ok" for ch in r.choices)
        assert all(true_quality(ch.message.content) is not None for ch in r.choices)
        assert r.choices[0].message.model_extra.get("reasoning_content", "").startswith("[sim]")
        assert r.usage.prompt_tokens == SimModel(seed=1).prompt_tokens(MSGS)  # billed once for n = 3
        assert r.usage.prompt_tokens_details.cached_tokens == 0

        chunks = c.chat.completions.create(model="sim-1", messages=MSGS, n=3, max_tokens=10**6, seed=0,
                                           stream=True, stream_options={"include_usage": True})
        texts, usage = ["", "", ""], None
        for ch in chunks:
            for choice in ch.choices:
                texts[choice.index] += choice.delta.content or ""
            usage = ch.usage or usage
        assert texts == [ch.message.content for ch in r.choices]  # same seed: same samples
        assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens  # prefix cache hit
        assert usage.completion_tokens == r.usage.completion_tokens

        a = c.chat.completions.create(model="sim-1", messages=MSGS, max_tokens=10**6)
        b = c.chat.completions.create(model="sim-1", messages=MSGS, max_tokens=10**6)
        assert a.choices[0].message.content != b.choices[0].message.content  # no seed: fresh samples
        assert [m.id for m in c.models.list().data] == ["sim-1"]


def test_truncation_over_http():
    with serving.ServerThread(make_sim_app(seed=2)) as s:
        r = client(s.base_url).chat.completions.create(model="sim-1", messages=MSGS, max_tokens=20, seed=0)
        assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 20


def test_injected_faults_and_max_n():
    app = make_sim_app(faults=build_faults(1.0, ["rate_limit"], retry_after=2.5), max_n=2)
    with serving.ServerThread(app) as s:
        c = client(s.base_url)
        with pytest.raises(openai.RateLimitError) as e:
            c.chat.completions.create(model="sim-1", messages=MSGS)
        assert e.value.response.headers["retry-after"] == "2.5"
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="sim-1", messages=MSGS, n=3)
    with serving.ServerThread(make_sim_app(faults=build_faults(1.0, ["server_error"]))) as s:
        with pytest.raises(openai.InternalServerError):
            client(s.base_url).chat.completions.create(model="sim-1", messages=MSGS)
    with pytest.raises(ValueError):
        build_faults(0.5, ["meteor"])


def test_module_entry_point_prints_the_url_and_serves():
    proc = subprocess.Popen([sys.executable, "-m", "proofloop.cli", "sim", "serve", "--port", "0", "--time-scale", "1e5",
                             "--seed", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("PROOFLOOP_SERVING_URL http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split()[1]
        r = client(url).chat.completions.create(model="sim-1", messages=MSGS, n=2, max_tokens=10**6, seed=0)
        assert len(r.choices) == 2 and r.choices[0].message.content.startswith("## Solution")
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_app():
    runner = CliRunner()
    assert runner.invoke(sim_cli, ["serve", "--help"]).exit_code == 0
    assert runner.invoke(sim_cli, ["serve", "--port", "0", "--fail-rate", "2"]).exit_code == 2
    out = runner.invoke(sim_cli, ["problems", "3", "--mix", "hard", "--json"])
    assert out.exit_code == 0 and out.output.count("sim:problem") == 3
    assert isinstance(runner.invoke(sim_cli, ["problems", "3", "--mix", "nope"]).exception, UserInputError)
    cal = runner.invoke(sim_cli, ["calibrate"])
    assert cal.exit_code == 0 and "fool_prob" in cal.output

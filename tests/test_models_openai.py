"""OpenAIProvider + Model against real HTTP on 127.0.0.1 (the scripted server with faults)."""

import asyncio
import email.utils
import time

import pytest
from support.servers import FAST_RETRY, closed_port, fast_model, running_server

from proofloop.errors import (AuthError, ContextWindowError, EndpointUnreachable, ModelTimeoutError, ServerError,
                              UserInputError)
from proofloop.models.base import RetryPolicy, Sampling, Timeouts
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.limiter import PriorityLimiter, freeing_sequences
from proofloop.models.openai_provider import OpenAIProvider, openai_settings_from_env, parse_retry_after
from proofloop.models.pricing import Price, cost_usd
from proofloop.models.wrapper import Model
from proofloop.sim.http import Choice, Fault, Faults, Reply
from support.scripted import scripted_responder


def fault_on_first(kind, **kw):
    return Faults(by_request={1: Fault(kind=kind, **kw)})


async def test_rate_limit_waits_for_retry_after(msgs):
    with running_server(faults=fault_on_first("rate_limit", retry_after=1)) as (server, log):
        cache = InMemoryCallCache()
        [s] = await fast_model(server.base_url, cache=cache).sample(msgs, Sampling())
    assert s.ok and [e["outcome"] for e in log] == ["rate_limit", "ok"]
    assert log[1]["t_start"] - log[0]["t_end"] >= 1.0  # backoff would be ~10 ms: Retry-After won
    [f] = cache.failures
    assert (f.kind, f.status, f.attempt) == ("rate_limit", 429, 1)


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("kind", ["server_error", "drop", "drop_mid", "malformed"])
async def test_transient_faults_are_retried(msgs, kind, stream):
    expected = {"server_error": "server_error", "drop": "connection", "drop_mid": "connection",
                "malformed": "server_error"}[kind]
    with running_server(faults=fault_on_first(kind)) as (server, log):
        cache = InMemoryCallCache()
        out = await fast_model(server.base_url, stream=stream, cache=cache).sample(msgs, Sampling(), n=2)
    assert all(s.ok for s in out) and out[0].completion.text.startswith("## Solution")
    assert [e["outcome"] for e in log] == [kind, "ok"]
    assert [(f.kind, f.attempt) for f in cache.failures] == [(expected, 1)]
    if kind == "malformed":
        assert "malformed" in cache.failures[0].message


async def test_slow_response_past_attempt_timeout_is_retried(msgs):
    timeouts = Timeouts(connect_s=2, idle_read_s=10, attempt_s=0.5)
    with running_server(faults=fault_on_first("slow", delay_s=60)) as (server, log):  # until the client goes
        cache = InMemoryCallCache()
        t0 = time.monotonic()
        [s] = await fast_model(server.base_url, timeouts=timeouts, cache=cache).sample(msgs, Sampling())
        elapsed = time.monotonic() - t0
    assert s.ok and elapsed < 30  # retried after 0.5 s instead of waiting out the 60 s (slack for a loaded machine)
    assert [(f.kind, f.attempt) for f in cache.failures] == [("timeout", 1)]


async def test_total_timeout_ends_the_call(msgs):
    timeouts = Timeouts(connect_s=2, idle_read_s=10, attempt_s=0.3, total_s=1.0)
    always_slow = Faults(random=[(Fault(kind="slow", delay_s=60), 1.0)])  # each until its client goes
    with running_server(faults=always_slow) as (server, log):
        cache = InMemoryCallCache()
        model = fast_model(server.base_url, timeouts=timeouts, cache=cache,
                           retry=RetryPolicy(max_attempts=50, initial_s=0.01, max_s=0.02))
        t0 = time.monotonic()
        [s] = await model.sample(msgs, Sampling())
        elapsed = time.monotonic() - t0
    assert isinstance(s.error, ModelTimeoutError) and "total timeout" in s.error.message
    assert 0.9 < elapsed < 30  # ended near total_s = 1, well before one 60 s answer (slack for a loaded machine)
    assert len(cache.failures) >= 2 and all(f.kind == "timeout" for f in cache.failures)


async def test_idle_read_timeout_applies_between_chunks(msgs):
    timeouts = Timeouts(connect_s=2, idle_read_s=1.5)
    # A live stream: 8-character chunks 0.1 s apart (15 times less than idle_read_s, so a loaded
    # machine does not open a gap that long), about 5 s in all: over 2 * idle_read_s.
    with running_server(stream_chunk_chars=8, stream_delay_s=0.1) as (server, log):
        t0 = time.monotonic()
        [s] = await fast_model(server.base_url, timeouts=timeouts).sample(msgs, Sampling())
        assert s.ok and time.monotonic() - t0 > 2 * timeouts.idle_read_s
    # Silence longer than idle_read_s is a read timeout.
    with running_server(faults=Faults(random=[(Fault(kind="slow", delay_s=60), 1.0)])) as (server, log):
        model = fast_model(server.base_url, timeouts=timeouts, retry=RetryPolicy(2, 0.01, 0.02))
        [s] = await model.sample(msgs, Sampling())
    assert isinstance(s.error, ModelTimeoutError) and len(log) == 2


@pytest.mark.parametrize("stream", [True, False])
async def test_truncated_output_is_returned_not_retried(msgs, stream):
    with running_server(faults=fault_on_first("truncate")) as (server, log):
        [s] = await fast_model(server.base_url, stream=stream).sample(msgs, Sampling())
    assert s.ok and s.completion.finish_reason == "length" and len(log) == 1
    assert "\\boxed" not in s.completion.text


async def test_max_tokens_truncation_by_the_server(msgs):
    with running_server() as (server, log):
        [s] = await fast_model(server.base_url).sample(msgs, Sampling(max_tokens=10))
    assert s.completion.finish_reason == "length" and len(s.completion.text) <= 40


@pytest.mark.parametrize("stream", [True, False])
async def test_n_in_one_request_or_split_by_max_n(msgs, stream):
    s = Sampling(seed=7)
    with running_server() as (server, log):
        together = await fast_model(server.base_url, stream=stream).sample(msgs, s, n=4)
        split = await fast_model(server.base_url, stream=stream, max_n=1).sample(msgs, s, n=4)
    assert [e["n"] for e in log] == [4, 1, 1, 1, 1]
    assert len({e["fingerprint"] for e in log[1:]}) == 4  # seed 7, 8, 9, 10: distinct requests
    # The scripted server answers sample k the same way whether it came alone or in a group.
    assert [x.completion.text for x in together] == [x.completion.text for x in split]
    assert len({x.completion.text for x in together}) == 4


@pytest.mark.parametrize("stream", [True, False])
async def test_a_streamed_choice_that_ends_gives_back_its_sequence_slot(msgs, stream):
    """Streamed, each choice's finish_reason frees one sequence slot of the request's holder
    (once each, however many chunks follow); a JSON answer ends all its choices at once, so
    the slots go back when the request ends."""
    lim = PriorityLimiter(3)
    with running_server(stream_chunk_chars=8) as (server, log):
        provider = OpenAIProvider("scripted", base_url=server.base_url, api_key="k", stream=stream)
        async with lim.slot(3) as held:
            with freeing_sequences(held):
                resp = await provider.complete(msgs, Sampling(seed=1), 3)
            assert len(resp.completions) == 3 and held.left == (0 if stream else 3)
        await provider.aclose()
    assert lim.in_use == 0


@pytest.mark.parametrize("stream", [True, False])
async def test_reasoning_content_and_inline_think(msgs, stream):
    with running_server(scripted_responder(reasoning="field")) as (server, log):
        out = await fast_model(server.base_url, stream=stream).sample(msgs, Sampling(), n=2)
    assert all(x.completion.reasoning.startswith("Let me think") for x in out)
    assert all(x.completion.text.startswith("## Solution") for x in out)
    with running_server(scripted_responder(reasoning="inline")) as (server, log):
        [x] = await fast_model(server.base_url, stream=stream).sample(msgs, Sampling())
    assert x.completion.reasoning is None and x.completion.text.startswith("<think>")


async def test_concurrency_cap_is_shared_per_endpoint(msgs):
    async def slow_responder(req):
        await asyncio.sleep(0.2)
        return Reply([Choice(text=f"answer {i}") for i in range(req.n)], prompt_tokens=3)

    with running_server(slow_responder) as (server, log):
        a = fast_model(server.base_url, max_concurrency=2)
        b = fast_model(server.base_url, max_concurrency=2)
        prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
        results = await asyncio.gather(*(m.sample(p, Sampling()) for m in (a, b) for p in prompts))
        stats = server.app.state.stats
    assert all(r[0].ok for r in results) and stats["requests"] == 12
    assert stats["max_in_flight"] == 2


async def test_second_call_hits_cache_with_zero_requests(msgs):
    with running_server() as (server, log):
        cache = InMemoryCallCache()
        first = await fast_model(server.base_url, cache=cache).sample(msgs, Sampling(), n=3)
        model = fast_model(server.base_url, cache=cache)
        again = await model.sample(msgs, Sampling(), n=3)
    assert len(log) == 1 and all(x.cached for x in again)
    assert [x.completion.text for x in again] == [x.completion.text for x in first]
    assert model.accounting.total.calls == 0 and model.accounting.total.cached_calls == 3


async def test_resumed_run_sends_byte_identical_requests(msgs):
    s = Sampling(seed=3)
    with running_server() as (server, log):
        await fast_model(server.base_url, max_n=2).sample(msgs, s, n=6)  # uninterrupted: 0-1, 2-3, 4-5
        cache = InMemoryCallCache()
        await fast_model(server.base_url, max_n=2, cache=cache).sample(msgs, s, n=2)  # "killed" after 0-1
        resumed = await fast_model(server.base_url, max_n=2, cache=cache).sample(msgs, s, n=6)
    uninterrupted, interrupted, rest = log[:3], log[3:4], log[4:]
    assert [x.cached for x in resumed] == [True, True, False, False, False, False]
    # (the log is in completion order, and concurrent requests finish in any order)
    assert sorted(e["fingerprint"] for e in interrupted + rest) == sorted(e["fingerprint"] for e in uninterrupted)
    assert len({e["fingerprint"] for e in uninterrupted}) == 3


async def test_auth_error_raises(msgs):
    with running_server(api_key="right") as (server, log):
        cache = InMemoryCallCache()
        with pytest.raises(AuthError):
            await fast_model(server.base_url, api_key="wrong", cache=cache).sample(msgs, Sampling())
        [s] = await fast_model(server.base_url, api_key="right").sample(msgs, Sampling())
    assert s.ok and [e["outcome"] for e in log] == ["auth", "ok"]
    assert [f.kind for f in cache.failures] == ["auth"]


async def test_refused_connection_raises_endpoint_unreachable(msgs):
    cache = InMemoryCallCache()
    model = fast_model(f"http://127.0.0.1:{closed_port()}/v1", cache=cache)
    with pytest.raises(EndpointUnreachable):
        await model.sample(msgs, Sampling())
    assert len(cache.failures) == FAST_RETRY.max_attempts
    assert all(f.kind == "connection" for f in cache.failures)


async def test_context_window_error_is_not_retried(msgs):
    with running_server(faults=fault_on_first("context_window")) as (server, log):
        [s] = await fast_model(server.base_url).sample(msgs, Sampling())
    assert isinstance(s.error, ContextWindowError) and len(log) == 1


async def test_exhausted_retries_give_sample_errors(msgs):
    with running_server(faults=Faults(random=[(Fault(kind="server_error"), 1.0)])) as (server, log):
        cache = InMemoryCallCache()
        out = await fast_model(server.base_url, cache=cache).sample(msgs, Sampling(), n=2, tag="verify")
    assert all(isinstance(x.error, ServerError) for x in out) and len(log) == 3
    assert [f.attempt for f in cache.failures] == [1, 2, 3]


async def test_accounting_and_cost_from_server_usage(msgs):
    price = Price(input_per_m=2.0, cached_input_per_m=1.0, output_per_m=4.0)
    with running_server() as (server, log):
        model = fast_model(server.base_url, pricing={"scripted": price})
        await model.sample(msgs, Sampling(), n=2, tag="gen")
        await model.sample(msgs, Sampling(temperature=0.5), tag="ver")
        await model.sample(msgs, Sampling(), n=2, tag="gen")  # cache hits: no tokens, no cost
    gen, ver, total = model.accounting.by_tag["gen"], model.accounting.by_tag["ver"], model.accounting.total
    assert (gen.calls, gen.cached_calls, ver.calls, total.calls) == (1, 2, 1, 2)
    assert gen.prompt_tokens > 0 and gen.completion_tokens > ver.completion_tokens > 0
    expected = sum(cost_usd(price, prompt_tokens=t.prompt_tokens, cached_prompt_tokens=0,
                            completion_tokens=t.completion_tokens) for t in (gen, ver))
    assert total.cost_usd == pytest.approx(expected) and total.cost_usd > 0


def test_retry_after_parsing():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after({"retry-after": future}) <= 31
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


def test_settings_from_flags_env_and_dotenv(tmp_path, monkeypatch):
    for var in ("PROOFLOOP_BASE_URL", "PROOFLOOP_API_KEY", "PROOFLOOP_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PROOFLOOP_MODEL=from-dotenv\nOPENAI_API_KEY=dotenv-key\n")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai-env/v1")
    monkeypatch.setenv("PROOFLOOP_API_KEY", "real-env-key")
    try:
        assert openai_settings_from_env() == ("http://openai-env/v1", "real-env-key", "from-dotenv")
        assert openai_settings_from_env("http://flag/v1", "k", "m") == ("http://flag/v1", "k", "m")
    finally:  # load_dotenv wrote into os.environ; take those out again
        monkeypatch.delenv("PROOFLOOP_MODEL", raising=False)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_official_endpoint_without_key_is_a_user_error():
    with pytest.raises(UserInputError):
        OpenAIProvider("gpt-4o-mini")


async def test_model_timeouts_reach_the_provider():
    provider = OpenAIProvider("m", base_url="http://127.0.0.1:1/v1")
    Model(provider, timeouts=Timeouts(connect_s=1.5, idle_read_s=7))
    client = provider._client()
    assert (client.timeout.connect, client.timeout.read) == (1.5, 7)

"""OpenAIProvider + Model against odd servers: ones that ignore n or temperature, FastAPI-style
errors, HTML pages, empty answers, unresolvable hosts and malformed base URLs.

Each test runs a tiny stdlib HTTP server on 127.0.0.1 whose `answer(request_body)` returns
(status, content type, body) or, for a streamed request, a list of SSE events.
"""

import json
import logging
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from proofloop.errors import (BadRequestError, EmptyResponseError, EndpointUnreachable, IncompatibleServer,
                              ModelNotFoundError, ServerError, UserInputError)
from proofloop.models.base import RetryPolicy, Sampling, Timeouts
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.factory import ModelSettings, build_provider
from proofloop.models.openai_provider import OpenAIProvider
from proofloop.models.wrapper import Model, forget_endpoints

FAST = RetryPolicy(max_attempts=3, initial_s=0.01, max_s=0.05)
WRAPPER_LOG = "proofloop.models.wrapper"


@pytest.fixture(autouse=True)
def fresh_endpoints():
    forget_endpoints()
    yield
    forget_endpoints()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        self.server.requests.append(body)
        status, ctype, payload = self.server.answer(body)
        if isinstance(payload, list):  # SSE events
            payload = "".join(f"data: {json.dumps(e)}\n\n" for e in payload) + "data: [DONE]\n\n"
        data = payload.encode() if isinstance(payload, str) else payload
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serving(answer):
    """(base URL, list of request bodies received) of a server answering with `answer`."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.answer, server.requests = answer, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server.requests
    finally:
        server.shutdown()
        server.server_close()


def chat_answer(texts, body):
    """An OpenAI chat completion (or its SSE events when the request streams) with these texts."""
    if body.get("stream"):
        events = [{"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                   "choices": [{"index": i, "delta": {"role": "assistant", "content": t}, "finish_reason": "stop"}]}
                  for i, t in enumerate(texts)]
        events.append({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                       "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2 * len(texts),
                                                "total_tokens": 7 + 2 * len(texts)}})
        return 200, "text/event-stream", events
    return 200, "application/json", json.dumps({
        "id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
        "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                    for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2 * len(texts), "total_tokens": 7 + 2 * len(texts)}})


def ignores_n(body):
    """One choice whatever n was asked, a pure function of the seed (like transformers serve)."""
    return chat_answer([f"answer for seed {body.get('seed')}"], body)


def fixed(status, ctype, text):
    return lambda body: (status, ctype, text)


def model_at(base_url, *, stream=True, max_n=None, retry=FAST, cache=None, model="m"):
    provider = OpenAIProvider(model, base_url=base_url, stream=stream, max_n=max_n)
    return Model(provider, retry=retry, timeouts=Timeouts(connect_s=2, idle_read_s=10),
                 cache=cache if cache is not None else InMemoryCallCache())


# ---------------------------------------------------------------- servers that ignore n


@pytest.mark.parametrize("stream", [True, False])
async def test_server_ignoring_n_falls_back_to_one_sample_per_request(msgs, stream, caplog):
    caplog.set_level(logging.WARNING, logger=WRAPPER_LOG)
    s = Sampling(seed=10)
    with serving(ignores_n) as (url, requests):
        cache = InMemoryCallCache()
        out = await model_at(url, stream=stream, cache=cache).sample(msgs, s, n=4)
        assert [x.completion.text for x in out] == [f"answer for seed {10 + i}" for i in range(4)]
        assert [(r.get("n", 1), r["seed"]) for r in requests[:1]] == [(4, 10)]
        assert sorted((r.get("n", 1), r["seed"]) for r in requests[1:]) == [(1, 11), (1, 12), (1, 13)]
        assert cache.failures == []  # not a connection error, nothing retried
        # the cap is per endpoint: a new Model pointing there asks for one sample at once
        await model_at(url, stream=stream).sample(msgs, Sampling(seed=50), n=2)
        assert [(r.get("n", 1), r["seed"]) for r in requests[4:]] in ([(1, 50), (1, 51)], [(1, 51), (1, 50)])
    warnings = [r for r in caplog.records if "ignores n" in r.getMessage()]
    assert len(warnings) == 1 and url in warnings[0].getMessage()
    assert "one sample per request" in warnings[0].getMessage()
    # key for key the samples of a max_n=1 run
    with serving(ignores_n) as (other_url, _):
        single = await model_at(other_url, stream=stream, max_n=1).sample(msgs, s, n=4)
    assert [(x.key, x.completion.text) for x in single] == [(x.key, x.completion.text) for x in out]


async def test_identical_samples_in_one_request_warn_once_per_endpoint(msgs, caplog):
    caplog.set_level(logging.WARNING, logger=WRAPPER_LOG)
    same = lambda body: chat_answer(["the same proof"] * body.get("n", 1), body)  # noqa: E731
    with serving(same) as (url, requests):
        model = model_at(url)
        await model.sample(msgs, Sampling(temperature=1.0), n=3)
        await model.sample(msgs, Sampling(temperature=0.7), n=3)
        await model.sample(msgs, Sampling(temperature=0.0), n=2)  # greedy: identical is expected
    warnings = [r for r in caplog.records if "byte-identical" in r.getMessage()]
    assert len(warnings) == 1 and url in warnings[0].getMessage() and len(requests) == 3
    varied = lambda body: chat_answer([f"proof {i}" for i in range(body.get("n", 1))], body)  # noqa: E731
    caplog.clear()
    with serving(varied) as (url, _):
        await model_at(url).sample(msgs, Sampling(), n=3)
    assert not [r for r in caplog.records if "byte-identical" in r.getMessage()]


# ---------------------------------------------------------------- error text from the server


async def test_fastapi_404_detail_is_shown_with_a_v1_hint_and_not_retried(msgs):
    with serving(fixed(404, "application/json", '{"detail": "Not Found"}')) as (url, requests):
        [s] = await model_at(url.removesuffix("/v1")).sample(msgs, Sampling())
    assert isinstance(s.error, BadRequestError) and not isinstance(s.error, ModelNotFoundError)
    assert s.error.message.startswith("Not Found") and "/v1" in s.error.message and "'m'" in s.error.message
    assert len(requests) == 1


@pytest.mark.parametrize("stream", [True, False])
async def test_fastapi_validation_errors_become_the_message(msgs, stream):
    detail = {"detail": [{"loc": ["body", "messages", 0, "role"], "msg": "Field required", "type": "missing"},
                         {"loc": ["body", "top_p"], "msg": "Input should be less than 1", "type": "lt"}]}
    with serving(fixed(422, "application/json", json.dumps(detail))) as (url, requests):
        [s] = await model_at(url, stream=stream).sample(msgs, Sampling())
    assert isinstance(s.error, BadRequestError) and s.error.status == 422
    assert s.error.message == "body.messages.0.role: Field required; body.top_p: Input should be less than 1"


@pytest.mark.parametrize("status", [404, 400])
async def test_wrong_model_name_is_a_non_retryable_error_with_the_server_text(msgs, status):
    text = "The model `qwen-9000` does not exist."
    body = json.dumps({"error": {"message": text, "type": "NotFoundError", "code": status}})
    with serving(fixed(status, "application/json", body)) as (url, requests):
        [s] = await model_at(url, model="qwen-9000").sample(msgs, Sampling())
    assert isinstance(s.error, ModelNotFoundError) and isinstance(s.error, BadRequestError)
    assert text in s.error.message and not s.error.retryable and len(requests) == 1


# ---------------------------------------------------------------- servers that are not OpenAI-compatible

HTML_PAGE = "<!doctype html><html><head><title>Open WebUI</title></head><body>hello</body></html>"


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("ctype, body, expected", [
    ("text/html", HTML_PAGE, "answered 200 with an HTML page ('Open WebUI')"),
    ("text/plain", "it works", "answered 200 with"),
])
async def test_a_200_that_is_not_json_is_fatal_at_once(msgs, stream, ctype, body, expected):
    with serving(fixed(200, ctype, body)) as (url, requests):
        t0 = time.monotonic()
        with pytest.raises(IncompatibleServer) as e:
            await model_at(url, stream=stream, retry=RetryPolicy(max_attempts=6, initial_s=1.0)).sample(
                msgs, Sampling())
    assert expected in str(e.value) and "not an OpenAI-compatible" in str(e.value) and url in str(e.value)
    assert len(requests) == 1 and time.monotonic() - t0 < 5  # no backoff at all (it would take ~1 s)
    assert isinstance(e.value, EndpointUnreachable)  # the CLI's one-line exit 2


async def test_json_without_choices_is_incompatible_and_empty_choices_an_error(msgs):
    with serving(fixed(200, "application/json", '{"status": "ok"}')) as (url, requests):
        with pytest.raises(IncompatibleServer, match="without 'choices'"):
            await model_at(url, stream=False).sample(msgs, Sampling())
    empty = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": []})
    with serving(fixed(200, "application/json", empty)) as (url, requests):
        cache = InMemoryCallCache()
        [s] = await model_at(url, stream=False, cache=cache).sample(msgs, Sampling())
    assert isinstance(s.error, EmptyResponseError) and len(requests) == 1
    assert [f.kind for f in cache.failures] == ["empty_response"]


async def test_html_502_from_a_proxy_is_retried_soon_with_a_clear_message(msgs):
    page = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>nginx</body></html>"
    with serving(fixed(502, "text/html", page)) as (url, requests):
        cache = InMemoryCallCache()
        model = model_at(url, cache=cache, retry=RetryPolicy(max_attempts=2, initial_s=30.0, max_s=60.0))
        [s] = await model.sample(msgs, Sampling())
    assert isinstance(s.error, ServerError) and s.error.status == 502 and len(requests) == 2
    assert "answered 502 with an HTML page ('502 Bad Gateway')" in s.error.message
    assert s.error.retry_after == 1.0  # not the 30 s backoff of this policy


# ---------------------------------------------------------------- addresses


async def test_unresolvable_host_is_unreachable_quickly(msgs, caplog):
    caplog.set_level(logging.INFO, logger=WRAPPER_LOG)
    cache = InMemoryCallCache()
    model = model_at("http://no-such-host.invalid:8000/v1", cache=cache,
                     retry=RetryPolicy(max_attempts=6, initial_s=0.05, max_s=0.1))
    t0 = time.monotonic()
    with pytest.raises(EndpointUnreachable) as e:
        await model.sample(msgs, Sampling())
    assert time.monotonic() - t0 < 30 and "does not resolve" in str(e.value)
    assert len(cache.failures) == 3  # refused_attempts, not max_attempts
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert retries and all(r.levelno == logging.INFO for r in retries)  # shown with --verbose only


@pytest.mark.parametrize("url", ["notaurl", "localhost:8000/v1", "ftp://host/v1", "http://host:port/v1", "http:///v1"])
def test_a_base_url_without_scheme_or_host_is_a_user_error(url):
    with pytest.raises(UserInputError, match="base URL must look like http://host:port/v1"):
        OpenAIProvider("m", base_url=url)
    with pytest.raises(UserInputError):
        build_provider(ModelSettings(provider="openai", base_url=url, model="m"))

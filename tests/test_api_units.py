"""The service's pure parts and in-process checks: event ids, tokens and binds, the cancel event
of the one runner, and a chunked body over the limit (no Content-Length to go by)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

pytest.importorskip("prometheus_client")

from fastapi.testclient import TestClient  # noqa: E402

from proofloop.api import Limits, ServeSettings, create_app, load_tokens  # noqa: E402
from proofloop.api.auth import token_matches  # noqa: E402
from proofloop.api.events import ORDER, event_id, parse_event_id  # noqa: E402
from proofloop.api.settings import token_digest  # noqa: E402
from proofloop.errors import UserInputError  # noqa: E402
from proofloop.models.factory import ModelSettings  # noqa: E402
from proofloop.runs import ModelSetup, RunCancelled, create_prove_run, execute  # noqa: E402
from proofloop.store import Store  # noqa: E402

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
times = st.integers(0, 10**16).map(lambda us: EPOCH + timedelta(microseconds=us))
record_ids = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), min_size=1, max_size=30)


@given(st.lists(st.tuples(times, st.sampled_from(sorted(ORDER)), record_ids), min_size=2, max_size=20))
def test_event_ids_sort_as_strings_in_stream_order_and_parse_back(events):
    ids = [event_id(t, kind, rid) for t, kind, rid in events]
    for (t, kind, rid), eid in zip(events, ids):
        assert parse_event_id(eid) == ((t - EPOCH) // timedelta(microseconds=1), ORDER[kind], rid)
    by_string = sorted(range(len(ids)), key=lambda i: ids[i])
    by_parts = sorted(range(len(ids)), key=lambda i: parse_event_id(ids[i]))
    assert [ids[i] for i in by_string] == [ids[i] for i in by_parts]


@pytest.mark.parametrize("value", ["", "1-1-x", "abc", "0179602174074321a-1-x", "01796021740743211-x-y"])
def test_a_foreign_event_id_is_not_parsed(value):
    assert parse_event_id(value) is None


def test_tokens_from_env_and_file_are_held_as_digests(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# comment\n\nfile-token\n")
    tokens = load_tokens(f, {"PROOFLOOP_API_TOKENS": "a, b,,"})
    assert tokens == {"a", "b", "file-token"}
    settings = ServeSettings(db=":memory:", tokens=tokens)
    assert "file-token" not in repr(settings) and settings.auth_required
    assert token_matches("file-token", settings.tokens) and not token_matches("file-toke", settings.tokens)
    assert token_digest("a") in settings.tokens
    (tmp_path / "empty").write_text("# none\n")
    with pytest.raises(UserInputError, match="holds no token"):
        load_tokens(tmp_path / "empty", {})
    with pytest.raises(UserInputError, match="cannot read the token file"):
        load_tokens(tmp_path / "missing", {})


@pytest.mark.parametrize("host, tokens, no_auth, refused", [
    ("127.0.0.1", (), False, False), ("::1", (), False, False), ("localhost", (), False, False),
    ("0.0.0.0", (), False, True), ("10.1.2.3", (), False, True), ("example.org", (), False, True),
    ("0.0.0.0", ("t",), False, False), ("0.0.0.0", (), True, False)])
def test_only_loopback_may_serve_without_tokens(host, tokens, no_auth, refused):
    settings = ServeSettings(db=":memory:", host=host, tokens=frozenset(tokens), no_auth=no_auth)
    if refused:
        with pytest.raises(UserInputError, match="needs bearer tokens"):
            settings.check_bind()
    else:
        settings.check_bind()


def test_the_cancel_event_stops_a_run_stored_as_interrupted():
    store = Store(":memory:")
    run_id = create_prove_run(store, "Show that 3 is odd.", ModelSetup(ModelSettings(provider="sim")),
                              strategy="single", options={"k": 2})
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(RunCancelled):
        execute(store, run_id, cancel=cancel, notice=lambda line: None)
    run = store.get_run(run_id)
    assert (run.status.value, run.error, run.owner) == ("interrupted", "cancelled", None)
    summary = execute(store, run_id, notice=lambda line: None)  # a resume finishes it
    assert summary["proofs"] == 2 and store.get_run(run_id).status.value == "finished"


def test_a_chunked_body_over_the_limit_is_refused_with_413(tmp_path):
    app = create_app(ServeSettings(db=tmp_path / "db", limits=Limits(max_body_bytes=1000), resume_unfinished=False))

    def chunks():
        yield b'{"problem": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    with TestClient(app) as client:
        r = client.post("/v1/prove", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "too large" in r.json()["error"]
        r = client.post("/v1/prove", content=b"{}", headers={"content-type": "application/json",
                                                             "content-length": "nope"})
        assert r.status_code == 400

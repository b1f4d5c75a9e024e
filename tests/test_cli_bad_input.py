"""Bad input through the real CLI, as subprocesses: every case exits 2 with exactly one line on
stderr and creates no run (or, when the server is found unusable only once the run exists, a
run marked failed with the reason). Then model output full of terminal escape codes: none of
them may reach stdout or stderr.

Every server here listens on 127.0.0.1; `.invalid` host names never resolve (RFC 6761)."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from proofloop.protocol import detect_role
from proofloop.sim.http import Choice, Reply
from proofloop.store import Store
from support.cli import cli_env, run_cli
from support.servers import closed_port, running_server

PROBLEM = "Prove that the sum of two odd integers is even."
PROOF = "## Solution\n\nWrite them as 2a+1 and 2b+1; the sum is 2(a+b+1).\n"
ANALYSIS = ("Here is my evaluation of the solution: correct.\n\n"
            "Based on my evaluation, the final overall score should be: \\boxed{1}")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name, text in (("problem", PROBLEM), ("proof", PROOF), ("analysis", ANALYSIS)):
        (tmp_path / f"{name}.md").write_text(text)
        out[name] = str(tmp_path / f"{name}.md")
    return out


def one_line_error(r) -> str:
    """Exit 2 and exactly one non-empty line on stderr, the error; returns that line."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-4000:])
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("proofloop: error: ") and len(lines[0]) > len("proofloop: error: ") + 5, lines
    return lines[0]


# ---------------------------------------------------------------------------- bad options

PROVE = ["prove", "{problem}"]
VERIFY = ["verify", "--problem", "{problem}", "--proof", "{proof}"]
META = ["meta-verify", "--problem", "{problem}", "--proof", "{proof}", "--analysis", "{analysis}"]

BAD_OPTIONS = {  # case -> (arguments, a word the error line must contain)
    "k 0": (PROVE + ["--strategy", "single", "--k", "0"], "--k"),
    "attempts 0": (PROVE + ["--attempts", "0"], "--attempts"),
    "threads -2": (PROVE + ["--threads", "-2"], "--threads"),
    "n 0": (VERIFY + ["-n", "0"], "-n"),
    "m 0": (META + ["-m", "0"], "-m"),
    "max-concurrency 0": (PROVE + ["--max-concurrency", "0"], "--max-concurrency"),
    "max-concurrency -1": (VERIFY + ["--max-concurrency", "-1"], "--max-concurrency"),
    "max-sequences 0": (PROVE + ["--max-sequences", "0"], "--max-sequences"),
    "attempt-timeout -1": (PROVE + ["--attempt-timeout", "-1"], "--attempt-timeout"),
    "initial 2.5": (PROVE + ["--strategy", "pool", "-o", "initial=2.5"], "initial"),
    "rounds abc": (PROVE + ["--strategy", "pool", "-o", "rounds=abc"], "rounds"),
    "stop_early maybe": (PROVE + ["--strategy", "pool", "-o", "stop_early=maybe"], "stop_early"),
    "pass_min_valid 17 of 16": (PROVE + ["--strategy", "pool", "-o", "pass_min_valid=17", "-o", "verifications=16"],
                                "pass_min_valid"),
    "unknown -o key": (PROVE + ["--strategy", "pool", "-o", "nonsense=1"], "nonsense"),
    "-o without =": (PROVE + ["--strategy", "pool", "-o", "rounds"], "key=value"),
    "base-url not a URL": (PROVE + ["--base-url", "notaurl"], "notaurl"),
    "resume no such run": (["resume", "r-nope"], "no run"),
    "show no such run": (["runs", "show", "r-nope"], "no run"),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_bad_option_is_one_line_exit_2_and_no_run(tmp_path: Path, files, case: str):
    args, word = BAD_OPTIONS[case]
    db = tmp_path / "runs.db"
    # Nobody listens at this server: a case that slipped through would create a run and fail later.
    env = cli_env(db, f"http://127.0.0.1:{closed_port()}/v1")
    line = one_line_error(run_cli([a.format(**files) for a in args], env, timeout=120))
    assert word in line
    assert Store(db).list_runs() == []


# ---------------------------------------------------------------------------- unusable servers


class _Canned(BaseHTTPRequestHandler):
    """Answers every request with one canned (status, content type, body)."""

    canned: tuple[int, str, bytes] = (200, "text/plain", b"")

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, ctype, body = self.canned
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@contextmanager
def canned_server(status: int, ctype: str, body: bytes) -> Iterator[str]:
    handler = type("Handler", (_Canned,), {"canned": (status, ctype, body)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


HTML = b"<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>It works</h1></body></html>"
BAD_GATEWAY = b"<html><head><title>502 Bad Gateway</title></head><body><center>502 Bad Gateway</center></body></html>"

UNUSABLE = {  # case -> (canned answer, or a URL; a word the error must contain)
    "non-JSON 200": ((200, "application/json", b"this is not json"), None),
    "HTML 200": ((200, "text/html", HTML), None),
    "empty choices": ((200, "application/json", json.dumps({"id": "x", "object": "chat.completion",
                                                           "choices": []}).encode()), None),
    "HTML 502": ((502, "text/html", BAD_GATEWAY), "502"),
    "404 (no /v1)": ((404, "application/json", b'{"detail": "Not Found"}'), "/v1"),
    "wrong model": ((404, "application/json", json.dumps({"error": {
        "message": "The model `nope` does not exist.", "type": "invalid_request_error",
        "code": "model_not_found"}}).encode()), "does not exist"),
    "refused": ("refused", "refused"),
    "unresolvable host": ("http://no-such-host.invalid:8000/v1", "resolve"),
}


@contextmanager
def unusable(case: str) -> Iterator[str]:
    what = UNUSABLE[case][0]
    if what == "refused":
        yield f"http://127.0.0.1:{closed_port()}/v1"
    elif isinstance(what, str):
        yield what
    else:
        with canned_server(*what) as url:
            yield url


def check_failed_runs(db: Path, line: str) -> None:
    """A run created before the server was found unusable is marked failed, with the reason."""
    for run in Store(db).list_runs():
        assert run.status.value == "failed", run
        assert run.error and run.error in line, (run.error, line)


@pytest.mark.parametrize("command", ["prove", "verify"])
@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unusable_server_is_one_line_exit_2(tmp_path: Path, files, case: str, command: str):
    db = tmp_path / "runs.db"
    args = (PROVE + ["--strategy", "single", "--k", "2"]) if command == "prove" else (VERIFY + ["-n", "2"])
    with unusable(case) as url:
        started = time.monotonic()
        r = run_cli([a.format(**files) for a in args], cli_env(db, url), timeout=120)
        took = time.monotonic() - started
    line = one_line_error(r)
    assert took < 60, took
    word = UNUSABLE[case][1]
    assert word is None or word in line, line
    check_failed_runs(db, line)


def test_refused_connection_shows_retries_only_with_verbose(tmp_path: Path, files):
    db = tmp_path / "runs.db"
    env = cli_env(db, f"http://127.0.0.1:{closed_port()}/v1")
    args = [a.format(**files) for a in VERIFY + ["-n", "1"]]
    quiet = run_cli(args, env, timeout=120)
    one_line_error(quiet)
    loud = run_cli(args + ["--verbose"], env, timeout=120)
    assert loud.returncode == 2 and "Traceback" not in loud.stderr, loud.stderr
    lines = loud.stderr.splitlines()
    assert len(lines) > 1 and lines[-1].startswith("proofloop: error: ") and "refused" in lines[-1], loud.stderr
    assert any("retry" in line.lower() or "attempt" in line.lower() for line in lines[:-1]), loud.stderr


# ---------------------------------------------------------------------------- bad stores


def _real_db(path: Path) -> None:
    """A store with one run, closed: SQLite folds its write-ahead log into the file, so the
    file alone holds everything (and cutting it really damages it)."""
    store = Store(path)
    store.create_run("prove", {"kind": "prove", "problem": PROBLEM})
    store.close()
    assert not Path(f"{path}-wal").exists()


def _truncated(path: Path) -> None:
    _real_db(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _read_only(path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only files")
    _real_db(path)
    path.chmod(0o444)


BAD_STORES = {
    "not a database": lambda p: p.write_text("hello, I am a text file, not SQLite\n" * 50),
    "truncated": _truncated,
    "read-only": _read_only,
    "a folder": lambda p: p.mkdir(),
}


@pytest.mark.parametrize("case", list(BAD_STORES) + ["parent is a file"])
@pytest.mark.parametrize("command", ["runs list", "prove"])
def test_bad_store_is_one_line_exit_2(tmp_path: Path, files, case: str, command: str):
    if case == "parent is a file":
        (tmp_path / "afile").write_text("x")
        db = tmp_path / "afile" / "runs.db"
    else:
        db = tmp_path / "runs.db"
        BAD_STORES[case](db)
    if case == "read-only" and command == "runs list":
        pytest.skip("reading a read-only store is fine")
    args = ["runs", "list"] if command == "runs list" else [a.format(**files) for a in VERIFY + ["-n", "1"]]
    with running_server() as (server, log):
        r = run_cli(args + ["--db", str(db)], cli_env(tmp_path / "unused.db", server.base_url), timeout=120)
    one_line_error(r)
    assert log == []  # nothing was sent to the model: the store is checked first


def test_export_to_a_missing_folder_is_one_line(tmp_path: Path, files):
    db = tmp_path / "runs.db"
    with running_server() as (server, _):
        env = cli_env(db, server.base_url)
        r = run_cli([a.format(**files) for a in VERIFY + ["-n", "1", "--json"]], env)
    assert r.returncode == 0, r.stderr
    run_id = json.loads(r.stdout)["run_id"]
    line = one_line_error(run_cli(["runs", "export", run_id, "-o", "/no/such/folder/x.jsonl"], env))
    assert "/no/such/folder" in line
    assert not Path("/no/such/folder").exists()


def test_store_file_left_intact_by_a_bad_store_error(tmp_path: Path):
    """A text file passed as --db is not overwritten or turned into a database."""
    db = tmp_path / "notes.txt"
    db.write_text("precious notes\n")
    one_line_error(run_cli(["runs", "list", "--db", str(db)], cli_env(tmp_path / "unused.db")))
    assert db.read_text() == "precious notes\n"
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(db).execute("select * from sqlite_master").fetchall()


# ---------------------------------------------------------------------------- escape codes

ESCAPES = ["\x1b[2J", "\x1b]0;pwned title\x07", "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",
           "\x9b31m", "\x1b[31m", "\x07", "\x08", "\r", "\x00", "\x7f", "\x1bc", "\x9d0;x\x07"]
DIRTY = "".join(ESCAPES)
FORBIDDEN = [b"\x1b", b"\x07", b"\x08", b"\r", b"\x00", b"\x7f", "\x9b".encode(), "\x9d".encode()]  # 8-bit CSI/OSC as UTF-8


def _dirty_responder():
    """Proofs, analyses and ratings laced with escape codes, otherwise well formed."""
    async def respond(req) -> Reply:
        role = detect_role(req.messages) or "generate"
        if role == "meta_verify":
            text = (f"The evaluation is fine {DIRTY}.\n\nBased on my analysis, I will rate the "
                    "\"solution evaluation\" as: \\boxed{1}")
        elif role == "verify":
            text = (f"Here is my evaluation of the solution: Step 2 {DIRTY} has a gap.\n\n"
                    "Based on my evaluation, the final overall score should be: \\boxed{0.5}")
        else:
            text = (f"## Solution\n\nThe sum {DIRTY} is even.\n\n## Self Evaluation\n\nHere is my evaluation of the "
                    f"solution: fine {DIRTY}.\n\nBased on my evaluation, the final overall score should be: \\boxed{{1}}")
        return Reply([Choice(text=text, reasoning_content=f"thinking {DIRTY}") for _ in range(req.n)],
                     prompt_tokens=10)
    return respond


def _run_raw(args: list[str], env: dict[str, str]):
    import subprocess

    from support.cli import CLI

    return subprocess.run(CLI + args, env=env, capture_output=True, timeout=180)


def _clean(r) -> None:
    for stream in (r.stdout, r.stderr):
        for bad in FORBIDDEN:
            assert bad not in stream, (bad, stream[-3000:])


def test_escape_codes_in_model_output_never_reach_the_terminal(tmp_path: Path, files):
    db = tmp_path / "runs.db"
    with running_server(_dirty_responder()) as (server, log):
        env = cli_env(db, server.base_url)
        cases = [PROVE + ["--strategy", "single", "--k", "2"], PROVE + ["--threads", "1", "--attempts", "2"],
                 VERIFY + ["-n", "2"], META + ["-m", "2"]]
        for args in cases:
            args = [a.format(**files) for a in args]
            text = _run_raw(args + ["--verbose"], env)
            assert text.returncode == 0, text.stderr[-3000:]
            _clean(text)
            if args[0] == "prove":  # the text around the escapes is still shown, the link text without its target
                assert b"The sum" in text.stdout and b"click" in text.stdout, text.stdout[-2000:]
                assert b"evil.example" not in text.stdout + text.stderr
            as_json = _run_raw(args + ["--json"], env)
            assert as_json.returncode == 0, as_json.stderr[-3000:]
            _clean(as_json)  # JSON escapes control characters as \uXXXX: still valid, nothing raw
            json.loads(as_json.stdout)
    assert len(log) >= 4
    runs = Store(db).list_runs()
    store = Store(db)  # stored as they came, and parsed: the solution, the analysis and the rating hold them
    assert any(DIRTY in (p.solution or "") for r in runs for p in store.proofs(r.id))
    assert any(DIRTY in (v.analysis or "") and v.score == 0.5 for r in runs for v in store.verifications(run_id=r.id))
    assert any(m.rating == 1 for r in runs for m in store.meta_verifications(run_id=r.id))
    for run in runs:
        shown = _run_raw(["runs", "show", run.id], env)
        assert shown.returncode == 0, shown.stderr
        _clean(shown)
        listed = _run_raw(["runs", "list"], env)
        _clean(listed)

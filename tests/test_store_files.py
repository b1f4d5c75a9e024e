"""Bad store files give one StoreError line (never a traceback), and a locked store is waited
for visibly, then reported."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading

import pytest

from proofloop.errors import UserInputError
from proofloop.store import Store, StoreError


def _filled_store(path):
    with Store(path) as s:  # closing the last connection checkpoints the WAL into the file
        run = s.create_run("prove", {})
        pid = s.add_problem(run, "P")
        for i in range(200):
            s.add_proof(run, f"g{i}", problem_id=pid, raw="proof text " * 50, status="ok")
    return path


def not_a_database(tmp):
    (tmp / "s.db").write_text("these are my notes\n" * 20)
    return tmp / "s.db"


def truncated(tmp):
    path = _filled_store(tmp / "s.db")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def damaged_inside(tmp):
    path = _filled_store(tmp / "s.db")
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:page * 4] = b"\xa5" * (page * 3)  # garbage over pages 2-4 (the header stays intact)
    path.write_bytes(bytes(data))
    return path


def read_only_file(tmp):
    path = _filled_store(tmp / "s.db")
    path.chmod(0o444)
    return path


def read_only_folder(tmp):
    path = _filled_store(tmp / "ro" / "s.db")
    path.parent.chmod(0o555)
    return path


def a_folder(tmp):
    (tmp / "s.db").mkdir()
    return tmp / "s.db"


def parent_is_a_file(tmp):
    (tmp / "plain").write_text("x")
    return tmp / "plain" / "sub" / "s.db"


@pytest.mark.parametrize("make,message", [
    (not_a_database, r"is not an SQLite database"),
    (truncated, r"is damaged: truncated to \d+ bytes of \d+"),
    (damaged_inside, r"(is damaged|cannot open the run store)"),
    (read_only_file, r"is read-only: proofloop writes to it"),
    (read_only_folder, r"folder .*ro of the run store is read-only: SQLite's write-ahead log"),
    (a_folder, r"is a folder: give a file path"),
    (parent_is_a_file, r"plain is a file, not a folder"),
], ids=lambda x: getattr(x, "__name__", None))
def test_bad_store_files_give_one_clear_line(tmp_path, make, message):
    path = make(tmp_path)
    try:
        with pytest.raises(StoreError, match=message) as caught:
            Store(path)
    finally:
        for p in (path, path.parent):
            if p.exists():
                p.chmod(0o755 if p.is_dir() else 0o644)
    error = caught.value
    assert isinstance(error, UserInputError)  # the CLI prints it as one line and exits with 2
    assert "\n" not in str(error) and str(path.parent.name) in str(error)
    assert error.__cause__ is None  # the cause is in the line, not in a chained traceback


def test_an_empty_file_becomes_a_new_store(tmp_path):
    (tmp_path / "s.db").write_bytes(b"")
    with Store(tmp_path / "s.db") as s:
        assert s.list_runs() == []


def _hold_write_lock(path):
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("BEGIN IMMEDIATE")
    return con


def test_a_locked_store_is_waited_for_visibly_then_reported(tmp_path):
    notices: list[str] = []
    with Store(tmp_path / "s.db", on_wait=notices.append, busy_timeout_s=0.6, wait_notice_s=0.2) as s:
        holder = _hold_write_lock(s.path)
        try:
            with pytest.raises(StoreError, match=r"^the run store .*s\.db is locked by another process"):
                s.create_run("prove", {})
        finally:
            holder.rollback()
            holder.close()
        assert len(notices) == 1 and "another process is writing" in notices[0]
        assert s.create_run("prove", {}, run_id="r-after")  # the lock is gone: writes work again


def test_a_lock_released_while_waiting_lets_the_write_through(tmp_path):
    notices: list[str] = []
    path = tmp_path / "s.db"
    Store(path).close()
    holder = _hold_write_lock(path)
    release = threading.Timer(0.05, holder.rollback)  # the holder lets go once we say we wait

    def on_wait(message: str) -> None:
        notices.append(message)
        release.start()

    with Store(path, on_wait=on_wait, busy_timeout_s=60, wait_notice_s=0.1) as s:
        try:
            run = s.create_run("prove", {})
        finally:
            release.join()
            holder.close()
        assert s.get_run(run) is not None and len(notices) == 1


def test_the_cli_prints_one_line_and_exits_2(tmp_path):
    path = not_a_database(tmp_path)
    done = subprocess.run([sys.executable, "-m", "proofloop.cli", "runs", "list", "--db", str(path)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "500"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"proofloop: error: the run store {path} is not an SQLite "
                                                f"database: point PROOFLOOP_DB or --db at a proofloop store, "
                                                f"or move the file away"]

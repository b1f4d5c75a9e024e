"""Run the `proofloop` command as a subprocess, the way a user does."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "proofloop.cli"]


def cli_env(db: Path, base_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROOFLOOP_", "OPENAI_"))}
    env.update(PROOFLOOP_DB=str(db), PYTHONUNBUFFERED="1", **extra)
    if base_url:
        env.update(PROOFLOOP_BASE_URL=base_url, PROOFLOOP_MODEL="scripted", PROOFLOOP_API_KEY="test-key")
    return env


def run_cli(args: list[str], env: dict[str, str], *, cwd: Path | None = None, input: str | None = None,
            timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, env=env, cwd=cwd, input=input, capture_output=True, text=True,
                          timeout=timeout)


def run_json(args: list[str], env: dict[str, str], **kw: Any) -> dict[str, Any]:
    r = run_cli(args + ["--json"], env, **kw)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-4000:]}"
    return json.loads(r.stdout)


def stored_calls(db: Path | str) -> int:
    """Calls stored so far, read without opening the store the running CLI writes to."""
    if "://" in str(db):  # a database server: any number of clients, no file locks
        from sqlalchemy import create_engine, exc

        engine = create_engine(str(db))
        try:
            with engine.connect() as con:
                return con.exec_driver_sql("select count(*) from llm_calls").scalar_one()
        except exc.ProgrammingError:  # not created yet
            return 0
        finally:
            engine.dispose()
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:  # closed at once:
            return con.execute("select count(*) from llm_calls").fetchone()[0]  # an idle reader holds locks
    except sqlite3.OperationalError:  # not created yet
        return 0


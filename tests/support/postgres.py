"""A throwaway PostgreSQL server for tests: initdb into a fresh folder under /tmp, start it on
127.0.0.1 at a free port (its unix socket in that folder too), hand out one new database per
test, stop it and delete the folder at the end.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (Debian's
package creates it) or else `nobody`; the folder is chowned to that user. Where no PostgreSQL
binaries are found, or the server does not start, `PostgresServer.start` raises Unavailable
with the reason, and the fixtures skip with it.

Under pytest-xdist each worker process starts its own server (session fixtures are per worker).

    server = PostgresServer.start()
    url = server.new_database()   # postgresql+psycopg://...@127.0.0.1:PORT/t1
    server.stop()
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

USER = "proofloop"  # the database role the tests connect as (a superuser of the throwaway server)


class Unavailable(RuntimeError):
    """PostgreSQL cannot be started here (the reason is the message)."""


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user() -> str | None:
    """The unprivileged user to run the server as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise Unavailable("running as root and neither a `postgres` nor a `nobody` user exists to run the server")


@dataclass
class PostgresServer:
    bindir: Path
    folder: Path
    port: int
    user: str | None
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def start(cls) -> "PostgresServer":
        bindir = _bindir()
        if bindir is None:
            raise Unavailable("no PostgreSQL server binaries (pg_ctl) found: install Debian's `postgresql` package")
        user = _server_user()
        folder = Path(tempfile.mkdtemp(prefix="proofloop-pg-"))
        if user:
            shutil.chown(folder, user)
        server = cls(bindir, folder, _free_port(), user)
        try:
            server._run("initdb", "-D", str(folder / "data"), "-U", USER, "--auth=trust", "--no-sync",
                        "--encoding=UTF8", "--locale=C")
            for attempt in range(3):  # another process may take the free port first: pick another
                try:
                    server._start()
                    return server
                except Unavailable:
                    if attempt == 2:
                        raise
                    server.port = _free_port()
        except Unavailable:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        raise AssertionError("unreachable")

    def _start(self) -> None:
        # fsync off: a test server need not survive a power cut, and it saves seconds per test.
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c synchronous_commit=off "
                   f"-c full_page_writes=off -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"), "-w", "-t", "60",
                  "-o", options, "start")

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.folder)
        if done.returncode != 0:
            log = self.folder / "log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise Unavailable(f"{program} failed ({done.returncode}): {done.stderr.strip()[-1500:]} {tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={USER} dbname=postgres",
                             autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


# ---- fixtures (tests/conftest.py imports them) --------------------------------------------------


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server per test process (so per xdist worker), stopped at the end."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'proofloop[postgres]'")
    try:
        server = PostgresServer.start()
    except Unavailable as e:
        pytest.skip(f"PostgreSQL cannot be started here, its tests are skipped: {e}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db(request, tmp_path):
    """Makes new, empty run-store targets of one back end (the test runs once per back end):
    SQLite files in tmp_path, or databases on the session's PostgreSQL server."""
    if request.param == "sqlite":
        names = itertools.count(1)
        return lambda: str(tmp_path / f"store{next(names)}.db")
    return request.getfixturevalue("postgres").new_database


@pytest.fixture
def db(new_db) -> str:
    """A new, empty run store: an SQLite file path, or a PostgreSQL URL."""
    return new_db()

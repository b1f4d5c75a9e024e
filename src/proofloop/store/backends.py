"""Where a run store lives and how to connect to it: an SQLite file (the embedded default, given
as a plain path) or a PostgreSQL database (a SQLAlchemy URL, `postgresql+psycopg://...`).

SQLite runs in WAL mode: readers never block the writer and see the last committed state,
and a process killed at any moment loses at most the transaction in flight. Every write is
one short `BEGIN IMMEDIATE` transaction (take the write lock up front, so two writers queue
on busy_timeout instead of failing on a lock upgrade); a writer that waits long is told once.

PostgreSQL runs each transaction at READ COMMITTED with the psycopg 3 driver; the store takes
row locks where it reads before it writes (store/db.py). `lock_timeout` bounds how long a
write waits for another's row lock (busy_timeout_s, as SQLite's busy timeout).

    >>> t = parse_target("runs.db")
    >>> t.dialect, str(t.path), t.where
    ('sqlite', 'runs.db', 'runs.db')
    >>> t = parse_target("postgresql://me:secret@db.example:5432/proofs")
    >>> t.dialect, t.path, t.where
    ('postgresql', None, 'postgresql+psycopg://me:***@db.example:5432/proofs')
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import StaticPool

from proofloop.store.checks import StoreError, check_path

_OPENED: dict[str, int] = {}  # SQLite file -> engines of this process open on it (open_sqlite)


@dataclass(frozen=True)
class Target:
    url: URL
    path: Path | None  # the SQLite file; None for an in-memory store and for a server

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    @property
    def where(self) -> str:
        """How messages name the store: the file, or the URL with its password hidden."""
        if self.dialect == "sqlite":
            return str(self.path) if self.path else ":memory:"
        return self.url.render_as_string(hide_password=True)


def parse_target(target: str | Path) -> Target:
    """A plain path or ":memory:" is SQLite; else a SQLAlchemy URL (sqlite:///FILE or
    postgresql[+psycopg]://...). Anything else raises StoreError."""
    text = str(target)
    if "://" not in text:
        return Target(make_url("sqlite://"), None) if text == ":memory:" else Target(make_url("sqlite://"), Path(text))
    try:
        url = make_url(text)
    except ArgumentError:
        raise StoreError(f"cannot read the run store URL {text!r}: give a file path or "
                         f"postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        return parse_target(url.database or ":memory:")
    if backend == "postgresql":
        return Target(url.set(drivername="postgresql+psycopg"), None)
    raise StoreError(f"the run store must be SQLite (a file path) or PostgreSQL (postgresql+psycopg://...), "
                     f"not {backend}")


def open_postgres(target: Target, busy_timeout_s: float) -> Engine:
    try:
        import psycopg  # noqa: F401 - only to say how to get it
    except ImportError:
        raise StoreError(f"the run store {target.where} is PostgreSQL, which needs psycopg: "
                         f"pip install 'proofloop[postgres]'") from None
    options = f"-c lock_timeout={int(busy_timeout_s * 1000)}"
    return create_engine(target.url, pool_pre_ping=True, connect_args={"options": options, "connect_timeout": 15})


@dataclass
class SqliteWaits:
    """Connection settings and the write-lock wait of one SQLite store."""

    where: str
    on_wait: Callable[[str], None]
    busy_timeout_s: float
    wait_notice_s: float

    def on_connect(self, dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # busy_timeout first: switching to WAL needs a lock another process may hold.
        for pragma in (f"busy_timeout = {int(self.busy_timeout_s * 1000)}", "journal_mode = WAL",
                       "synchronous = NORMAL", "foreign_keys = ON"):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    def on_begin(self, conn: Any) -> None:
        # The driver runs in autocommit (isolation_level=None), so we open transactions ourselves:
        # IMMEDIATE for writes (take the lock now), deferred for reads (a WAL snapshot, no lock).
        # Straight on the driver's connection: through SQLAlchemy, these three statements cost
        # more than many a small transaction's own work.
        raw = conn.connection.dbapi_connection
        if not conn.get_execution_options().get("immediate"):
            run_raw(raw, "BEGIN")
            return
        # Wait for the write lock in two steps, so that a long wait is seen while it happens.
        steps = [self.wait_notice_s, self.busy_timeout_s - self.wait_notice_s]
        try:
            for i, wait_s in enumerate(steps):
                run_raw(raw, f"PRAGMA busy_timeout = {int(wait_s * 1000)}")
                try:
                    run_raw(raw, "BEGIN IMMEDIATE")
                    return
                except DBAPIError as e:
                    if "locked" not in str(e.orig) and "busy" not in str(e.orig):
                        raise
                    if i == 0 and steps[1] > 0:
                        self.on_wait(f"waiting for the run store {self.where}: another process is writing to it")
            raise StoreError(f"the run store {self.where} is locked by another process "
                             f"(waited {self.busy_timeout_s:g} s)")
        finally:
            run_raw(raw, f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")


def run_raw(raw: sqlite3.Connection, sql: str) -> None:
    """`sql` on the driver's connection; its errors raised as SQLAlchemy raises them (DBAPIError)."""
    try:
        raw.execute(sql)
    except sqlite3.Error as e:
        raise DBAPIError.instance(sql, None, e, sqlite3.Error) from None


def open_sqlite(target: Target, waits: SqliteWaits) -> tuple[Engine, Callable[[], None]]:
    """The engine, and what to call once it is closed."""
    # check_same_thread off: the pool hands a connection to one thread at a time, and the
    # model layer may call the cache from worker threads.
    args = {"check_same_thread": False, "isolation_level": None}
    if target.path is None:
        # One shared connection: each new connection to :memory: would be an empty database.
        engine = create_engine("sqlite://", connect_args=args, poolclass=StaticPool)
        release: Callable[[], None] = lambda: None  # noqa: E731
    else:
        # The header check opens and closes the file itself, and closing any descriptor of a
        # file drops every POSIX lock this process holds on it, SQLite's included: so only
        # before this process has a connection to it.
        key = str(target.path.resolve())
        if not _OPENED.get(key):
            check_path(target.path)
        engine = create_engine(f"sqlite:///{target.path}", connect_args=args)
        _OPENED[key] = _OPENED.get(key, 0) + 1
        release = lambda: _OPENED.__setitem__(key, max(0, _OPENED.get(key, 0) - 1))  # noqa: E731
    event.listen(engine, "connect", waits.on_connect)
    event.listen(engine, "begin", waits.on_begin)
    return engine, release

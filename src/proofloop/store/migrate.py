"""Bring a store's schema up to date: Alembic revisions (store/migrations/versions/) on SQLite and
PostgreSQL alike, run inside the transaction that opens the store.

Which revision a store is at is kept in Alembic's own table (alembic_version). Its first
revision, 0003, is the baseline: the schema SQLite store v3 had. Files written before Alembic
(SQLite only, their version in PRAGMA user_version: 1, 2 or 3) are first brought to v3's
columns by the ALTERs in schema.MIGRATIONS; the baseline then creates only what they lack
(each of its tables and indexes is created if missing), and Alembic records them at 0003.
SQLite files keep PRAGMA user_version = SCHEMA_VERSION, so a proofloop from before Alembic
refuses a file a newer proofloop changed.

On PostgreSQL an advisory lock held for the transaction makes processes that open a new
database at the same moment migrate it one after the other (the second finds it done); on
SQLite the IMMEDIATE transaction does the same.

A store at HEAD costs one query to open: Alembic itself is imported only to change something.

    >>> HEAD
    '0006'
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from proofloop.store.checks import StoreError
from proofloop.store.schema import LEGACY_VERSION, MIGRATIONS, SCHEMA_VERSION

HEAD = "0006"  # the newest revision in migrations/versions (tests/test_store_postgres.py checks it)
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x70726F6F  # the advisory lock key on PostgreSQL ("proo")


def upgrade(conn: Connection, where: str) -> None:
    """Bring the store `conn` is open on (in a write transaction) to HEAD. StoreError when it
    was written by a newer proofloop."""
    sqlite = conn.dialect.name == "sqlite"
    if not sqlite:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    version = conn.exec_driver_sql("PRAGMA user_version").scalar_one() if sqlite else SCHEMA_VERSION
    if version > SCHEMA_VERSION:
        raise _newer(where, f"v{version}")
    tables = set(inspect(conn).get_table_names())
    revision = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() \
        if "alembic_version" in tables else None
    if revision == HEAD:
        return
    if revision is None and sqlite and "runs" in tables:  # a file from before Alembic
        for v in range(max(version, 1) + 1, LEGACY_VERSION + 1):
            for ddl in MIGRATIONS[v]:
                conn.exec_driver_sql(ddl)
    _alembic_upgrade(conn, where, revision)
    if sqlite:
        conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _alembic_upgrade(conn: Connection, where: str, revision: str | None) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if revision is not None:
        try:
            ScriptDirectory.from_config(config).get_revision(revision)
        except CommandError:
            raise _newer(where, f"revision {revision}") from None
    config.attributes["connection"] = conn  # migrations/env.py runs on it
    command.upgrade(config, "head")


def _newer(where: str, version: str) -> StoreError:
    return StoreError(f"{where} has store schema {version}; this proofloop knows up to v{SCHEMA_VERSION} "
                      f"(revision {HEAD}): upgrade proofloop")

"""The store on PostgreSQL and its Alembic migrations: where a store is given (path or URL), the
migrations against the models on both back ends, a newer schema refused, an unreachable server
in one line, and several processes opening and writing one new database at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from proofloop.store import Store, StoreError
from proofloop.store.backends import parse_target
from proofloop.store.migrate import HEAD, MIGRATIONS_DIR
from proofloop.store.schema import Base
from support.cli import cli_env, run_json


def test_head_is_the_newest_revision():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]


@pytest.mark.parametrize("given, dialect, where", [
    ("runs.db", "sqlite", "runs.db"),
    (":memory:", "sqlite", ":memory:"),
    ("sqlite:///some/runs.db", "sqlite", "some/runs.db"),
    ("postgresql://u:pw@h:5432/d", "postgresql", "postgresql+psycopg://u:***@h:5432/d"),
    ("postgresql+psycopg://u@h/d", "postgresql", "postgresql+psycopg://u@h/d"),
])
def test_a_store_is_a_path_or_a_url(given, dialect, where):
    target = parse_target(given)
    assert (target.dialect, target.where) == (dialect, where)


@pytest.mark.parametrize("given, message", [("mysql://u@h/d", "not mysql"), ("post gres://x", "cannot read")])
def test_other_urls_are_refused_in_one_line(given, message):
    with pytest.raises(StoreError, match=message):
        Store(given)


def test_an_unreachable_server_is_one_line_without_the_password():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as e:
        Store(f"postgresql+psycopg://me:secret@127.0.0.1:{port}/nothing")
    assert str(e.value).startswith(f"cannot connect to the run store postgresql+psycopg://me:***@127.0.0.1:{port}")
    assert "secret" not in str(e.value) and "\n" not in str(e.value)


def test_the_migrated_schema_is_the_models(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with Store(db) as store, store.engine.connect() as con:
        assert con.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
        assert compare_metadata(MigrationContext.configure(con), Base.metadata) == []
        assert store.integrity_check() == "ok"


def test_a_newer_revision_is_refused(db):
    with Store(db) as store, store.engine.begin() as con:
        con.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StoreError, match="revision 9999; this proofloop knows up to"):
        Store(db)


# Each process opens the same new database, creates the same run and problem, stores the same
# calls (keys in its own order) and takes the run's lease once; prints what it got.
TOGETHER = r"""
import json, sys, time
from proofloop.models.base import Completion
from proofloop.models.cache import CallRecord
from proofloop.store import Store, RunBusy
target, start, me = sys.argv[1], float(sys.argv[2]), sys.argv[3]
while time.time() < start:
    time.sleep(0.001)
store = Store(target)
run = store.create_run("prove", {"by": me}, run_id="r-shared")
pid = store.add_problem(run, "Show it.", name="p1")
keys = [f"k{i}" for i in range(20)]
keys = keys if int(me) % 2 else keys[::-1]
store.put_many([CallRecord(key=k, namespace=run, model="m", provider="sim", sampling={}, index=0,
                           messages=[{"role": "user", "content": "prove"}], completion=Completion(text=me))
                for k in keys])
store.add_proof(run, "k0", problem_id=pid, raw=me, status="ok")
try:
    store.acquire_run(run, owner=f"host:{me}", ttl_s=600)
    won = True
except RunBusy:
    won = False
print(json.dumps({"problem": pid, "won": won}))
"""


def test_processes_opening_and_writing_one_new_database_at_once(postgres, tmp_path):
    url = postgres.new_database()
    script = tmp_path / "together.py"
    script.write_text(TOGETHER)
    start = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, str(script), url, start, str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert len({r["problem"] for r in results}) == 1  # one problem row, the same id for all
    assert sorted(r["won"] for r in results) == [False, False, False, True]  # one lease holder
    with Store(url) as store:
        calls = store.calls("r-shared")
        assert sorted(c.key for c in calls) == sorted(f"k{i}" for i in range(20))  # each once
        assert len(store.problems("r-shared")) == 1 and len(store.proofs("r-shared")) == 1
        assert store.get_run("r-shared").config["by"] in {"0", "1", "2", "3"}


def test_the_cli_takes_a_url(postgres, tmp_path):
    url = postgres.new_database()
    env = cli_env(tmp_path / "unused.db")
    assert run_json(["runs", "list", "--db", url], env) == []
    env["PROOFLOOP_DB"] = url
    assert run_json(["runs", "list"], env) == []
    assert not (tmp_path / "unused.db").exists()

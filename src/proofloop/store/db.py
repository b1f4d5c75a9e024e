"""The run store: runs, problems, proofs, analyses, lineage and every LLM call, in one SQLite
file per project directory (the embedded default) or in a PostgreSQL database shared by many
processes and machines (store/backends.py says how each is opened).

Every `add_*` is idempotent: a resumed run re-records everything it replays from the call
cache, and re-adding an id updates the row in place (never a duplicate, never an error): an
INSERT ... ON CONFLICT on both back ends, so two processes adding the same record at once
cannot clash either. Queries return plain pydantic records (store/schema.py), never live ORM
objects.

`Store` is also the model layer's call cache (`get`, `put_many`, `record_failure`: one row
per failed request attempt, with all its sample keys). A call is stored, and committed, before
`put_many` returns, so nothing is used that a crash could lose.

Opening an SQLite store checks the file first (store/checks.py): a path that is not a usable
store (not a database, truncated or damaged, read-only file or folder, a folder, under a file)
raises StoreError, a UserInputError with one line; so does a write lock held by another
process beyond `busy_timeout_s` (after `on_wait` was told once, at `wait_notice_s`). A
PostgreSQL server that cannot be reached raises StoreError too. Opening brings the schema up to
date (store/migrate.py: Alembic, for both).

Runs are held by a lease while worked on (acquire_run / renew_lease / release_run; the
handle and heartbeat are in store/lease.py): a run stored as running whose lease expired reads
as `interrupted`. Each model output is stored once, in its call row (store/derive.py).

    >>> import tempfile, pathlib
    >>> store = Store(pathlib.Path(tempfile.mkdtemp()) / "p.db")
    >>> run = store.create_run("prove", {"strategy": "single"})
    >>> pid = store.add_problem(run, "Prove that 1 + 1 = 2.")
    >>> store.add_proof(run, "k1", problem_id=pid, raw="## Solution ...", status="ok", self_score=1.0)
    >>> [p.self_score for p in store.proofs(run)]
    [1.0]
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, case, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from proofloop.models.base import Completion
from proofloop.models.cache import CallRecord
from proofloop.store.backends import SqliteWaits, Target, open_postgres, open_sqlite, parse_target
from proofloop.store.checks import QUICK_CHECK_MAX_BYTES, RunBusy, StoreError
from proofloop.store.derive import derived_fields, stored_fields
from proofloop.store.lease import Lease, owner_is_gone
from proofloop.store.migrate import HEAD, upgrade
from proofloop.store.schema import (CallRow, Failure, FailureRow, Grade, GradeRow, LineageRow, MetaVerification,
                                    MetaVerificationRow, Problem, ProblemRow, Proof, ProofRow, PromptRow,
                                    RefinedFromRow, Run, RunRow, RunStatus, RunUsage, UsageTotals, Verification,
                                    VerificationRow, WorkItem, WorkRow, utcnow)

BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another writer's lock before failing
OPEN_ATTEMPTS = 4  # a store read as malformed is looked at this many times before it is called damaged
WAIT_NOTICE_S = 2.0  # after this long waiting for the lock, on_wait is told once
INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}  # both have ON CONFLICT


def _sha(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


def messages_sha(messages: Sequence[dict[str, str]]) -> str:
    """Content hash of a message list (key order inside a message does not matter)."""
    return _sha(json.dumps(list(messages), sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def _value(x: Any) -> Any:
    return x.value if isinstance(x, Enum) else x


def _aware(dt: datetime) -> datetime:
    # SQLite keeps naive timestamps; every timestamp we write is UTC.
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _plain(row: Any, model: type) -> Any:
    data = {name: getattr(row, name) for name in model.model_fields if hasattr(row, name)}
    if isinstance(row, FailureRow) and row.keys is None:  # a v1 row: one row per key
        data["keys"] = [row.key]
    for name in ("created_at", "updated_at"):
        if isinstance(data.get(name), float):  # epoch seconds (the call tables)
            data[name] = datetime.fromtimestamp(data[name], timezone.utc)
        elif name in data:
            data[name] = _aware(data[name])
    return model(**data)


@dataclass
class RunRecords:
    """A run and some of its records, read together (Store.run_records)."""

    run: Run
    problems: list[Problem] = field(default_factory=list)
    proofs: list[Proof] = field(default_factory=list)
    verifications: list[Verification] = field(default_factory=list)
    grades: list[Grade] = field(default_factory=list)
    work: dict[str, int] | None = None  # as work_status, when asked


class Store:
    """A run store over one SQLite file or one PostgreSQL database. Open one per process (do
    not share across fork)."""

    def __init__(self, target: str | Path, *, on_wait: Callable[[str], None] | None = None,
                 busy_timeout_s: float = BUSY_TIMEOUT_S, wait_notice_s: float = WAIT_NOTICE_S):
        """Open (creating when needed) the store at `target`: a file path, ":memory:" (a private
        in-process store for doctests and throwaway use) or a SQLAlchemy URL
        (postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE, or sqlite:///FILE).

        A path that cannot hold a store raises StoreError with one line (see store/checks.py).
        On SQLite, a write that waits for another process's write lock longer than
        `wait_notice_s` calls `on_wait(message)` once (say, to print "waiting for ..."); after
        `busy_timeout_s` in all it raises StoreError ("the run store X is locked by another
        process"). On PostgreSQL `busy_timeout_s` bounds the wait for a row lock."""
        self.target: Target = parse_target(target)
        self.dialect, self.where = self.target.dialect, self.target.where
        self.path = self.target.path  # the SQLite file; None in memory and on PostgreSQL
        if self.dialect == "postgresql":
            self.engine = open_postgres(self.target, busy_timeout_s)
            self._writer = self.engine
        else:
            waits = SqliteWaits(self.where, on_wait or (lambda message: None), busy_timeout_s,
                                min(wait_notice_s, busy_timeout_s))
            self.engine, release = open_sqlite(self.target, waits)
            self._writer = self.engine.execution_options(immediate=True)
            self._finalizer = weakref.finalize(self, release)
        self._insert = INSERTS[self.dialect]
        self._statements: dict[tuple[Any, ...], Any] = {}  # built upsert statements (_upsert_statement)
        self._last_stamp = datetime.min.replace(tzinfo=timezone.utc)  # the last created_at given to a record (_stamp)
        self._read_hooks: list[Callable[[], Any]] = []  # before_read: each gives the hook or None
        self._hooks_lock = threading.Lock()
        for attempt in range(OPEN_ATTEMPTS):
            try:
                self._create_schema()
                break
            except DBAPIError as e:  # what the header check cannot see: damage inside the file
                # Opened while another process checkpoints its log, a sound store can read as
                # malformed for an instant: look again before calling it damaged.
                if "malformed" in str(e.orig) and attempt + 1 < OPEN_ATTEMPTS:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                self.close()
                verb = "connect to" if self.dialect == "postgresql" else "open"
                raise StoreError(f"cannot {verb} the run store {self.where}: {_one_line([e.orig])}") from None
            except BaseException:
                self.close()
                raise

    @staticmethod
    def default_path() -> Path | str:
        """$PROOFLOOP_DB (a path, or a URL kept as it is), else ./.proofloop/proofloop.db (the
        folder is created on open)."""
        given = os.environ.get("PROOFLOOP_DB")
        if given and "://" in given:
            return given
        return Path(given or Path.cwd() / ".proofloop" / "proofloop.db")

    def close(self) -> None:
        self.engine.dispose()
        if self.dialect == "sqlite" and self._finalizer.alive:
            self._finalizer()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_schema(self) -> None:
        # Inside one write transaction, so two processes opening a new store do not race.
        with self._writer.begin() as conn:
            if self.path is not None and self.path.stat().st_size <= QUICK_CHECK_MAX_BYTES:
                problems = conn.exec_driver_sql("PRAGMA quick_check(3)").scalars().all()
                if problems != ["ok"]:
                    raise StoreError(f"the run store {self.where} is damaged ({_one_line(problems)}); "
                                     f"restore a copy or start a new store")
            upgrade(conn, f"the run store {self.where}")

    @contextmanager
    def _write(self, *, records: bool = True) -> Iterator[Session]:
        # records=False: a write of calls or of records themselves, which need not wait for
        # held records; any other write (a status, a finished work item) comes after them
        if records:
            self._run_read_hooks()
        with Session(self._writer) as s, s.begin():
            yield s

    def before_read(self, hook: Callable[[], None]) -> None:
        """Call `hook` before every read of this Store and every write other than of calls and
        records: a writer that holds records back to batch them (runs.context.StoreRecorder)
        writes them first, so reads see them and a status or finished work item follows them. A bound
        method is held weakly: a long-lived Store (the service's) does not keep every run's
        recorder alive."""
        with self._hooks_lock:
            self._read_hooks.append(weakref.WeakMethod(hook) if hasattr(hook, "__self__") else lambda: hook)

    @contextmanager
    def _read(self, *, records: bool = True) -> Iterator[Session]:
        # records=False: a read of calls only, which nobody holds back
        if records:
            self._run_read_hooks()
        with Session(self.engine) as s, s.begin():  # one snapshot for all queries inside
            yield s

    def _run_read_hooks(self) -> None:
        if self._read_hooks:
            hooks = [ref() for ref in self._read_hooks]
            if None in hooks:  # a recorder that is gone
                with self._hooks_lock:
                    self._read_hooks = [ref for ref in self._read_hooks if ref() is not None]
            for hook in hooks:
                if hook is not None:
                    hook()

    def _upsert(self, s: Session, table: Any, values: dict[str, Any] | list[dict[str, Any]], keys: list[str]) -> None:
        """Insert, or update every non-key column in place (created_at keeps its first value).
        A list of rows (all with the same columns) goes in one executemany."""
        rows = [values] if isinstance(values, dict) else values
        if rows:
            s.connection().execute(self._upsert_statement(table, tuple(rows[0]), tuple(keys)), rows)

    def _upsert_statement(self, table: Any, columns: tuple[str, ...], keys: tuple[str, ...]) -> Any:
        # Building an ON CONFLICT statement costs about as much as running it (SQLAlchemy
        # derives the `excluded` columns each time): build each shape once per store.
        shape = (table, columns, keys)
        if shape not in self._statements:
            stmt = self._insert(table)
            changes = {k: stmt.excluded[k] for k in columns if k not in keys and k != "created_at"}
            self._statements[shape] = (stmt.on_conflict_do_update(index_elements=list(keys), set_=changes)
                                       if changes else stmt.on_conflict_do_nothing())
        return self._statements[shape]

    def _built(self, name: str, build: Callable[[], Any]) -> Any:
        """The statement `build` makes, built once per store (its values are bound when it runs):
        building a statement costs SQLAlchemy more than running it on a small run."""
        if name not in self._statements:
            self._statements[name] = build()
        return self._statements[name]

    def _insert_new(self, table: Any) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING for `table`, built once per store."""
        if table not in self._statements:
            self._statements[table] = self._insert(table).on_conflict_do_nothing()
        return self._statements[table]

    # ---- runs --------------------------------------------------------------------------------

    def create_run(self, kind: str, config: dict[str, Any] | None = None, *, run_id: str | None = None,
                   problems: Sequence[tuple[str, dict[str, Any] | None, str | None]] = (),
                   records: Callable[[list[int]], dict[str, Any]] | None = None) -> str:
        """A new run with status running. With `run_id` given and already present, a no-op.
        `problems` ((text, meta, name), as add_problems) and `records` (given their ids, the
        keyword arguments of add_records) are stored in the same transaction: nobody sees the
        run without its inputs, and a small run costs one write, not three."""
        for _ in range(10):
            rid = run_id or f"r-{utcnow():%Y%m%d}-{secrets.token_hex(3)}"
            now = utcnow()
            with self._write() as s:
                if not (s.connection().execute(self._insert_new(RunRow), dict(
                        id=rid, kind=kind, config=dict(config or {}), status=RunStatus.RUNNING.value, created_at=now,
                        updated_at=now)).rowcount or run_id):
                    continue
                pids = self._add_problems(s, rid, problems)
                if records is not None:
                    self._add_records(s, rid, **self._record_rows(rid, **records(pids)))
                return rid
        raise RuntimeError("could not pick a free run id")  # 10 collisions in 16M: not chance

    def get_run(self, run_id: str) -> Run | None:
        """The run; status `interrupted` when it says running but its lease has expired."""
        with self._read() as s:
            row = self._run_by_id(s, run_id)
            return _run(row, time.time()) if row else None

    def _run_by_id(self, s: Session, run_id: str) -> Any:
        q = self._built("run by id", lambda: select(*RunRow.__table__.c).where(RunRow.id == bindparam("id")))
        return s.connection().execute(q, {"id": run_id}).first()

    def run_records(self, run_id: str, *, problems: bool = False, proofs: bool = False,
                    verifications: bool = False, grades: bool = False, lineage: bool = True,
                    work: bool = False) -> RunRecords | None:
        """The run (as get_run) and the records asked for, in one read: one snapshot, so they
        agree with each other and with the run's status. `lineage=False` leaves the proofs'
        parents and shown analyses empty (two queries fewer). None for an unknown run."""
        with self._read() as s:
            row = self._run_by_id(s, run_id)
            if row is None:
                return None
            out = RunRecords(_run(row, time.time()))
            if problems:
                out.problems = self._problems(s, run_id)
            if proofs:
                out.proofs = self._proofs(s, run_id, None, lineage=lineage)
            if verifications:
                out.verifications = self._records(s, VerificationRow, Verification, "verification",
                                                  {"run_id": run_id})
            if grades:
                out.grades = self._records(s, GradeRow, Grade, None, {"run_id": run_id})
            if work:
                out.work = self._work_status(s, run_id)
            return out

    def list_runs(self, limit: int = 50, kind: str | None = None) -> list[Run]:
        """Newest first (statuses computed as in get_run)."""
        q = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(limit)
        if kind:
            q = q.where(RunRow.kind == kind)
        now = time.time()
        with self._read() as s:
            return [_run(r, now) for r in s.scalars(q)]

    # ---- leases (store/lease.py) -------------------------------------------------------------

    def acquire_run(self, run_id: str, owner: str, ttl_s: float) -> Lease:
        """Take the run's lease for `ttl_s` seconds and set it running. One compare-and-set in
        one IMMEDIATE transaction: it succeeds when nobody holds the lease, `owner` already does,
        or the holder's lease has expired; else RunBusy. KeyError for an unknown run."""
        now = time.time()
        q = self._built("take lease", lambda: update(RunRow.__table__).where(
            RunRow.id == bindparam("run_id"),
            (RunRow.owner.is_(None)) | (RunRow.owner == bindparam("owner")) | (RunRow.expires_at < bindparam("now")))
            .values(owner=bindparam("owner"), expires_at=bindparam("expires"), status=RunStatus.RUNNING.value,
                    updated_at=bindparam("updated")))
        with self._write() as s:
            taken = s.connection().execute(q, {"run_id": run_id, "owner": owner, "now": now, "expires": now + ttl_s,
                                               "updated": utcnow()}).rowcount
            if not taken:
                row = self._run_row(s, run_id)
                if owner_is_gone(row.owner):  # its process died on this host: no need to wait
                    s.execute(update(RunRow).where(RunRow.id == run_id, RunRow.owner == row.owner)
                              .values(owner=owner, expires_at=now + ttl_s, status=RunStatus.RUNNING.value,
                                      updated_at=utcnow()))
                    return Lease(self, run_id, owner, ttl_s, now + ttl_s)
                raise RunBusy(f"run {run_id} is in use by {row.owner} (its lease runs "
                              f"{max(0.0, (row.expires_at or now) - now):.0f} s more); wait for it or stop it")
        return Lease(self, run_id, owner, ttl_s, now + ttl_s)

    def renew_lease(self, run_id: str, owner: str, ttl_s: float) -> float:
        """Extend `owner`'s lease to now + ttl_s; returns the new expiry. RunBusy when lost."""
        expires = time.time() + ttl_s
        with self._write(records=False) as s:  # a heartbeat (another thread)
            if not s.execute(update(RunRow).where(RunRow.id == run_id, RunRow.owner == owner)
                             .values(expires_at=expires)).rowcount:
                raise RunBusy(f"run {run_id}: {owner} lost its lease (it expired and another process took the run)")
        return expires

    def release_run(self, run_id: str, owner: str, status: RunStatus | str,
                    summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        """Set the final status (as set_run_status) and drop `owner`'s lease, in one
        transaction. RunBusy when `owner` no longer holds it (nothing is changed then)."""
        values: dict[str, Any] = dict(status=RunStatus(status).value, owner=None, expires_at=None,
                                      updated_at=utcnow())
        values.update({k: v for k, v in (("summary", summary), ("error", error)) if v is not None})
        q = self._built(f"release lease, setting {sorted(values)}", lambda: update(RunRow.__table__).where(
            RunRow.id == bindparam("run_id"), RunRow.owner == bindparam("holder"))
            .values({k: bindparam(k) for k in values}))
        with self._write() as s:
            if not s.connection().execute(q, {"run_id": run_id, "holder": owner, **values}).rowcount:
                raise RunBusy(f"run {run_id}: {owner} no longer holds its lease; its status was not changed")

    # ---- work items: one run's work shared by several worker processes --------------------

    def add_work(self, run_id: str, items: Iterable[str]) -> None:
        """Make `items` claimable units of the run's work (adding one again is a no-op)."""
        rows = [{"run_id": run_id, "item": item} for item in items]
        if rows:
            with self._write() as s:
                s.execute(self._insert(WorkRow).on_conflict_do_nothing(), rows)

    def claim_work(self, run_id: str, owner: str, ttl_s: float, limit: int = 1) -> list[str]:
        """Up to `limit` unfinished items, in item order, that nobody holds, whose claim
        expired, or that `owner` holds already; now held by `owner` for `ttl_s` seconds. On
        PostgreSQL the rows are picked with SELECT ... FOR UPDATE SKIP LOCKED, so workers
        claiming at the same moment neither wait for each other nor get the same item (on
        SQLite the IMMEDIATE transaction serialises them)."""
        now = time.time()
        with self._write() as s:
            items = list(s.scalars(
                select(WorkRow.item).where(WorkRow.run_id == run_id, WorkRow.done_by.is_(None),
                                           WorkRow.owner.is_(None) | (WorkRow.expires_at < now)
                                           | (WorkRow.owner == owner))
                .order_by(WorkRow.item).limit(limit).with_for_update(skip_locked=True)))
            if items:
                s.execute(update(WorkRow).where(WorkRow.run_id == run_id, WorkRow.item.in_(items))
                          .values(owner=owner, expires_at=now + ttl_s,  # an item it holds already is not claimed again
                                  claims=case((WorkRow.owner == owner, WorkRow.claims), else_=WorkRow.claims + 1)))
        return items

    def renew_work(self, run_id: str, owner: str, ttl_s: float) -> int:
        """Extend `owner`'s claims on unfinished items to now + ttl_s; how many it holds."""
        with self._write(records=False) as s:  # a heartbeat (another thread)
            return s.execute(update(WorkRow).where(WorkRow.run_id == run_id, WorkRow.owner == owner,
                                                   WorkRow.done_by.is_(None))
                             .values(expires_at=time.time() + ttl_s)).rowcount

    def finish_work(self, run_id: str, item: str, owner: str) -> bool:
        """Mark `item` done by `owner`. False, and nothing changed, when `owner` no longer
        holds it (its claim expired and another worker took it) or it is done already."""
        with self._write() as s:
            return bool(s.execute(update(WorkRow).where(WorkRow.run_id == run_id, WorkRow.item == item,
                                                        WorkRow.owner == owner, WorkRow.done_by.is_(None))
                                  .values(done_by=owner, expires_at=None)).rowcount)

    def work_status(self, run_id: str) -> dict[str, int]:
        """How many of the run's items are done, held (a live claim) and free."""
        with self._read() as s:
            return self._work_status(s, run_id)

    def _work_status(self, s: Session, run_id: str) -> dict[str, int]:
        now, out = time.time(), {"done": 0, "held": 0, "free": 0}
        q = self._built("work of run", lambda: select(WorkRow.done_by, WorkRow.owner, WorkRow.expires_at)
                        .where(WorkRow.run_id == bindparam("run_id")))
        for done_by, owner, expires_at in s.connection().execute(q, {"run_id": run_id}):
            state = "done" if done_by else "held" if owner and (expires_at or 0) >= now else "free"
            out[state] += 1
        return out

    def work_items(self, run_id: str) -> list[WorkItem]:
        """Every work item of the run, in item order (runs/workers.py `work_progress` sums them up)."""
        with self._read() as s:
            return [_plain(row, WorkItem) for row in s.scalars(select(WorkRow).where(WorkRow.run_id == run_id)
                                                              .order_by(WorkRow.item))]

    def _run_row(self, s: Session, run_id: str) -> RunRow:
        """The run's row, locked until the transaction ends (on PostgreSQL; on SQLite the
        IMMEDIATE transaction holds the whole file), so a read-modify-write cannot lose another's."""
        row = s.get(RunRow, run_id, with_for_update=True)
        if row is None:
            raise KeyError(f"no run {run_id!r} in {self.where}")
        return row

    def set_run_status(self, run_id: str, status: RunStatus | str, summary: dict[str, Any] | None = None,
                       error: str | None = None) -> None:
        """Set the status; `summary` and `error` replace the stored ones when given."""
        status = RunStatus(status)
        with self._write() as s:
            row = self._run_row(s, run_id)
            row.status, row.updated_at = status.value, utcnow()
            if summary is not None:
                row.summary = summary
            if error is not None:
                row.error = error

    def update_run_config(self, run_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge `changes` into the config's top level; returns the new config."""
        with self._write() as s:
            row = self._run_row(s, run_id)
            row.config = {**row.config, **changes}  # a new dict, so the JSON column sees a change
            row.updated_at = utcnow()
            return dict(row.config)

    # ---- records -----------------------------------------------------------------------------

    def add_problem(self, run_id: str, text: str, meta: dict[str, Any] | None = None, *,
                    name: str | None = None) -> int:
        """The problem's id; the same text in the same run gives the same id (name/meta update
        when given)."""
        sha = _sha(text)
        with self._write() as s:
            # Insert when new (two processes adding it at once get one row), then lock the row.
            s.execute(self._insert(ProblemRow).values(run_id=run_id, text_sha=sha, text=text, name=name,
                                                      meta=dict(meta or {}), created_at=utcnow())
                      .on_conflict_do_nothing(index_elements=["run_id", "text_sha"]))
            row = s.scalars(select(ProblemRow).where(ProblemRow.run_id == run_id, ProblemRow.text_sha == sha)
                            .with_for_update()).one()
            row.name = name if name is not None else row.name
            row.meta = dict(meta) if meta is not None else row.meta
            return row.id

    def add_problems(self, run_id: str, problems: Sequence[tuple[str, dict[str, Any] | None, str | None]]
                     ) -> list[int]:
        """add_problem for many (text, meta, name) in one transaction; their ids, in order."""
        if not problems:
            return []
        with self._write() as s:
            return self._add_problems(s, run_id, problems)

    def _add_problems(self, s: Session, run_id: str,
                      problems: Sequence[tuple[str, dict[str, Any] | None, str | None]]) -> list[int]:
        rows = {_sha(text): (text, meta, name) for text, meta, name in problems}  # the last of a text wins
        if not rows:
            return []
        now = utcnow()
        # Plain statements, each built once, rather than ORM objects: a batch of 64 pairs spent
        # more on the ORM's bookkeeping here than on anything else it stored.
        conn = s.connection()
        conn.execute(self._insert_new_problem(), [
            dict(run_id=run_id, text_sha=sha, text=text, name=name, meta=dict(meta or {}), created_at=now)
            for sha, (text, meta, name) in rows.items()])
        shas, found = sorted(rows), {}
        for i in range(0, len(shas), 500):  # SQLite caps bound parameters per statement
            found.update((sha, (pid, name, meta)) for sha, pid, name, meta in conn.execute(
                select(ProblemRow.text_sha, ProblemRow.id, ProblemRow.name, ProblemRow.meta)
                .where(ProblemRow.run_id == run_id, ProblemRow.text_sha.in_(shas[i:i + 500]))
                .order_by(ProblemRow.text_sha).with_for_update()))
        changed = []
        for sha, (_, meta, name) in rows.items():  # name and meta update when given
            pid, old_name, old_meta = found[sha]
            new_name, new_meta = old_name if name is None else name, old_meta if meta is None else dict(meta)
            if (new_name, new_meta) != (old_name, old_meta):
                changed.append({"pid": pid, "new_name": new_name, "new_meta": new_meta})
        if changed:
            conn.execute(update(ProblemRow).where(ProblemRow.id == bindparam("pid"))
                         .values(name=bindparam("new_name"), meta=bindparam("new_meta")), changed)
        return [found[_sha(text)][0] for text, _, _ in problems]

    def _insert_new_problem(self) -> Any:
        """INSERT ... ON CONFLICT (run_id, text_sha) DO NOTHING into problems, built once per store."""
        if (ProblemRow, "new") not in self._statements:
            self._statements[(ProblemRow, "new")] = self._insert(ProblemRow).on_conflict_do_nothing(
                index_elements=["run_id", "text_sha"])
        return self._statements[(ProblemRow, "new")]

    def problems(self, run_id: str) -> list[Problem]:
        with self._read() as s:
            return self._problems(s, run_id)

    def _problems(self, s: Session, run_id: str) -> list[Problem]:
        q = self._built("problems of run", lambda: select(*ProblemRow.__table__.c)
                        .where(ProblemRow.run_id == bindparam("run_id")).order_by(ProblemRow.id))
        return [_plain(r, Problem) for r in s.connection().execute(q, {"run_id": run_id})]

    def add_proof(self, run_id: str, id: str, *, problem_id: int, raw: str, status: str,
                  reasoning: str | None = None, solution: str | None = None,
                  self_evaluation: str | None = None, self_score: float | None = None,
                  cause: str | None = None, finish_reason: str | None = None, round: int | None = None,
                  thread: int | None = None, attempt: int | None = None, meta: dict[str, Any] | None = None,
                  parents: Iterable[str] = (), refined_from_analyses: Iterable[str] = ()) -> None:
        """Record a generator output, with its lineage in the same transaction (see
        link_lineage). `**parsed_proof.model_dump()` fits the parse fields."""
        self.add_records(run_id, proofs=[dict(
            id=id, problem_id=problem_id, raw=raw, status=status, reasoning=reasoning, solution=solution,
            self_evaluation=self_evaluation, self_score=self_score, cause=cause, finish_reason=finish_reason,
            round=round, thread=thread, attempt=attempt, meta=meta, parents=parents,
            refined_from_analyses=refined_from_analyses)])

    def merge_proof_meta(self, run_id: str, proof_id: str, changes: dict[str, Any]) -> None:
        """Merge `changes` into a recorded proof's meta (a pack's evidence for it, issue 12)."""
        with self._write() as s:
            row = s.get(ProofRow, (run_id, proof_id))
            if row is None:
                raise KeyError(f"run {run_id} has no proof {proof_id!r}")
            row.meta = {**(row.meta or {}), **changes}  # a new dict, so the JSON column sees a change

    def add_verification(self, run_id: str, id: str, *, proof_id: str, raw: str, status: str,
                         reasoning: str | None = None, analysis: str | None = None,
                         score: float | None = None, cause: str | None = None,
                         issues: Sequence[str] = (), meta: dict[str, Any] | None = None) -> None:
        """Record a verifier analysis of a proof (the proof must be recorded first).
        `**parsed_analysis.model_dump()` fits the parse fields."""
        self.add_records(run_id, verifications=[dict(
            id=id, proof_id=proof_id, raw=raw, status=status, reasoning=reasoning, analysis=analysis, score=score,
            cause=cause, issues=issues, meta=meta)])

    def add_meta_verification(self, run_id: str, id: str, *, verification_id: str,
                              raw: str, status: str, reasoning: str | None = None,
                              analysis: str | None = None, rating: float | None = None,
                              cause: str | None = None, meta: dict[str, Any] | None = None) -> None:
        """Record a meta-verifier rating of an analysis (the analysis must be recorded first)."""
        self.add_records(run_id, metas=[dict(
            id=id, verification_id=verification_id, raw=raw, status=status, reasoning=reasoning,
            analysis=analysis, rating=rating, cause=cause, meta=meta)])

    def add_records(self, run_id: str, *, proofs: Sequence[dict[str, Any]] = (),
                    verifications: Sequence[dict[str, Any]] = (), metas: Sequence[dict[str, Any]] = (),
                    grades: Sequence[dict[str, Any]] = ()) -> None:
        """Record many proofs, analyses, meta-verifications and grades in ONE transaction:
        proofs first, then analyses, ratings and grades, so a record may point at one earlier
        in the same batch. Each item holds the keyword arguments of add_proof /
        add_verification / add_meta_verification / add_grade (run_id aside); re-adding an id
        updates it, as they do."""
        rows = self._record_rows(run_id, proofs=proofs, verifications=verifications, metas=metas, grades=grades)
        if not any(rows.values()):
            return
        # A grade may be of a proof a recorder still holds back: those are written first
        # (records=True), as for any write other than of calls and records.
        with self._write(records=bool(rows["grade_rows"])) as s:
            self._add_records(s, run_id, **rows)

    def _record_rows(self, run_id: str, *, proofs: Sequence[dict[str, Any]] = (),
                     verifications: Sequence[dict[str, Any]] = (), metas: Sequence[dict[str, Any]] = (),
                     grades: Sequence[dict[str, Any]] = ()) -> dict[str, list[dict[str, Any]]]:
        """add_records' arguments as the rows to store (one per id), the proofs' lineage kept."""
        return {"proofs": list(proofs),
                "proof_rows": _last_by_id([_proof_values(run_id, self._stamp(), p) for p in proofs]),
                "verification_rows": _last_by_id([_verification_values(run_id, self._stamp(), v)
                                                  for v in verifications]),
                "meta_rows": _last_by_id([_meta_values(run_id, self._stamp(), m) for m in metas]),
                "grade_rows": _last_by_id([_grade_values(run_id, self._stamp(), g) for g in grades])}

    def _add_records(self, s: Session, run_id: str, *, proofs: Sequence[dict[str, Any]],
                     proof_rows: list[dict[str, Any]], verification_rows: list[dict[str, Any]],
                     meta_rows: list[dict[str, Any]], grade_rows: list[dict[str, Any]]) -> None:
        calls = self._calls_of(s, [r["id"] for r in (*proof_rows, *verification_rows, *meta_rows)])
        for kind, table, rows in (("proof", ProofRow, proof_rows), ("verification", VerificationRow,
                                  verification_rows), ("meta", MetaVerificationRow, meta_rows)):
            self._upsert(s, table, [stored_fields(kind, r, calls.get(r["id"])) for r in rows], ["run_id", "id"])
        for p in proofs:
            self._link(s, run_id, p["id"], p.get("parents") or (), p.get("refined_from_analyses") or ())
        self._upsert(s, GradeRow, grade_rows, ["run_id", "id"])

    def _stamp(self) -> datetime:
        """Now, or just after the last stamp given: records are listed by (created_at, id), so
        the records of one batch keep the order they were handed over in."""
        self._last_stamp = max(utcnow(), self._last_stamp + timedelta(microseconds=1))
        return self._last_stamp

    def _calls_of(self, s: Session, keys: list[str]) -> dict[str, tuple[str, str | None, str | None]]:
        """(text, reasoning, finish_reason) of the stored calls among `keys`, by key."""
        out: dict[str, tuple[str, str | None, str | None]] = {}
        if not keys:
            return out
        q = self._built("call texts", lambda: select(CallRow.key, CallRow.text, CallRow.reasoning, CallRow.finish_reason)
                        .where(CallRow.key.in_(bindparam("keys", expanding=True))))
        for i in range(0, len(keys), 500):  # SQLite caps bound parameters per statement
            for key, *call in s.connection().execute(q, {"keys": keys[i:i + 500]}):
                out[key] = tuple(call)
        return out

    def link_lineage(self, run_id: str, proof_id: str, parents: Iterable[str] = (),
                     analyses: Iterable[str] = ()) -> None:
        """Record that `proof_id` was refined from the proofs `parents`, shown the verification
        ids `analyses` (all recorded already). Adds links; existing links stay."""
        with self._write() as s:
            self._link(s, run_id, proof_id, parents, analyses)

    def _link(self, s: Session, run_id: str, proof_id: str, parents: Iterable[str], analyses: Iterable[str]) -> None:
        self._upsert(s, LineageRow, [dict(run_id=run_id, proof_id=proof_id, parent_proof_id=parent)
                                     for parent in parents], ["run_id", "proof_id", "parent_proof_id"])
        self._upsert(s, RefinedFromRow, [dict(run_id=run_id, proof_id=proof_id, verification_id=vid)
                                         for vid in analyses], ["run_id", "proof_id", "verification_id"])

    # ---- record queries ----------------------------------------------------------------------

    def proofs(self, run_id: str, problem_id: int | None = None) -> list[Proof]:
        """The run's proofs (or one problem's) in the order first recorded, with their lineage."""
        with self._read() as s:
            return self._proofs(s, run_id, problem_id)

    def _proofs(self, s: Session, run_id: str, problem_id: int | None, *, lineage: bool = True) -> list[Proof]:
        scope = {"run_id": run_id, "problem_id": problem_id}
        if not lineage:
            return self._records(s, ProofRow, Proof, "proof", scope)
        links = {"run_id": run_id, **({} if problem_id is None else {"problem_id": problem_id})}
        parents: dict[str, list[str]] = {}
        for child, parent in s.connection().execute(self._links_statement(LineageRow, problem_id is None), links):
            parents.setdefault(child, []).append(parent)
        shown: dict[str, list[str]] = {}
        for child, vid in s.connection().execute(self._links_statement(RefinedFromRow, problem_id is None), links):
            shown.setdefault(child, []).append(vid)
        return [p.model_copy(update={"parents": parents.get(p.id, []), "refined_from_analyses": shown.get(p.id, [])})
                for p in self._records(s, ProofRow, Proof, "proof", scope)]

    def _links_statement(self, table: Any, whole_run: bool) -> Any:
        """(proof id, linked id) of the run's proofs (or one problem's: bound `problem_id`) in
        `table` (LineageRow: parents; RefinedFromRow: analyses shown), built once."""
        def build() -> Any:
            mine = select(ProofRow.id).where(ProofRow.run_id == bindparam("run_id"))
            if not whole_run:
                mine = mine.where(ProofRow.problem_id == bindparam("problem_id"))
            linked = table.parent_proof_id if table is LineageRow else table.verification_id
            return (select(table.proof_id, linked).where(table.run_id == bindparam("run_id"), table.proof_id.in_(mine))
                    .order_by(linked))
        return self._built(f"{table.__tablename__} of {'run' if whole_run else 'problem'}", build)

    def _records(self, s: Session, row: type, record: type, kind: str | None, where: dict[str, Any],
                 *joins: Any) -> list:
        """Records of `row` matching `where` (None values ignored), in recorded order, with
        the text of rows stored from their call re-derived (store/derive.py)."""
        given = {k: v for k, v in where.items() if v is not None}
        shape = ("records", row, kind, tuple(given))
        q = None if joins else self._statements.get(shape)
        if q is None:
            q = self._records_statement(row, kind, tuple(given), joins)
            if not joins:
                self._statements[shape] = q
        out = []
        for found in s.connection().execute(q, {f"w_{k}": v for k, v in given.items()}):
            plain = _plain(found, record)
            if kind is not None and found.from_call and found.call_text is not None:
                plain = plain.model_copy(update=derived_fields(kind, found.call_text, found.call_reasoning,
                                                               found.call_finish_reason))
            out.append(plain)
        return out

    @staticmethod
    def _records_statement(row: type, kind: str | None, where: tuple[str, ...], joins: Sequence[Any]) -> Any:
        # Columns, not ORM objects, and built once per shape (the values are bound): building
        # a statement and loading ORM objects cost more than running the query on a small run.
        table = row.__table__  # type: ignore[attr-defined]
        q = select(*table.c) if kind is None else (
            select(*table.c, CallRow.text.label("call_text"), CallRow.reasoning.label("call_reasoning"),
                   CallRow.finish_reason.label("call_finish_reason"))
            .outerjoin(CallRow, (CallRow.key == table.c.id) & table.c.from_call))
        for target, on in joins:
            q = q.join(target, on)
        return q.where(*[table.c[k] == bindparam(f"w_{k}") for k in where]).order_by(table.c.created_at, table.c.id)

    def _rows(self, row: type, record: type, scope: dict[str, Any], *joins: Any, **also: Any) -> list:
        """Records of `row` matching `scope` (at least one given) and `also`, in recorded order."""
        if not any(v is not None for v in scope.values()):
            raise ValueError(f"give at least one of {', '.join(scope)}")
        kind = {VerificationRow: "verification", MetaVerificationRow: "meta"}.get(row)
        with self._read() as s:
            return self._records(s, row, record, kind, {**scope, **also}, *joins)

    def verifications(self, run_id: str | None = None, proof_id: str | None = None, *,
                      problem_id: int | None = None) -> list[Verification]:
        """Analyses of one proof, or of a whole run (give at least one of the two), optionally
        only those of the proofs of one problem."""
        joins = [] if problem_id is None else [(ProofRow, (ProofRow.run_id == VerificationRow.run_id)
                                                & (ProofRow.id == VerificationRow.proof_id)
                                                & (ProofRow.problem_id == problem_id))]
        return self._rows(VerificationRow, Verification, {"run_id": run_id, "proof_id": proof_id}, *joins)

    def meta_verifications(self, run_id: str | None = None, verification_id: str | None = None, *,
                           problem_id: int | None = None) -> list[MetaVerification]:
        """Meta-verifications of one analysis, or of a whole run (give at least one),
        optionally only those of the analyses of one problem's proofs."""
        M, V = MetaVerificationRow, VerificationRow
        joins = [] if problem_id is None else [
            (V, (V.run_id == M.run_id) & (V.id == M.verification_id)),
            (ProofRow, (ProofRow.run_id == V.run_id) & (ProofRow.id == V.proof_id)
             & (ProofRow.problem_id == problem_id))]
        return self._rows(M, MetaVerification, {"run_id": run_id, "verification_id": verification_id}, *joins)

    def add_grade(self, run_id: str, id: str, *, proof_id: str, grader: str, raw: str | None,
                  grade: float | None, max_grade: float, normalised: float | None, status: str,
                  cause: str | None = None, meta: dict[str, Any] | None = None) -> None:
        """Record a grade of a proof (the proof must be recorded first). `grade` is on the
        grader's own scale (0..max_grade) and `normalised` = grade / max_grade; both are None
        unless status is ok, and `cause` then says why."""
        self.add_records(run_id, grades=[dict(id=id, proof_id=proof_id, grader=grader, raw=raw, grade=grade,
                                              max_grade=max_grade, normalised=normalised, status=status,
                                              cause=cause, meta=meta)])

    def grades(self, run_id: str | None = None, proof_id: str | None = None,
               grader: str | None = None) -> list[Grade]:
        """Grades of one proof, or of a whole run (give at least one of the two), optionally
        of one grader only; in the order first recorded."""
        return self._rows(GradeRow, Grade, {"run_id": run_id, "proof_id": proof_id}, grader=grader)

    # ---- the call cache (models.cache.CallCache) ---------------------------------------------

    def get(self, key: str) -> CallRecord | None:
        """The successful call stored under `key`, or None."""
        with self._read(records=False) as s:
            row = s.get(CallRow, key)
            return _call_record(row, s.get(PromptRow, row.prompt_sha).messages) if row else None

    def get_many(self, keys: Sequence[str]) -> dict[str, CallRecord]:
        """The successful calls stored under any of `keys`, by key (one query per 500 keys)."""
        keys, out = list(keys), {}
        q = self._built("calls with prompts", lambda: select(*CallRow.__table__.c, PromptRow.messages.label("prompt"))
                        .join(PromptRow, CallRow.prompt_sha == PromptRow.sha)
                        .where(CallRow.key.in_(bindparam("keys", expanding=True))))
        with self._read(records=False) as s:
            for i in range(0, len(keys), 500):  # SQLite caps bound parameters per statement
                for row in s.connection().execute(q, {"keys": keys[i:i + 500]}):
                    out[row.key] = _call_record(row, row.prompt)
        return out

    def put_many(self, records: Iterable[CallRecord]) -> None:
        """Store calls in one transaction. A key already stored keeps its first record: it may
        already have been used."""
        # The n records of one request share one message list: hash and insert it once. The
        # list is kept in the dict too, so its id cannot be reused by another list meanwhile.
        seen: dict[int, tuple[Any, str]] = {}
        prompts: dict[str, list[dict[str, str]]] = {}
        calls = []
        for r in records:
            _, sha = seen.get(id(r.messages), (None, None))
            if sha is None:
                sha = messages_sha(r.messages)
                seen[id(r.messages)] = (r.messages, sha)
                prompts.setdefault(sha, list(r.messages))
            calls.append(dict(
                key=r.key, namespace=r.namespace, model=r.model, provider=r.provider,
                sampling=dict(r.sampling), prompt_sha=sha, sample_index=r.index,
                text=r.completion.text, reasoning=r.completion.reasoning,
                finish_reason=r.completion.finish_reason, sample_tokens=r.completion.completion_tokens,
                prompt_tokens=r.prompt_tokens or 0, completion_tokens=r.completion_tokens or 0,
                cached_prompt_tokens=r.cached_prompt_tokens or 0, latency_s=r.latency_s, tag=r.tag,
                cost_usd=r.cost_usd, attempt=r.attempt, request_size=r.request_size, created_at=r.created_at,
                endpoint=r.endpoint))
        if not calls:
            return
        # One statement per table, rows in key order: two processes storing overlapping rows
        # take their row locks in the same order, so they queue instead of deadlocking.
        with self._write(records=False) as s:
            s.connection().execute(self._insert_new(PromptRow),
                                   [{"sha": sha, "messages": prompts[sha]} for sha in sorted(prompts)])
            s.connection().execute(self._insert_new(CallRow), sorted(calls, key=lambda c: c["key"]))

    def record_failure(self, keys: str | Iterable[str], *, namespace: str, model: str | None = None,
                       tag: str | None = None, attempt: int, error: BaseException,
                       latency_s: float | None = None) -> None:
        """One row for one failed attempt of one request, with all the sample keys it asked
        for (`keys`; a single key may be given as a str). `error` is normally a ModelError; any
        other exception is kept by its class name."""
        keys = [keys] if isinstance(keys, str) else list(keys)
        if not keys:
            raise ValueError("record_failure needs the key(s) of the failed request")
        with self._write(records=False) as s:
            s.add(FailureRow(key=keys[0], keys=keys, n_keys=len(keys), namespace=namespace, model=model,
                             tag=tag, attempt=attempt, kind=getattr(error, "kind", type(error).__name__),
                             status=getattr(error, "status", None),
                             message=getattr(error, "message", None) or str(error),
                             retryable=getattr(error, "retryable", None),
                             retry_after=getattr(error, "retry_after", None), latency_s=latency_s,
                             created_at=time.time()))

    def calls(self, namespace: str | None = None, *, keys: Iterable[str] | None = None) -> list[CallRecord]:
        """Stored calls, oldest first: all, one namespace's, or those with the given keys."""
        q = select(CallRow, PromptRow.messages).join(PromptRow, CallRow.prompt_sha == PromptRow.sha)
        if namespace is not None:
            q = q.where(CallRow.namespace == namespace)
        # SQLite caps bound parameters per statement, so a long key list goes in chunks.
        wanted = list(keys) if keys is not None else None
        chunks = [q] if wanted is None else [q.where(CallRow.key.in_(wanted[i:i + 500]))
                                             for i in range(0, len(wanted), 500)]
        with self._read() as s:
            rows = [(row.created_at, row.key, _call_record(row, msgs))
                    for chunk in chunks for row, msgs in s.execute(chunk)]
        return [record for *_, record in sorted(rows, key=lambda r: r[:2])]

    def failures(self, namespace: str | None = None) -> list[Failure]:
        q = select(FailureRow).order_by(FailureRow.id)
        if namespace is not None:
            q = q.where(FailureRow.namespace == namespace)
        with self._read() as s:
            # v1 rows have no `keys`: each was one key.
            return [_plain(r, Failure) for r in s.scalars(q)]

    def served_by(self, namespace: str, tag: str | None = None) -> dict[str, dict[str, int]]:
        """prompt sha -> endpoint -> calls (samples) it answered, over the namespace's calls (of
        `tag`) that know their endpoint (v6): which replica served each prompt, read back
        whichever process made the calls (models/replicas.py `affinity_share` sums it up)."""
        q = (select(CallRow.prompt_sha, CallRow.endpoint, func.count())
             .where(CallRow.namespace == namespace, CallRow.endpoint.is_not(None))
             .group_by(CallRow.prompt_sha, CallRow.endpoint))
        if tag is not None:
            q = q.where(CallRow.tag == tag)
        out: dict[str, dict[str, int]] = {}
        with self._read(records=False) as s:
            for sha, endpoint, n in s.execute(q):
                out.setdefault(sha, {})[endpoint] = n
        return out

    def call_summaries(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Model, tokens, latency, cost and finish reason of the stored calls among `keys`
        (those with no stored call are left out); reads no text."""
        wanted, out = list(keys), {}
        columns = (CallRow.key, CallRow.model, CallRow.provider, CallRow.namespace, CallRow.prompt_tokens,
                   CallRow.completion_tokens, CallRow.cached_prompt_tokens, CallRow.latency_s, CallRow.cost_usd,
                   CallRow.finish_reason)
        with self._read() as s:
            for i in range(0, len(wanted), 500):  # SQLite caps bound parameters per statement
                for key, *values in s.execute(select(*columns).where(CallRow.key.in_(wanted[i:i + 500]))):
                    out[key] = dict(zip([c.key for c in columns[1:]], values))
        return out

    def run_usage(self, run_id: str) -> RunUsage:
        """Token, call and failure totals for calls made under namespace == run_id (calls a run
        replayed from another run's cache are counted where they were made)."""
        usage = RunUsage()
        calls = self._built("usage of run", lambda: select(
            CallRow.tag, func.count(), func.sum(CallRow.prompt_tokens), func.sum(CallRow.completion_tokens),
            func.sum(CallRow.cached_prompt_tokens), func.coalesce(func.sum(CallRow.latency_s), 0.0),
            func.coalesce(func.sum(CallRow.cost_usd), 0.0), func.count() - func.count(CallRow.cost_usd))
            .where(CallRow.namespace == bindparam("run_id")).group_by(CallRow.tag))
        failures = self._built("failures of run", lambda: select(FailureRow.tag, func.count())
                               .where(FailureRow.namespace == bindparam("run_id")).group_by(FailureRow.tag))
        with self._read() as s:
            conn = s.connection()
            for tag, n, prompt, completion, cached, latency, cost, unpriced in conn.execute(calls, {"run_id": run_id}):
                usage.by_tag[tag or ""] = UsageTotals(
                    calls=n, prompt_tokens=prompt, completion_tokens=completion, cached_prompt_tokens=cached,
                    latency_s=latency, cost_usd=cost, unpriced_calls=unpriced)
            for tag, n in conn.execute(failures, {"run_id": run_id}):
                usage.by_tag.setdefault(tag or "", UsageTotals()).failures = n
        for part in usage.by_tag.values():
            for name in UsageTotals.model_fields:
                setattr(usage, name, getattr(usage, name) + getattr(part, name))
        return usage

    def derived_ids(self, run_id: str) -> dict[str, list[str]]:
        """Ids of the run's proofs, analyses and meta-verifications whose meta marks them as
        derived by an execution (not inputs stored at creation); no texts are read."""
        out: dict[str, list[str]] = {}
        with self._read() as s:
            for kind, row in (("proof", ProofRow), ("analysis", VerificationRow), ("meta", MetaVerificationRow)):
                q = self._built(f"ids and meta of {kind}s", lambda row=row: select(row.id, row.meta)
                                .where(row.run_id == bindparam("run_id")))
                out[kind] = [i for i, meta in s.connection().execute(q, {"run_id": run_id})
                             if (meta or {}).get("derived")]
        return out

    def delete_records(self, run_id: str, *, proofs: Iterable[str] = (), verifications: Iterable[str] = (),
                       meta_verifications: Iterable[str] = ()) -> None:
        """Delete records of a run (and the lineage of deleted proofs) in one transaction: the
        records a resumed run no longer derives (see runs/execute.py). Stored calls stay."""
        proofs, verifications, metas = list(proofs), list(verifications), list(meta_verifications)
        with self._write() as s:
            for table, ids in ((MetaVerificationRow, metas), (VerificationRow, verifications), (ProofRow, proofs),
                               (LineageRow, proofs), (RefinedFromRow, proofs)):
                column = table.proof_id if table in (LineageRow, RefinedFromRow) else table.id
                for i in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
                    s.execute(delete(table).where(table.run_id == run_id, column.in_(ids[i:i + 500])))

    def integrity_check(self) -> str:
        """SQLite's own check of the file: 'ok' when sound. PostgreSQL checks its own pages
        (data checksums, amcheck are the server administrator's): there it says whether the
        server answers and the schema is current."""
        with self._read() as s:
            if self.dialect == "postgresql":
                current = s.execute(text("SELECT version_num FROM alembic_version")).scalar()
                return "ok" if current == HEAD else f"schema at revision {current}, not {HEAD}"
            return "\n".join(s.execute(text("PRAGMA integrity_check")).scalars())


def _proof_values(run_id: str, now: datetime, p: dict[str, Any]) -> dict[str, Any]:
    return dict(run_id=run_id, id=p["id"], problem_id=p["problem_id"], raw=p["raw"], status=_value(p["status"]),
                reasoning=p.get("reasoning"), solution=p.get("solution"), self_evaluation=p.get("self_evaluation"),
                self_score=p.get("self_score"), cause=p.get("cause"), finish_reason=p.get("finish_reason"),
                round=p.get("round"), thread=p.get("thread"), attempt=p.get("attempt"),
                meta=dict(p.get("meta") or {}), created_at=now)


def _verification_values(run_id: str, now: datetime, v: dict[str, Any]) -> dict[str, Any]:
    return dict(run_id=run_id, id=v["id"], proof_id=v["proof_id"], raw=v["raw"], status=_value(v["status"]),
                reasoning=v.get("reasoning"), analysis=v.get("analysis"), score=v.get("score"),
                cause=v.get("cause"), issues=list(v.get("issues") or ()), meta=dict(v.get("meta") or {}),
                created_at=now)


def _meta_values(run_id: str, now: datetime, m: dict[str, Any]) -> dict[str, Any]:
    return dict(run_id=run_id, id=m["id"], verification_id=m["verification_id"], raw=m["raw"],
                status=_value(m["status"]), reasoning=m.get("reasoning"), analysis=m.get("analysis"),
                rating=m.get("rating"), cause=m.get("cause"), meta=dict(m.get("meta") or {}), created_at=now)


def _grade_values(run_id: str, now: datetime, g: dict[str, Any]) -> dict[str, Any]:
    return dict(run_id=run_id, id=g["id"], proof_id=g["proof_id"], grader=g["grader"], raw=g.get("raw"),
                grade=g.get("grade"), max_grade=g["max_grade"], normalised=g.get("normalised"),
                status=_value(g["status"]), cause=g.get("cause"), meta=dict(g.get("meta") or {}), created_at=now)


def _last_by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per id: the last values given, at the first one's place and time (as an
    update of a stored row keeps its created_at). One PostgreSQL statement may not update the
    same row twice."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        first = out.get(r["id"])
        out[r["id"]] = r if first is None else {**r, "created_at": first["created_at"]}
    return list(out.values())


def _one_line(messages: Sequence[object], limit: int = 200) -> str:
    line = " ".join(" ".join(str(m).split()) for m in messages)
    return line if len(line) <= limit else line[:limit] + " ..."


def _run(row: RunRow, now: float) -> Run:
    run = _plain(row, Run)
    expired = (row.expires_at is not None and row.expires_at < now) or owner_is_gone(row.owner)
    status = RunStatus.INTERRUPTED if run.status is RunStatus.RUNNING and expired else run.status
    lease_end = datetime.fromtimestamp(row.expires_at, timezone.utc) if row.expires_at is not None else None
    return run.model_copy(update={"status": status, "lease_expires_at": lease_end})


def _call_record(row: CallRow, messages: list[dict[str, str]]) -> CallRecord:
    return CallRecord(key=row.key, namespace=row.namespace, model=row.model, provider=row.provider,
                      sampling=row.sampling, messages=messages, index=row.sample_index,
                      completion=Completion(text=row.text, reasoning=row.reasoning,
                                            finish_reason=row.finish_reason,
                                            completion_tokens=row.sample_tokens),
                      prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens,
                      cached_prompt_tokens=row.cached_prompt_tokens, latency_s=row.latency_s, tag=row.tag,
                      cost_usd=row.cost_usd, attempt=row.attempt, request_size=row.request_size,
                      endpoint=row.endpoint, created_at=row.created_at)


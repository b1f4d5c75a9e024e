"""A run's progress as events, derived from the run store: nothing lives only in memory, so a
client that reconnects with Last-Event-ID (or a server restarted in between) misses nothing.

Each stored record is one event, in the order it was stored:

- `proof`    {id, problem_id, status, self_score, round, thread, attempt, parents}
- `analysis` {id, proof_id, status, score, issues}
- `meta`     {id, verification_id, status, rating}
- `grade`    {id, proof_id, grader, status, normalised}
- `end`      {status, error}: the run stopped (finished, failed, interrupted, cancelled);
  the stream closes after it. A run resumed later gets a new `end` after its new records.

An event id is `<stored at, µs since the epoch, 17 digits>-<order>-<record id>`: ids sort in
stream order as plain strings, and `after` returns what follows one. Records are written by
the run's one thread, each at a later instant than the one before; a record stored again on
resume keeps its first time, so replayed work is not sent twice.

    >>> from datetime import datetime, timedelta, timezone
    >>> event_id(datetime(2026, 1, 2, tzinfo=timezone.utc), "proof", "k1")
    '01767312000000000-1-k1'
    >>> parse_event_id('01767312000000000-1-k1')
    (1767312000000000, 1, 'k1')
    >>> parse_event_id("garbage") is None
    True
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.orm import Session

from proofloop.store import Store
from proofloop.store.derive import derived_fields
from proofloop.store.schema import CallRow, GradeRow, MetaVerificationRow, ProofRow, Run, VerificationRow

ORDER = {"proof": 1, "analysis": 2, "meta": 3, "grade": 4, "end": 9}
_ID = re.compile(r"^(\d{17})-(\d)-(.{0,400})$", re.S)
BATCH = 500  # most events read per look at the store


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: dict[str, Any]

    def sse(self) -> str:
        """The event in the text/event-stream format (data is one line of JSON)."""
        return f"id: {self.id}\nevent: {self.event}\ndata: {json.dumps(self.data, default=str)}\n\n"


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def micros(t: datetime) -> int:
    """Microseconds since the epoch, exactly (no float rounding: ids and cursors compare equal)."""
    aware = t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # SQLite keeps UTC, naive
    return (aware - EPOCH) // timedelta(microseconds=1)


def from_micros(value: int) -> datetime:
    """The naive UTC time the store compares with."""
    return (EPOCH + timedelta(microseconds=value)).replace(tzinfo=None)


def event_id(t: datetime, kind: str, record_id: str) -> str:
    return f"{micros(t):017d}-{ORDER[kind]}-{record_id}"


def parse_event_id(value: str) -> tuple[int, int, str] | None:
    """(time µs, order, record id) of an event id; None when it is not one of ours."""
    m = _ID.match(value or "")
    return (int(m.group(1)), int(m.group(2)), m.group(3)) if m else None


def _key(e: Event) -> tuple[int, int, str]:
    parsed = parse_event_id(e.id)
    assert parsed is not None
    return parsed


# (kind, table, columns shown, how a row becomes the event's data)
_SOURCES: list[tuple[str, Any, list[str]]] = [
    ("proof", ProofRow, ["id", "problem_id", "status", "self_score", "round", "thread", "attempt"]),
    ("analysis", VerificationRow, ["id", "proof_id", "status", "score", "issues"]),
    ("meta", MetaVerificationRow, ["id", "verification_id", "status", "rating"]),
    ("grade", GradeRow, ["id", "proof_id", "grader", "status", "normalised"]),
]


def record_events(store: Store, run_id: str, after: str | None = None, limit: int = BATCH) -> list[Event]:
    """The record events of a run after the event id `after` (all when None), oldest first."""
    since = parse_event_id(after) if after else None
    since_t = from_micros(since[0]) if since else None
    found: list[tuple[tuple[int, int, str], str, dict[str, Any]]] = []
    texts_of: set[str] = set()  # analyses whose issues live in their call's text
    with Session(store.engine) as s, s.begin():  # one snapshot for the four tables and the texts
        for kind, table, columns in _SOURCES:
            q = select(table.created_at, *(getattr(table, c) for c in columns))
            if kind == "analysis":
                q = q.add_columns(table.from_call)
            q = q.where(table.run_id == run_id)
            if since_t is not None:
                q = q.where(table.created_at >= since_t)  # equal times are sorted out below
            # Each table's first rows in time: the merged first `limit` come from these.
            for row in s.execute(q.order_by(table.created_at).limit(limit + 1000)):
                data = dict(zip(columns, row[1:len(columns) + 1]))
                key = (micros(row[0]), ORDER[kind], str(data["id"]))
                if since is None or key > since:
                    found.append((key, kind, data))
                    if kind == "analysis" and row[-1]:
                        texts_of.add(data["id"])
        found = sorted(found, key=lambda f: f[0])[:limit]
        # Parsing an analysis is the costly part: only the ones sent now.
        add_issues(s, [data for _, kind, data in found if kind == "analysis" and data["id"] in texts_of])
    return [Event(f"{key[0]:017d}-{key[1]}-{key[2]}", kind, data) for key, kind, data in found]


def add_issues(s: Session, analyses: list[dict[str, Any]]) -> None:
    """Each analysis's issues, derived from its stored call (store/derive.py)."""
    by_id = {a["id"]: a for a in analyses}
    ids = list(by_id)
    for i in range(0, len(ids), BATCH):  # SQLite caps bound parameters per statement
        for key, *text in s.execute(select(CallRow.key, CallRow.text, CallRow.reasoning, CallRow.finish_reason)
                                    .where(CallRow.key.in_(ids[i:i + BATCH]))):
            by_id[key]["issues"] = derived_fields("verification", *text)["issues"]


def end_event(run: Run, status: str, after: str | None) -> Event:
    """The event that closes a stream: the run is not (or no longer) worked on. Its time is
    the run's last update, or the last record sent when later (a run killed mid-way was last
    updated when it started), so it sorts after every record event."""
    since = parse_event_id(after) if after else None
    at = max(micros(run.updated_at), since[0] if since else 0)
    return Event(f"{at:017d}-{ORDER['end']}-run", "end", {"status": status, "error": run.error})


def is_after(event: Event, after: str | None) -> bool:
    since = parse_event_id(after) if after else None
    return since is None or _key(event) > since


class StoreWrites:
    """Wakes this process's event streams when it has stored something: a stream then looks at
    the store at once instead of at its next poll (POLL_S in routes.py), so an event leaves
    within milliseconds of its record. Writes of other processes (a CLI resume of the same
    store) are not seen here; the streams' polling still finds them.

    A write is a transaction of the store's writer (IMMEDIATE); the wake comes when its
    connection goes back to the pool, after the commit, so the stream's next read sees it.
    `count` goes up with every write: a stream notes it before it looks, and `wait` returns at
    once when a write came in since.

        writes = StoreWrites(store)
        seen = writes.count
        ... look at the store ...
        await writes.wait(seen, timeout=0.25)   # a write since `seen`, or the timeout
    """

    def __init__(self, store: Store):
        self.count = 0
        self.lock = threading.Lock()
        self.waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        sa_event.listen(store.engine, "commit", self._committed)
        sa_event.listen(store.engine.pool, "checkin", self._returned)

    @staticmethod
    def _committed(conn: Any) -> None:
        if conn.get_execution_options().get("immediate"):  # the store's writer, not a read
            conn.info["wrote"] = True

    def _returned(self, dbapi_conn: Any, record: Any) -> None:
        if record is not None and record.info.pop("wrote", False):
            self.wrote()

    def wrote(self) -> None:
        """Count a write and wake every waiting stream."""
        with self.lock:
            self.count += 1
            waiters = list(self.waiters)
        for loop, flag in waiters:
            try:
                loop.call_soon_threadsafe(flag.set)
            except RuntimeError:  # that stream's loop has closed
                pass

    async def wait(self, seen: int, timeout: float) -> bool:
        """Until a write after `seen` (True) or `timeout` seconds (False)."""
        item = (asyncio.get_running_loop(), asyncio.Event())
        with self.lock:
            if self.count != seen:
                return True
            self.waiters.add(item)
        try:
            await asyncio.wait_for(item[1].wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with self.lock:
                self.waiters.discard(item)

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

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

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
    events: list[Event] = []
    with Session(store.engine) as s, s.begin():  # one snapshot for the four tables
        for kind, table, columns in _SOURCES:
            q = select(table.created_at, *(getattr(table, c) for c in columns))
            if kind == "analysis":  # issues live in the stored call's text (store/derive.py)
                q = q.add_columns(CallRow.text, CallRow.reasoning, CallRow.finish_reason).outerjoin(
                    CallRow, (CallRow.key == table.id) & table.from_call)
            q = q.where(table.run_id == run_id)
            if since_t is not None:
                q = q.where(table.created_at >= since_t)  # equal times are sorted out below
            # Each table's first rows in time: the merged first `limit` come from these.
            q = q.order_by(table.created_at).limit(limit + 1000)
            for row in s.execute(q):
                data = dict(zip(columns, row[1:len(columns) + 1]))
                if kind == "analysis" and row[-3] is not None:
                    data["issues"] = derived_fields("verification", *row[-3:])["issues"]
                events.append(Event(event_id(row[0], kind, str(data["id"])), kind, data))
    events.sort(key=_key)
    if since is not None:
        events = [e for e in events if _key(e) > since]
    return events[:limit]


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

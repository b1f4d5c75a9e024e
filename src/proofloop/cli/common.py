"""What the commands share: the store, reading inputs, `-o key=value`, and running a stored
run with progress, then rendering its summary (text, or one JSON object with --json)."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proofloop.cli.console import note, say
from proofloop.errors import ProofloopError, UserInputError

if TYPE_CHECKING:
    from proofloop.store import Store


def open_store(db: str | Path | None) -> "Store":
    from proofloop.store import Store

    return Store(db or Store.default_path(), on_wait=lambda message: note(f"proofloop: {message}"))


def read_input(path: Path | str, what: str) -> str:
    """A file's text (stdin for '-'); a missing, unreadable or empty input is a user error."""
    if str(path) == "-":
        text = sys.stdin.read()
    else:
        p = Path(path)
        if not p.is_file():
            raise UserInputError(f"{what} file not found: {p}")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserInputError(f"cannot read {what} file {p}: {e}") from None
    if not text.strip():
        raise UserInputError(f"the {what} is empty ({path})")
    return text.strip()


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`-o key=value` pairs; values are JSON when they parse (numbers, true/false), else text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserInputError(f"-o takes key=value, got {pair!r}")
        try:
            options[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip().replace("-", "_")] = value
    return options


def set_verbosity(verbose: bool) -> None:
    """Retries and similar details reach stderr only with --verbose; warnings always do."""
    logging.basicConfig(format="proofloop: %(message)s", stream=sys.stderr, force=True,
                        level=logging.INFO if verbose else logging.WARNING)


class Progress:
    """What a running command is doing: records stored, requests sent and in flight, pieces
    streamed so far. A live line on a terminal (refreshed every second, so a long call shows
    it is alive), a line every 30 s and one per record on a pipe (stderr), nothing with --json.

    Notes (settings, retries, failed calls) wait for the first answer that is not a failed
    call, or for the first 30 s line, then print; with --verbose they print at once. So a run
    that fails quickly, before any answer came back, is told in its one error line."""

    def __init__(self, json_mode: bool, verbose: bool = False):
        self.counts = {"proof": 0, "analysis": 0, "meta": 0}
        self.json_mode, self.started = json_mode, time.monotonic()
        self.held: list[str] | None = None if verbose else []
        self.lock = threading.Lock()  # notes come from the run and from the ticking thread
        self.status = None
        self.done = threading.Event()
        if json_mode:
            return
        if sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status(self.line())
            self.status.start()
        threading.Thread(target=self.tick, args=(1.0 if self.status else 30.0,), daemon=True).start()

    def line(self) -> str:
        from proofloop.models.base import ACTIVITY

        c = self.counts
        return (f"proofs {c['proof']}  analyses {c['analysis']}  meta {c['meta']}  |  requests sent "
                f"{ACTIVITY.sent}, in flight {ACTIVITY.in_flight}, ~{ACTIVITY.streamed} tokens generated  "
                f"({time.monotonic() - self.started:.0f} s)")

    def tick(self, every: float) -> None:
        while not self.done.wait(every):
            if self.status is not None:
                self.status.update(self.line())
            else:
                self.release()
                note(f"[working] {self.line()}")

    def notice(self, line: str) -> None:
        with self.lock:
            if self.held is not None:
                self.held.append(line)
                return
        note(line)

    def release(self) -> None:
        """Print the notes held so far; later ones print at once."""
        with self.lock:
            held, self.held = self.held or [], None
        for line in held:
            note(line)

    def on_record(self, kind: str, record: Any) -> None:
        if record.status.value != "call_error":
            self.release()
        self.counts[kind] += 1
        if self.status is not None:
            self.status.update(self.line())
        elif not self.json_mode:
            score = getattr(record, "self_score", None) if kind == "proof" else (
                getattr(record, "score", None) if kind == "analysis" else getattr(record, "rating", None))
            self.notice(f"[{kind}] status={record.status.value} score={score}  {self.line()}")

    @contextmanager
    def logging_held(self) -> Iterator[None]:
        """Log lines (retry warnings) go through `notice` while the run works, so they wait too."""
        root = logging.getLogger()
        saved = root.handlers[:]
        held = _NoticeHandler(self.notice)
        held.setFormatter(saved[0].formatter if saved else None)
        root.handlers = [held]
        try:
            yield
        finally:
            root.handlers = saved

    def stop(self) -> None:
        self.done.set()
        if self.status is not None:
            self.status.stop()


class _NoticeHandler(logging.Handler):
    def __init__(self, notice: Callable[[str], None]):
        super().__init__()
        self.notice_line = notice

    def emit(self, record: logging.LogRecord) -> None:
        self.notice_line(self.format(record))


def run_and_render(store: "Store", run_id: str, *, api_key: str | None, json_mode: bool,
                   verbose: bool = False, announce: str | None = None) -> dict[str, Any]:
    """Execute (or resume) a stored run, then print its summary. `announce`: a first note
    (e.g. the run id), held like the settings line until the run has produced something."""
    from proofloop.runs import execute, get_kind

    progress = Progress(json_mode, verbose)
    if announce:
        progress.notice(announce)
    try:
        with progress.logging_held():
            summary = execute(store, run_id, api_key=api_key, on_record=progress.on_record, notice=progress.notice)
    except KeyboardInterrupt:
        progress.stop()
        note(f"interrupted; resume with `proofloop resume {run_id}`")
        raise SystemExit(130) from None
    except ProofloopError as e:  # the one error line names the run the failure is stored on
        from proofloop.store import RunBusy

        if isinstance(e, RunBusy):  # another process is working on it: nothing was stored as failed
            raise
        raise ProofloopError(f"{e} (run {run_id}, stored as failed: `proofloop resume {run_id}` finishes it)") from None
    finally:
        progress.stop()
    progress.release()
    render(summary, json_mode, get_kind(summary["kind"]).render)
    return summary


def join_and_render(store: "Store", run_id: str, *, api_key: str | None, json_mode: bool,
                    verbose: bool = False) -> None:
    """--worker RUN: work on a run with the other workers (runs/workers.py); print the summary
    if this worker finished the run, else (with --json) that another one will."""
    from proofloop.runs import execute_worker, get_kind

    progress = Progress(json_mode, verbose)
    try:
        with progress.logging_held():
            summary = execute_worker(store, run_id, api_key=api_key, on_record=progress.on_record,
                                     notice=progress.notice)
    except KeyboardInterrupt:
        progress.stop()
        note("interrupted; this worker's items go to the other workers once its claims expire")
        raise SystemExit(130) from None
    finally:
        progress.stop()
    progress.release()
    if summary is not None:
        render(summary, json_mode, get_kind(summary["kind"]).render)
    elif json_mode:
        say(json.dumps({"run_id": run_id, "worker_done": True, "finished_here": False}))


def print_split(run_id: str, json_mode: bool) -> None:
    """--split: the run and its work items are stored; print its id for `--worker RUN`."""
    say(json.dumps({"run_id": run_id}) if json_mode else run_id)


def render(summary: dict[str, Any], json_mode: bool, text: Any) -> None:
    if json_mode:
        say(json.dumps(summary, default=str))
    else:
        for line in text(summary):
            say(line)

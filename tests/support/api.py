"""`proofloop serve` as a subprocess on 127.0.0.1 (port 0, the URL read from --url-file), the
way a user starts it; httpx clients for it; and a reader of its server-sent events."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from support.cli import CLI, cli_env


class ApiServer:
    """`proofloop serve --port 0 --db DB ARGS...`; `base_url` is http://127.0.0.1:PORT."""

    def __init__(self, db: Path, args: list[str] = (), *, model_url: str | None = None, **env: str):
        self.db, self.args = db, list(args)
        self.env = cli_env(db, model_url, **env)
        self.url_file = db.parent / f"serve-url-{time.monotonic_ns()}.txt"
        self.proc: subprocess.Popen | None = None
        self.base_url = ""

    def start(self, timeout: float = 60) -> "ApiServer":
        self.log = open(self.db.parent / f"serve-{time.monotonic_ns()}.log", "w")
        self.proc = subprocess.Popen(CLI + ["serve", "--port", "0", "--url-file", str(self.url_file),
                                            "--db", str(self.db)] + self.args,
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited {self.proc.returncode}: {self.output()}"
            if self.url_file.exists() and self.url_file.read_text().strip():
                self.base_url = self.url_file.read_text().strip()
                try:
                    if httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"serve did not start: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-4000:]

    def client(self, token: str | None = None, **kw: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=kw.pop("timeout", 60), **kw)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def __enter__(self) -> "ApiServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_events(client: httpx.Client, run_id: str, *, last_event_id: str | None = None,
                stop_after: int | None = None, timeout: float = 120) -> list[dict[str, Any]]:
    """Events of a run's stream as {id, event, data}: until `end`, or after `stop_after` events
    (then the connection is dropped, as a client that goes away)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers, timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                    if current["event"] == "end" or (stop_after is not None and len(events) >= stop_after):
                        break
                current = {}
            elif line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
    return events


def wait_for(predicate: Any, timeout: float = 120, every: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; its value, or AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")

"""A run being executed is held by one process: a second `resume` of it is refused in one
line; kill -9 leaves it `interrupted` in `runs list` (not `running` forever); SIGTERM stops it
cleanly like Ctrl-C, with the command to resume it. The CLI runs as subprocesses against the
scripted server, which holds the run's second request until its client is gone (a slow fault),
so the run is mid-way until the test stops it, however slowly the machine runs."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from proofloop.store import Store
from support.cli import CLI, cli_env, stored_calls, run_cli, run_json
from support.scripted import ServerProcess

# The run sends one request at a time; the second waits until its client is gone, so once the
# first call is stored the run cannot end before the test stops it. Later requests (a resume's,
# after a kill) are answered at once.
HELD = {"faults": {"by_request": {"2": {"kind": "slow", "delay_s": 300}}}}
ARGS = ["--threads", "2", "--attempts", "3", "--seed", "3", "--max-concurrency", "1", "--max-tokens", "8192"]


@pytest.fixture
def problem(tmp_path: Path) -> str:
    (tmp_path / "problem.md").write_text("Prove that the product of two odd integers is odd.")
    return str(tmp_path / "problem.md")




def _start(problem: str, env: dict[str, str], db: Path | str) -> tuple[subprocess.Popen, str]:
    """`prove` in the background, once its first call is stored; returns (process, run id)."""
    proc = subprocess.Popen(CLI + ["prove", problem, *ARGS, "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while stored_calls(db) < 1:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no call was stored in 120 s"
        time.sleep(0.05)
    [run] = Store(db).list_runs()
    return proc, run.id


def test_a_second_resume_of_a_running_run_is_refused_then_kill_9_leaves_it_interrupted(db, problem):
    # On SQLite and on PostgreSQL (the `db` fixture); the SIGTERM test below is about signals only.
    with ServerProcess(script=HELD) as server:
        env = cli_env(db, server.base_url)
        proc, run_id = _start(problem, env, db)
        busy = run_cli(["resume", run_id], env, timeout=60)
        lines = [line for line in busy.stderr.splitlines() if line.strip()]
        assert busy.returncode == 2 and len(lines) == 1 and "in use by" in lines[0], busy.stderr
        assert proc.poll() is None  # the refused resume did not disturb the running one

        proc.kill()  # kill -9: no chance to mark anything
        proc.wait(30)
        listed = run_cli(["runs", "list"], env)
        row = next(line for line in listed.stdout.splitlines() if line.startswith(run_id))
        assert row.split()[2] == "interrupted", listed.stdout

        finished = run_json(["resume", run_id], env, timeout=300)  # the dead owner's lease is void
    assert finished["run_id"] == run_id and Store(db).get_run(run_id).status.value == "finished"


def test_sigterm_stops_a_run_like_ctrl_c(tmp_path, problem):
    db = tmp_path / "runs.db"
    with ServerProcess(script=HELD) as server:
        env = cli_env(db, server.base_url)
        proc, run_id = _start(problem, env, db)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted; resume with `proofloop resume {run_id}`"
    run = Store(db).get_run(run_id)
    assert (run.status.value, run.owner) == ("interrupted", None)  # released, not left to expire

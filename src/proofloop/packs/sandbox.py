"""Run untrusted Python (a candidate solution and its tests) in a sandboxed subprocess.

The layers, each there because the one before may be missing or bypassed:
- a fresh temporary directory as the working directory, removed afterwards; a minimal
  environment (no proxies, no PYTHONPATH, HOME inside the directory); `python -I`;
- resource limits set in the child before it runs anything (resource.setrlimit): CPU seconds,
  address space, file size, no core files, and one process (no fork) where the limit binds;
- no network: the child runs under `unshare -rn` (a network namespace with no interface but
  loopback down) when the system allows it, and a guard run before the candidate replaces
  Python's socket and process-starting functions with ones that raise;
- run as `nobody` when we are root (with a system interpreter it can read), so the process
  limit counts and the files of the host are out of reach;
- a wall-clock limit: on expiry the whole process group is killed (SIGKILL), children included.

    >>> out = run_python("print(6 * 7)", limits=Limits(wall_s=20))
    >>> out.status, out.stdout.strip()
    ('passed', '42')
    >>> run_python("assert 1 == 2", limits=Limits(wall_s=20)).status
    'failed'
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NETWORK_BLOCKED = "sandbox: network access is blocked"
PROCESS_BLOCKED = "sandbox: starting processes is blocked"
NOBODY = 65534
TAIL = 2000  # characters of stdout / stderr kept in the record

# Run before the candidate, in the same interpreter: Python-level doors to the network and to
# new processes raise. A determined candidate can get round this (ctypes); the namespace, the
# process limit and the process-group kill are what hold then.
GUARD = f'''
import os as _os, socket as _socket, _socket as _csocket, subprocess as _subprocess

def _no_network(*args, **kwargs):
    raise PermissionError({NETWORK_BLOCKED!r})

def _no_process(*args, **kwargs):
    raise PermissionError({PROCESS_BLOCKED!r})

class _BlockedSocket(_csocket.socket):
    def __init__(self, *args, **kwargs):
        _no_network()

_socket.socket = _csocket.socket = _BlockedSocket
_socket.create_connection = _socket.getaddrinfo = _socket.socketpair = _no_network
for _name in ("fork", "forkpty", "system", "popen", "posix_spawn", "posix_spawnp", "execv", "execve", "execvp",
              "execvpe", "execl", "execle", "execlp", "execlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe"):
    if hasattr(_os, _name):
        setattr(_os, _name, _no_process)
_subprocess.Popen = _no_process
del _os, _socket, _csocket, _subprocess, _name
exec(compile(open("candidate.py", encoding="utf-8").read(), "candidate.py", "exec"), {{"__name__": "__main__"}})
'''


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 512
    file_mb: int = 16


@dataclass
class Outcome:
    """What one sandboxed run did. `status`: passed | failed (an assertion did not hold) |
    error (another exception) | timeout | memory | network | process (blocked attempts) |
    killed (a signal, e.g. the CPU limit)."""

    status: str
    returncode: int | None
    wall_s: float
    stdout: str
    stderr: str
    isolation: list[str] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return asdict(self)


def _interpreter_and_user() -> tuple[str, int | None]:
    """As root: drop to nobody with a system interpreter nobody can run (ours may sit under
    /root); otherwise: this interpreter, this user."""
    if os.geteuid() == 0:
        system = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
        if system:
            return system, NOBODY
    return sys.executable, None


def _network_namespace() -> list[str]:
    """`unshare -rn` when it works here (a quick probe, once per process)."""
    global _UNSHARE
    if _UNSHARE is None:
        tool = shutil.which("unshare")
        ok = bool(tool) and subprocess.run([tool, "-rn", "true"], capture_output=True).returncode == 0
        _UNSHARE = [tool, "-rn"] if ok and tool else []
    return _UNSHARE


_UNSHARE: list[str] | None = None


def _limit_child(limits: Limits, one_process: bool) -> None:
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb * mb, limits.file_mb * mb))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if one_process:
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))


def classify(returncode: int | None, stderr: str, timed_out: bool) -> str:
    if timed_out:
        return "timeout"
    if returncode == 0:
        return "passed"
    if NETWORK_BLOCKED in stderr or "Network is unreachable" in stderr:
        return "network"
    if PROCESS_BLOCKED in stderr or "Resource temporarily unavailable" in stderr:
        return "process"
    if "MemoryError" in stderr or returncode == -signal.SIGSEGV:
        return "memory"
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout"
    if "AssertionError" in stderr:
        return "failed"
    return "killed" if returncode is not None and returncode < 0 else "error"


def run_python(code: str, *, limits: Limits = Limits()) -> Outcome:
    """Run `code` as a script in the sandbox and say what happened."""
    python, user = _interpreter_and_user()
    isolation = ["tempdir", "rlimits", "python-guard"] + (["nobody"] if user is not None else [])
    netns = _network_namespace()
    isolation += ["netns"] if netns else []
    with tempfile.TemporaryDirectory(prefix="proofloop-sandbox-") as tmp:
        work = Path(tmp)
        (work / "candidate.py").write_text(code, encoding="utf-8")
        (work / "run.py").write_text(GUARD, encoding="utf-8")
        os.chmod(work, 0o777)  # nobody writes its output files here
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmp, "PYTHONDONTWRITEBYTECODE": "1",
               "no_proxy": "*", "NO_PROXY": "*"}
        with open(work / "out.txt", "wb") as out, open(work / "err.txt", "wb") as err:
            start = time.monotonic()
            proc = subprocess.Popen(
                [*netns, python, "-I", "run.py"], cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=err, start_new_session=True, user=user, group=user, extra_groups=[] if user else None,
                preexec_fn=lambda: _limit_child(limits, one_process=user is not None))
            timed_out = False
            try:
                proc.wait(timeout=limits.wall_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
            wall = time.monotonic() - start
        stdout = (work / "out.txt").read_text(encoding="utf-8", errors="replace")
        stderr = (work / "err.txt").read_text(encoding="utf-8", errors="replace")
    status = classify(None if timed_out else proc.returncode, stderr, timed_out)
    return Outcome(status, None if timed_out else proc.returncode, round(wall, 4), stdout[-TAIL:], stderr[-TAIL:],
                   isolation, asdict(limits))


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's whole process group (it leads its own session), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()

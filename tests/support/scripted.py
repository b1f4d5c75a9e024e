"""The scripted test server: a deterministic responder that speaks the DeepSeekMath-V2 output
contracts, on the simulator's HTTP front end (proofloop.sim.http), in a thread or a process.

    with ServerProcess(script={"faults": {...}}, request_log=path) as server:
        server.base_url   # http://127.0.0.1:PORT/v1

As a process: `python -m support.scripted --port 0 --script faults.json --request-log log.jsonl
--url-file url.txt` (run with tests/ on the path; ServerProcess does that), `--responder
pkg.module:factory` plugs in another responder.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Literal

from fastapi import FastAPI

from proofloop.protocol import detect_role
from proofloop.sim.http import (ChatRequest, Choice, Faults, Reply, Responder, approx_tokens, fingerprint, make_app,
                               serve)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- scripted responder

_PROOF_ID = re.compile(r"scripted proof ([0-9a-f]{8}), grade (0\.5|0|1)")
_FINAL_SCORE = re.compile(r"final overall score should be:\s*\\boxed\{([^}]*)\}")


def default_role(messages: list[dict[str, Any]]) -> str:
    """The protocol role of a prompt (the protocol's markers), generate when none matches."""
    return detect_role(messages) or "generate"


def _fmt(s: float) -> str:
    return "0.5" if s == 0.5 else str(int(s))


def scripted_responder(*, reasoning: Literal["none", "field", "inline"] = "none",
                       role_of: Callable[[list[dict[str, Any]]], str] = default_role,
                       quality_weights: tuple[float, float, float] = (0.4, 0.3, 0.3),
                       refine_weights: tuple[float, float, float] = (0.2, 0.3, 0.5),
                       self_accuracy: float = 0.8, verifier_accuracy: float = 0.75,
                       salt: str = "") -> Responder:
    """A deterministic responder that follows the DeepSeekMath-V2 output contracts.

    Each answer is a function of the request (model, messages, sampling parameters and
    extra fields, but not n / stream) and of the sample number `seed + choice index` (seed 0
    when the request has none), so sample k is the same whether it was asked for alone or
    in a group. Generated proofs carry a visible ground truth, "(scripted proof <id>, grade
    g)", with g drawn from `quality_weights` (`refine_weights` for refinements); the
    generator's self score equals g with probability `self_accuracy`, a verifier's score with
    probability `verifier_accuracy` (else another score); a meta-verifier rates an analysis
    1 when its score matches the grade, usually 0 or 0.5 otherwise. Prompts without a proof id
    are graded from a hash of the prompt. `reasoning` adds a thinking part as a
    reasoning_content field or inline before </think>. Answers longer than max_tokens (by
    approx_tokens) are cut, with finish_reason "length".
    """
    grades = (0.0, 0.5, 1.0)

    async def respond(req: ChatRequest) -> Reply:
        base = {k: v for k, v in req.body.items() if k not in ("n", "stream", "stream_options", "seed")}
        base_key = fingerprint(base) + salt
        role = role_of(req.messages)
        prompt = "\n".join(str(m.get("content", "")) for m in req.messages)
        choices = [_one(role, prompt, f"{base_key}:{(req.seed or 0) + i}", req.max_tokens)
                   for i in range(req.n)]
        return Reply(choices, prompt_tokens=approx_tokens(prompt))

    def _one(role: str, prompt: str, key: str, max_tokens: int | None) -> Choice:
        def u(label: str) -> float:
            return int(hashlib.sha256(f"{key}:{label}".encode()).hexdigest()[:12], 16) / 16 ** 12

        def draw(label: str, weights: tuple[float, float, float]) -> float:
            x, acc = u(label) * sum(weights), 0.0
            for g, w in zip(grades, weights):
                acc += w
                if x < acc:
                    return g
            return grades[-1]

        def noisy(truth: float, accuracy: float, label: str) -> float:
            if u(label) < accuracy:
                return truth
            others = [g for g in grades if g != truth]
            return others[int(u(label + "-other") * 2) % 2]

        ids = _PROOF_ID.findall(prompt)
        truth = float(ids[-1][1]) if ids else draw("prompt-grade", quality_weights)
        if role in ("generate", "refine"):
            pid = hashlib.sha256(f"{key}:id".encode()).hexdigest()[:8]
            grade = draw("grade", refine_weights if role == "refine" else quality_weights)
            self_score = noisy(grade, self_accuracy, "self")
            text = (f"## Solution\n\nWe argue step by step (scripted proof {pid}, grade {_fmt(grade)}).\n"
                    f"Step 1. Set up the notation.\nStep 2. Conclude.\n\n## Self Evaluation\n\n"
                    f"Here is my evaluation of the solution: the key step is Step 2"
                    f"{' and it holds' if self_score == 1 else ', which has a gap'}.\n\n"
                    f"Based on my evaluation, the final overall score should be: \\boxed{{{_fmt(self_score)}}}")
        elif role == "meta_verify":
            claimed = _FINAL_SCORE.findall(prompt)
            try:
                agrees = bool(claimed) and float(claimed[-1]) == truth
            except ValueError:
                agrees = False
            rating = noisy(1.0, 0.85, "meta") if agrees else noisy(0.0, 0.6, "meta")
            text = ('Here is my analysis of the "solution evaluation": the restated steps exist in the '
                    f"proof; the claimed defects are {'real' if rating == 1 else 'partly unfounded'}.\n\n"
                    'Based on my analysis, I will rate the "solution evaluation" as: '
                    f"\\boxed{{{_fmt(rating)}}}")
        else:  # verify
            score = noisy(truth, verifier_accuracy, "verify")
            issue = "no issue found" if score == 1 else ("a minor gap in Step 2" if score == 0.5
                                                         else "a fatal error in Step 2")
            text = (f"Here is my evaluation of the solution: Step 1 is correct; Step 2: {issue}.\n\n"
                    f"Based on my evaluation, the final overall score should be: \\boxed{{{_fmt(score)}}}")
        thinking = f"Let me think about this ({role}). " * 3 if reasoning != "none" else None
        if reasoning == "inline":
            text, thinking = f"<think>\n{thinking}\n</think>\n\n{text}", None
        finish = "stop"
        if max_tokens is not None and approx_tokens(thinking) + approx_tokens(text) > max_tokens:
            budget = max(0, max_tokens - approx_tokens(thinking)) * 4
            text, finish = text[:budget], "length"
        return Choice(text=text, reasoning_content=thinking, finish_reason=finish)

    return respond


def gated_responder(gate: str, responder: str | None = None, **options: Any) -> Responder:
    """A responder (the scripted one, or the factory `responder` = "module:factory" given
    `options`) behind a gate: while the file `gate` exists and holds a number N, every request
    numbered above N waits. A test that stops its client mid-run (kill -9, SIGTERM, cancel)
    writes N, so the run stalls with exactly N requests answered however slowly the machine
    runs, stops it, and deletes the gate: the held requests (the dead client's) and every later
    one (a resumed run's) are then answered.

        ServerProcess(script={"responder": {"gate": str(gate)}},
                      responder_factory="support.scripted:gated_responder")
    """
    if responder:
        module, _, name = responder.partition(":")
        respond = getattr(importlib.import_module(module), name)(**options)
    else:
        respond = scripted_responder(**options)

    def closed_to(number: int) -> bool:
        try:
            return number > int(Path(gate).read_text())
        except (FileNotFoundError, ValueError):  # no gate, or being written
            return os.path.exists(gate)

    async def gated(req: ChatRequest) -> Reply:
        while closed_to(req.number):
            await asyncio.sleep(0.02)
        return await respond(req)

    return gated


def load_script(path: str | Path | None) -> dict[str, Any]:
    """A server script (JSON): {"faults": <Faults>, "responder": {options for the factory},
    "models": [...], "api_key": ..., "stream_chunk_chars": 64, "stream_delay_s": 0}."""
    if path is None:
        return {}
    return json.loads(Path(path).read_text(encoding="utf-8"))


def app_from_script(script: dict[str, Any], *, responder_factory: str | None = None,
                    request_log: str | Path | None = None) -> FastAPI:
    factory: Callable[..., Responder] = scripted_responder
    if responder_factory:
        module, _, name = responder_factory.partition(":")
        factory = getattr(importlib.import_module(module), name)
    return make_app(factory(**script.get("responder", {})),
                    faults=Faults.model_validate(script.get("faults", {})), request_log=request_log,
                    models=script.get("models"), api_key=script.get("api_key"),
                    stream_chunk_chars=script.get("stream_chunk_chars", 64),
                    stream_delay_s=script.get("stream_delay_s", 0.0))


class ServerProcess:
    """`python -m support.scripted` in a subprocess; `.base_url` once it listens, `.kill()`
    sends SIGKILL. Use as a context manager (it terminates the process on exit)."""

    def __init__(self, *, script: dict[str, Any] | None = None, request_log: str | Path | None = None,
                 responder_factory: str | None = None, env: dict[str, str] | None = None,
                 start_timeout_s: float = 60.0):
        self._dir = tempfile.TemporaryDirectory(prefix="proofloop-serve-")
        url_file = Path(self._dir.name) / "url"
        cmd = [sys.executable, "-m", "support.scripted", "--url-file", str(url_file)]
        if script is not None:
            script_path = Path(self._dir.name) / "script.json"
            script_path.write_text(json.dumps(script))
            cmd += ["--script", str(script_path)]
        if request_log is not None:
            cmd += ["--request-log", str(request_log)]
        if responder_factory:
            cmd += ["--responder", responder_factory]
        tests_dir = str(Path(__file__).resolve().parents[1])  # so that `support.scripted` imports
        path = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": path, **(env or {})},
                                     stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + start_timeout_s
        while not url_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server subprocess did not start (exit code {self.proc.returncode})")
            time.sleep(0.05)
        self.base_url = url_file.read_text().strip()
        self.pid = self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._dir.cleanup()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m support.scripted",
                                 description="OpenAI-compatible test server (scripted responder by default)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--script", help="JSON server script (faults, responder options, ...)")
    ap.add_argument("--responder", help="module:factory returning a responder (default: scripted)")
    ap.add_argument("--request-log", help="append one JSON line per request to this file")
    ap.add_argument("--url-file", help="write the base URL here once the server listens")
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    app = app_from_script(load_script(args.script), responder_factory=args.responder,
                          request_log=args.request_log)
    serve(app, args.host, args.port, url_file=args.url_file, log_level=args.log_level)


if __name__ == "__main__":
    main()

"""Judged-reward benchmark: one GRPO step's rewards against the simulator with realistic judge
latency (issue 9, Speed).

    PYTHONPATH=src .venv/bin/python bench/train/run.py            # all parts, prints a table
    PYTHONPATH=src .venv/bin/python bench/train/run.py --quick    # 16 completions, fewer repeats

A step is 64 completions (8 prompts x 8). The generator task sends per completion one
verification request (n = 4 analyses) and one meta-verification request (its self
evaluation); the verifier task with meta-verification sends one meta-verification per
analysis. Three measurements:

1. wall: the step on the simulator's virtual clock (ServerModel with DeepSeek's serving rates,
   time_scale 1: exact simulated seconds, machine speed plays no part) against the slowest
   single judge call of that step. Target: at most 1.2 x (everything concurrent). Run with the
   reward server's concurrency cap (512) and with the model layer's default (8), which shows
   what a low cap costs.
2. reward CPU: time.process_time around the pure reward functions alone (parsing and the
   formula) per completion, on the simulator's outputs and on outputs padded to 4 KB and 40 KB
   (a typical and a long answer; the reasoning part is split off before parsing). Target: under 1 ms.
3. stack CPU: process_time of the whole judged step (Judge, roles, model layer, the simulated
   provider and server) per completion, and the part of it the simulator spent writing texts.
4. http: the same step through the reward server (uvicorn, in a thread) and `proofloop sim
   serve` (a subprocess, time_scale 200) on the real clock, with the judge's answers whole and
   streamed: the reward request's wall time against the slowest judge call as the reward
   server saw it, and the CPU of this process (reward server, its judge's HTTP client, the
   bench's own client) per completion.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proofloop.models.base import Sampling
from proofloop.models.factory import ModelSettings
from proofloop.models.wrapper import Model
from proofloop.protocol import parse_proof
from proofloop.roles import generate, verify
from proofloop.sim import make_problems
from proofloop.sim.provider import SimProvider
from proofloop.sim.server import ServerModel, run_virtual
from proofloop.train.judge import Judge
from proofloop.train.rewards import generator_reward, verifier_reward

JUDGE_SAMPLING = Sampling(seed=0, max_tokens=65536)  # the paper's verification limit
PAD_KB = (4, 40)  # a typical analysis or proof (its visible answer), and a long one


@dataclass(frozen=True)
class Step:
    prompts: int = 8
    per_prompt: int = 8
    n: int = 4
    cpu_repeats: int = 20

    @property
    def completions(self) -> int:
        return self.prompts * self.per_prompt


FULL, QUICK = Step(), Step(prompts=4, per_prompt=4, cpu_repeats=5)


class Timed:
    """A provider that records each request's start and end on the event loop's clock (the
    virtual clock under run_virtual), passing everything else to the provider it wraps."""

    def __init__(self, provider: Any):
        self.provider = provider
        self.calls: list[tuple[float, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.provider, name)

    async def complete(self, messages, sampling, n):
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            return await self.provider.complete(messages, sampling, n)
        finally:
            self.calls.append((start, loop.time()))

    @property
    def slowest_s(self) -> float:
        return max(end - start for start, end in self.calls)


@dataclass
class Batch:
    """One step's inputs: (problem, completion) pairs, and for the verifier task the proof and
    its target score."""

    generator: list[tuple[str, str]] = field(default_factory=list)
    verifier: list[tuple[str, str, str, float]] = field(default_factory=list)  # problem, proof, analysis, target


def make_batch(step: Step, pad_kb: float = 0.0) -> Batch:
    """The simulator's proofs (generator task) and analyses of them (verifier task)."""
    writer = Model(SimProvider(seed=11))
    sampling = Sampling(seed=0, max_tokens=131072)
    batch = Batch()

    async def build() -> None:
        for problem in make_problems(step.prompts, seed=3):
            for proof in await generate(writer, problem, sampling=sampling, n=step.per_prompt):
                batch.generator.append((problem, pad(proof.raw or "", pad_kb)))
            solution = parse_proof(batch.generator[-1][1]).solution or ""
            v = await verify(writer, problem, solution, sampling=sampling, n=step.per_prompt)
            batch.verifier += [(problem, solution, pad(a.raw or "", pad_kb), 0.5) for a in v.analyses]

    asyncio.run(build())
    return batch


def pad(text: str, kb: float) -> str:
    """`text` with filler in its first section, about `kb` KB long (what the parsers read grows,
    what they find does not)."""
    if kb <= 0 or "\n\n" not in text:
        return text
    head, tail = text.split("\n\n", 1)
    line = "Consider the quantity defined above; the previous estimate bounds it from above.\n"
    filler = line * max(0, int(kb * 1024 - len(text)) // len(line))
    return f"{head}\n\n{filler}{tail}"


# ---- 1 and 3: the judged step on the virtual clock ------------------------------------------


def judged_step(batch: Batch, step: Step, task: str, max_concurrency: int) -> dict[str, Any]:
    """The step's judged rewards on the virtual clock: simulated wall time, slowest call, CPU."""
    provider = Timed(SimProvider(server=ServerModel(time_scale=1), seed=7))
    sim_cpu = [0.0]
    respond = provider.provider.sim.respond

    def timed_respond(*args: Any, **kw: Any) -> Any:  # the simulator writing its texts
        t0 = time.process_time()
        try:
            return respond(*args, **kw)
        finally:
            sim_cpu[0] += time.process_time() - t0

    provider.provider.sim.respond = timed_respond
    judge = Judge(Model(provider, max_concurrency=max_concurrency, endpoint=f"bench-{task}-{max_concurrency}"),
                  n=step.n, sampling=JUDGE_SAMPLING)

    async def run() -> list:
        if task == "generator":
            return await asyncio.gather(*(judge.generator_reward(p, o) for p, o in batch.generator))
        return await asyncio.gather(*(judge.verifier_reward(p, proof, a, t, with_meta=True)
                                      for p, proof, a, t in batch.verifier))

    cpu0 = time.process_time()
    rewards, wall = run_virtual(run())
    cpu = time.process_time() - cpu0
    done = len(rewards)
    return {"task": task, "max_concurrency": max_concurrency, "completions": done, "requests": len(provider.calls),
            "wall_s": round(wall, 1), "slowest_call_s": round(provider.slowest_s, 1),
            "ratio": round(wall / provider.slowest_s, 3), "no_reward": sum(r.total is None for r in rewards),
            "stack_cpu_ms": round(1000 * cpu / done, 3), "sim_cpu_ms": round(1000 * sim_cpu[0] / done, 3),
            "judge_stats": vars(judge.stats)}


# ---- 2: the pure rewards' CPU ------------------------------------------------------------------


def reward_cpu(batch: Batch, repeats: int) -> dict[str, float]:
    """process_time per completion of the pure reward functions (judge scores given)."""
    def per_completion(fn, items) -> float:
        t0 = time.process_time()
        for _ in range(repeats):
            for item in items:
                fn(item)
        return 1000 * (time.process_time() - t0) / (repeats * len(items))

    gen = per_completion(lambda item: generator_reward(item[1], 0.75, 1.0), batch.generator)
    ver = per_completion(lambda item: verifier_reward(item[2], item[3], meta=1.0, needs_meta=True), batch.verifier)
    sizes = [len(o) for _, o in batch.generator] + [len(a) for *_, a, _ in batch.verifier]
    return {"generator_ms": round(gen, 4), "verifier_ms": round(ver, 4),
            "mean_kb": round(statistics.mean(sizes) / 1024, 1)}


# ---- 4: through HTTP ----------------------------------------------------------------------------


def http_step(batch: Batch, step: Step, time_scale: float) -> list[dict[str, Any]]:
    """The generator step through the reward server and `proofloop sim serve`, real clock; the
    judge's answers whole (the reward server's default) and streamed."""
    with tempfile.TemporaryDirectory() as tmp:
        url_file = Path(tmp) / "url"
        sim = subprocess.Popen([sys.executable, "-m", "proofloop.cli", "sim", "serve", "--port", "0",
                                "--time-scale", str(time_scale), "--url-file", str(url_file)],
                               stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not url_file.exists():
                if sim.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("proofloop sim serve did not start")
                time.sleep(0.05)
            return [one_http_step(batch, step, url_file.read_text().strip(), stream) | {"time_scale": time_scale}
                    for stream in (False, True)]
        finally:
            sim.terminate()
            sim.wait(10)


def one_http_step(batch: Batch, step: Step, judge_url: str, stream: bool) -> dict[str, Any]:
    import httpx

    from proofloop.models.base import ACTIVITY
    from proofloop.sim.http import ServerThread
    from proofloop.train.reward_server import create_app, judge_from_settings

    settings = ModelSettings(provider="openai", base_url=judge_url, model="sim-1", stream=stream)
    judge = judge_from_settings(settings, api_key="none", n=step.n, seed=0)
    timed = Timed(judge.model.provider)
    judge.model.provider = timed
    body = {"task": "generator", "items": [{"problem": p, "completion": o} for p, o in batch.generator]}
    with ServerThread(create_app(judge)) as server:
        t0, cpu0, chunks0 = time.monotonic(), time.process_time(), ACTIVITY.streamed
        answer = httpx.post(server.base_url + "/rewards", json=body, timeout=600).json()
        wall, cpu, chunks = time.monotonic() - t0, time.process_time() - cpu0, ACTIVITY.streamed - chunks0
    done = answer["stats"]["completions"]
    return {"stream": stream, "completions": done, "requests": len(timed.calls), "chunks": chunks,
            "wall_s": round(wall, 3), "slowest_call_s": round(timed.slowest_s, 3),
            "ratio": round(wall / timed.slowest_s, 3), "no_reward": answer["stats"]["failed_judgements"],
            "server_cpu_ms": round(1000 * cpu / done, 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="16 completions, fewer repeats")
    ap.add_argument("--time-scale", type=float, default=200.0, help="the HTTP part's simulated seconds per second")
    ap.add_argument("--no-http", action="store_true", help="skip the HTTP part")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    step = QUICK if args.quick else FULL
    batch = make_batch(step)
    out: dict[str, Any] = {"step": vars(step) | {"completions": step.completions},
                           "wall": [judged_step(batch, step, task, cap) for task in ("generator", "verifier")
                                    for cap in (512, 8)],
                           "reward_cpu": {"sim outputs": reward_cpu(batch, step.cpu_repeats)}}
    for kb in PAD_KB:
        out["reward_cpu"][f"{kb} KB outputs"] = reward_cpu(make_batch(step, pad_kb=kb), step.cpu_repeats)
    if not args.no_http:
        out["http"] = http_step(batch, step, args.time_scale)
    print(json.dumps(out, indent=1) if args.json else render(out))


def render(out: dict[str, Any]) -> str:
    lines = [f"step: {out['step']['completions']} completions, n = {out['step']['n']}", "",
             "| task | cap | requests | wall (sim s) | slowest call (sim s) | ratio | stack CPU ms/compl. | of it sim ms |",
             "|---|---|---|---|---|---|---|---|"]
    for w in out["wall"]:
        lines.append(f"| {w['task']} | {w['max_concurrency']} | {w['requests']} | {w['wall_s']} | "
                     f"{w['slowest_call_s']} | {w['ratio']} | {w['stack_cpu_ms']} | {w['sim_cpu_ms']} |")
    lines += ["", "| outputs | mean KB | generator reward ms | verifier reward ms |", "|---|---|---|---|"]
    for name, c in out["reward_cpu"].items():
        lines.append(f"| {name} | {c['mean_kb']} | {c['generator_ms']} | {c['verifier_ms']} |")
    if "http" in out:
        lines += ["", "| judge answers (HTTP, real clock) | requests | streamed chunks | wall s | slowest call s | "
                      "ratio | no reward | reward server CPU ms/compl. |", "|---|---|---|---|---|---|---|---|"]
        for h in out["http"]:
            lines.append(f"| {'streamed' if h['stream'] else 'whole'} (time_scale {h['time_scale']:g}) | "
                         f"{h['requests']} | {h['chunks']} | {h['wall_s']} | {h['slowest_call_s']} | {h['ratio']} | "
                         f"{h['no_reward']} | {h['server_cpu_ms']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

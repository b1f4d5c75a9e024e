"""Search benchmark: the released script's execution scheme against streaming `pool`, `adaptive`
and `pool` with meta-verification, on the simulated DeepSeekMath-V2 and its simulated server.

    .venv/bin/python bench/search/run.py --quick     # reduced, well under a minute
    .venv/bin/python bench/search/run.py             # full: writes the results into README.md

One run compares, on the same problems, with the same search parameters and the same model
seeds (each scheme on a fresh SimProvider + ServerModel, so makespans are comparable):

(a) `release`: search/release.py, the released script's staged execution (stage barriers over
    all problems, batches of 160, 40 / 320 workers, each sample its own request: max_n=1);
(b) `pool`: streaming per problem, n samples per verification request, initial proofs one per
    request, every request with a scheduling priority (Pool's default; the ServerModel orders
    its queue by it like vLLM's `--scheduling-policy priority`; (a) sends none);
(c) `adaptive`: pool's decisions with staged verification;
(d) `pool+meta`: pool with meta-verification in the loop.

Time: the asyncio loop runs on a *virtual clock* (`VirtualClockLoop`): when no callback is
ready it jumps to the next timer instead of sleeping, and the ServerModel runs at
time_scale 1, so its clock reads simulated seconds exactly and the benchmark's own CPU time
(simulator, parsers, orchestrator) costs no simulated time at all. A scaled real clock (the
simulator's default) would add time_scale x our CPU per call to every makespan, noise that
differs per scheme (release sends 64x more requests) on a shared 2-core machine. The
orchestrator's real cost is measured on its own, against `proofloop sim serve --no-timing`
in a subprocess (`orchestrator_overhead`).

Replay: the simulated model is a pure function of (messages, seed, sample index), and every
scheme derives sample indices from proof slots, so (a) and (b) see the same outputs; the
benchmark checks that they select the same proofs, and that (b) replayed over (a)'s call
cache (same namespace, zero requests sent) selects them too. tests/test_bench_search.py
asserts it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proofloop.models.base import ProviderResponse, Sampling
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.wrapper import Model
from proofloop.search.adaptive import Adaptive
from proofloop.search.base import MemoryRecorder, SearchContext
from proofloop.search.decisions import PoolParams
from proofloop.search.pool import Pool
from proofloop.search.release import run_release
from proofloop.sim import SimProvider, make_problems, true_grade, true_quality
from proofloop.sim.model import markers
from proofloop.sim.regimes import config_for, regime
from proofloop.sim.server import ServerModel, Work, run_virtual  # the virtual-clock event loop

HERE = Path(__file__).resolve().parent
NAMESPACE = "bench-search"  # one namespace for every scheme: same call keys, same proof ids
SCHEMES = ("release", "pool", "adaptive", "pool+meta")
RATIO_NAMES = ("makespan_ratio_streaming_vs_release", "verif_token_ratio_adaptive_vs_pool",
               "quality_delta_adaptive_vs_pool", "prompt_token_ratio_n_vs_release", "makespan_ratio_to_lower_bound")


# ---- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run does. `params` are PoolParams fields shared by every scheme."""

    problems: int
    mix: str
    seeds: tuple[int, ...]
    params: dict[str, Any]
    meta: int  # meta ratings per issue-finding analysis in (d)
    adaptive: dict[str, Any]  # Adaptive's own options
    gen_max_tokens: int = 131_072  # the released script: 128K generation tokens
    verify_max_tokens: int = 65_536  # 64K verification tokens
    server: dict[str, Any] = field(default_factory=dict)  # ServerModel overrides (default: DeepSeek's node)
    problem_seed: int = 0
    overhead_calls: int = 2000
    overhead: tuple[tuple[bool, int], ...] = ((True, 64),)  # (streaming, concurrency) per measurement
    sweep: tuple[int, ...] = ()  # server sizes (x one node) to rerun (a) and (b) on, first seed only
    streaming: dict[str, Any] = field(default_factory=dict)  # Pool options (not PoolParams) for (b), (c), (d)
    ablations: tuple[tuple[str, dict[str, Any]], ...] = ()  # (label, streaming options) to rerun (b) with, first seed
    max_sequences: int | None = None  # client cap on samples in flight (Model max_sequences); None: none
    regime: str = "released"  # simulator regime (proofloop.sim.regimes): its SimConfig and problem difficulties

    def pool_params(self, **extra: Any) -> PoolParams:
        return PoolParams(**{**self.params, **extra})


# The released script's parameters (decisions.PRESETS["release"]) scaled down so that four schemes
# x three seeds run in a few minutes of CPU: the verification count (64) and everything per
# prompt (8 analyses, <= 4 per score, 4 samples per prompt) are the script's; the pool is cut
# 16x (128 -> 8 initial proofs, top 32 -> top 2, so a round still makes as many proofs as round
# 0) and the rounds 16 -> 4 (rarely reached: in the simulator a proof passes all 64
# verifications within two rounds on every problem). Generation / verification max_tokens are
# the script's (128K / 64K). The server is one simulated DeepSeek-V3 node (ServerModel defaults).
# Adaptive runs with its default window (max(1, min(top_k, initial) // 8) = 1 here: with 8 proofs
# a problem, verifying 4 acceptance candidates to 64 at once costs ~2x the verification, README).
# The streaming schemes send each initial proof as its own request (request_n=1: it is verified
# the moment it exists, so the server fills up early) and scheduling priorities (Pool's default
# priority=True, read by the ServerModel like vLLM's `priority` field); (a) sends neither, as the
# released script does. The ablations rerun (b) without them (first seed).
STREAMING = dict(request_n=1)
FULL = BenchConfig(
    problems=50, mix="default", seeds=(1, 2, 3),
    params=dict(initial=8, verifications=64, top_k=2, analyses_per_prompt=8, max_per_score=4,
                samples_per_prompt=4, rounds=4),
    meta=1, adaptive=dict(stages=[4, 16, 32, 64]), streaming=STREAMING,
    overhead=((True, 64), (False, 64), (True, 256), (False, 256)), sweep=(4, 16),
    ablations=(("no priority (FIFO server queue)", dict(request_n=1, priority=False)),
               ("one generation request of n per problem", dict(request_n=None, priority=True)),
               ("neither (the previous (b))", dict(request_n=None, priority=False)),
               ("stop early inside a round (Pool stop_early)", dict(request_n=1, stop_early=True))))

# Quick: 12 problems, 32 verifications, 2 seeds; everything else as in FULL. A lighter load:
# the server is latency-bound here, unlike FULL (see the README).
QUICK = BenchConfig(
    problems=12, mix="default", seeds=(1, 2),
    params=dict(initial=8, verifications=32, top_k=2, analyses_per_prompt=8, max_per_score=4,
                samples_per_prompt=4, rounds=2),
    meta=1, adaptive=dict(stages=[4, 16, 32], refine_min=16), streaming=STREAMING, overhead_calls=1000,
    overhead=((True, 64),))


# ---- one scheme ---------------------------------------------------------------------------


@dataclass
class RequestInfo:
    """One request the provider served: enough to rebuild the chain of dependent calls."""

    role: str
    problem: str | None
    first: int  # first sample index (the request's seed; base seeds are 0)
    n: int
    prompt: int
    uncached: int
    longest: int  # completion tokens of its longest sample
    proofs: list[str]  # sim proof ids: made by it (generate/refine) or read by it (verify)
    sent_at: float  # simulated seconds (the virtual clock) when sent and when answered
    done_at: float


class LoggingProvider:
    """Forwards to a SimProvider and notes every request (role, problem, proofs, tokens)."""

    def __init__(self, inner: SimProvider):
        self.inner = inner
        self.name, self.model, self.max_n = inner.name, inner.model, inner.max_n
        self.accepts_priority = inner.accepts_priority  # so the search sends its priorities through us
        self.log: list[RequestInfo] = []

    async def complete(self, messages, sampling: Sampling, n: int) -> ProviderResponse:
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        resp = await self.inner.complete(messages, sampling, n)
        sim = self.inner.sim
        prompt = sim.prompt_text(messages)
        role = sim.role_of(messages)
        problem = next((m["id"] for m in markers(prompt, "problem")), None)
        if role in ("generate", "refine"):
            proofs = [m["id"] for c in resp.completions for m in markers(c.text, "proof")[:1]]
        else:
            proofs = [m["id"] for m in markers(prompt, "proof")[:1]]
        u = resp.usage
        self.log.append(RequestInfo(role, problem, int(sampling.seed or 0), n, u.prompt_tokens,
                                    u.prompt_tokens - u.cached_prompt_tokens,
                                    max((c.completion_tokens or 0) for c in resp.completions), proofs,
                                    sent_at, loop.time()))
        return resp


@dataclass
class SchemeRun:
    name: str
    makespan_s: float
    real_s: float
    selected: list[str | None]  # chosen proof id per problem
    quality: list[float]  # true quality of the chosen proof per problem (0 when none: counted in no_proof)
    grade: list[float]
    no_proof: int
    accepted: int
    by_tag: dict[str, dict[str, Any]]
    server: dict[str, Any]
    log: list[RequestInfo]
    cache: InMemoryCallCache | None

    def tag(self, name: str, key: str) -> float:
        return self.by_tag.get(name, {}).get(key, 0) or 0

    def total(self, key: str) -> float:
        return sum(t.get(key, 0) or 0 for t in self.by_tag.values())

    @property
    def verif_tokens(self) -> float:
        """What verification cost in tokens: billed prompt plus generated."""
        return self.tag("verify", "prompt_tokens") + self.tag("verify", "completion_tokens")

    @property
    def mean_quality(self) -> float:
        return statistics.fmean(self.quality)


def problems_of(cfg: BenchConfig) -> list[str]:
    """The run's problems: the band mix, or the regime's difficulty distribution."""
    return make_problems(cfg.problems, seed=cfg.problem_seed, mix=cfg.mix, beta=regime(cfg.regime).difficulty)


def sampling_for(cfg: BenchConfig) -> tuple[Sampling, Sampling]:
    # Seeds set (base 0): every sample has a fixed index, so outputs replay exactly.
    return (Sampling(temperature=1.0, top_p=0.95, max_tokens=cfg.gen_max_tokens, seed=0),
            Sampling(temperature=1.0, top_p=0.95, max_tokens=cfg.verify_max_tokens, seed=0))


def make_context(cfg: BenchConfig, provider, cache: InMemoryCallCache, endpoint: str) -> SearchContext:
    gen, ver = sampling_for(cfg)
    # The endpoint cap is lifted (release sends up to 320 workers x 160 requests at once): the
    # server's slots and the schemes' own limits are what we compare. `max_sequences` (when set)
    # holds back what exceeds the server's slots and releases it in the search's priority order.
    model = Model(provider, namespace=NAMESPACE, max_concurrency=1_000_000, cache=cache, endpoint=endpoint,
                  max_sequences=cfg.max_sequences)
    return SearchContext(model, gen_sampling=gen, verify_sampling=ver, meta_sampling=ver, recorder=MemoryRecorder())


def strategy_for(name: str, cfg: BenchConfig):
    if name == "pool":
        return Pool(preset=None, **cfg.params, **cfg.streaming)
    if name == "adaptive":
        return Adaptive(preset=None, **cfg.params, **{**cfg.streaming, **cfg.adaptive})
    if name == "pool+meta":
        return Pool(preset=None, **cfg.params, **cfg.streaming, meta=cfg.meta, name="pool+meta")
    raise ValueError(f"no strategy for scheme {name!r}")


async def _solve_all(name: str, problems: list[str], ctx: SearchContext, cfg: BenchConfig):
    if name == "release":
        return await run_release(problems, ctx, cfg.pool_params())
    strategy = strategy_for(name, cfg)
    # Every problem at once, as `proofloop run` does: only the algorithm's own barrier per problem.
    return await asyncio.gather(*(strategy.solve(p, ctx) for p in problems))


def run_scheme(name: str, cfg: BenchConfig, problems: list[str], seed: int) -> SchemeRun:
    """One scheme on a fresh simulated model and server."""
    server = ServerModel(time_scale=1.0, **cfg.server)
    provider = LoggingProvider(SimProvider(config_for(cfg.regime), server=server, seed=seed,
                                           max_n=1 if name == "release" else None))
    cache = InMemoryCallCache()
    ctx = make_context(cfg, provider, cache, endpoint=f"bench-{name}-{seed}-{time.monotonic_ns()}")
    t0 = time.perf_counter()
    results, makespan = run_virtual(_solve_all(name, problems, ctx, cfg))
    real = time.perf_counter() - t0
    qualities, grades, selected, none = [], [], [], 0
    for r in results:
        q = true_quality(r.best.solution or "") if r.best is not None else None
        if q is None:
            none += 1
            q = 0.0
        qualities.append(q)
        grades.append(true_grade(q))
        selected.append(r.best.id if r.best is not None else None)
    acc = ctx.generator.accounting.as_dict()["by_tag"]
    return SchemeRun(name, makespan, real, selected, qualities, grades, none,
                     sum(1 for r in results if r.stop_reason == "accepted"), acc,
                     dataclasses.asdict(server.stats), provider.log, cache)


def replay_selection(cfg: BenchConfig, problems: list[str], seed: int, cache: InMemoryCallCache) -> tuple[list, int]:
    """(b) `pool` replayed over a finished run's call cache: (its selections, requests it sent)."""
    provider = SimProvider(config_for(cfg.regime), server=None, seed=seed)
    ctx = make_context(cfg, provider, cache, endpoint=f"bench-replay-{seed}-{time.monotonic_ns()}")
    results = asyncio.run(_solve_all("pool", problems, ctx, cfg))
    return [r.best.id if r.best is not None else None for r in results], provider.requests


# ---- the lower bound ----------------------------------------------------------------------


def round_of(params: PoolParams, slot: int) -> int:
    return 0 if slot < params.initial else 1 + (slot - params.initial) // params.round_size


def critical_path(log: list[RequestInfo], params: PoolParams, server: ServerModel) -> tuple[list[tuple[int, int]], str]:
    """The longest chain of dependent calls in a pool-style run (one verification request per
    proof or several in sequence): per problem, round by round, the proof whose generation
    request plus verification requests take longest (a round's top-K needs all of them), the
    rounds one after another. Returns the chain of the slowest problem as (uncached prompt
    tokens, longest sample) per call, and that problem's id; or the single longest call when
    that alone takes longer."""
    cost = lambda p, d: p / server.prefill_tps + d / server.decode_tps_seq  # noqa: E731
    made: dict[str, tuple[int, RequestInfo]] = {}  # sim proof id -> (round, request that made it)
    verified: dict[str, list[RequestInfo]] = defaultdict(list)
    for r in log:
        if r.role in ("generate", "refine"):
            for i, pid in enumerate(r.proofs):
                made[pid] = (0 if r.role == "generate" else round_of(params, r.first + i), r)
        elif r.role == "verify":
            for pid in r.proofs:
                verified[pid].append(r)
    per_problem: dict[str, dict[int, list[tuple[int, int]]]] = defaultdict(dict)
    for pid, (rnd, g) in made.items():
        chain = [(g.uncached, g.longest)] + [(v.uncached, v.longest) for v in verified.get(pid, [])]
        best = per_problem[g.problem].get(rnd)
        if best is None or sum(cost(*c) for c in chain) > sum(cost(*c) for c in best):
            per_problem[g.problem][rnd] = chain
    slowest, path = None, []
    for problem, rounds in per_problem.items():
        chain = [c for rnd in sorted(rounds) for c in rounds[rnd]]
        if sum(cost(*c) for c in chain) > sum(cost(*c) for c in path):
            slowest, path = problem, chain
    longest = max(((r.uncached, r.longest) for r in log), key=lambda c: cost(*c), default=(0, 0))
    if cost(*longest) > sum(cost(*c) for c in path):
        return [longest], "single longest call"
    return path, f"problem {slowest}"


def lower_bound(run: SchemeRun, cfg: BenchConfig) -> dict[str, Any]:
    """The bound for the work `run` did on its server: prefill = tokens the server actually
    prefilled (prompt tokens after prefix caching), decode = every completion token, and
    the critical path of its slowest problem."""
    server = ServerModel(time_scale=1.0, **cfg.server)
    path, where = critical_path(run.log, cfg.pool_params(), server)
    work = Work(run.server["prefill_tokens"], run.server["decode_tokens"], path)
    decode_cap = min(server.decode_tps_total, server.slots * server.decode_tps_seq)
    terms = {"prefill_s": work.prefill_tokens / server.prefill_tps, "decode_s": work.decode_tokens / decode_cap,
             "chain_s": sum(p / server.prefill_tps + d / server.decode_tps_seq for p, d in path)}
    return {"bound_s": server.lower_bound(work), **terms, "chain_calls": len(path), "chain_of": where}


# ---- one seed, many seeds -----------------------------------------------------------------


def run_seed(cfg: BenchConfig, seed: int, schemes=SCHEMES, log=print) -> dict[str, Any]:
    problems = problems_of(cfg)
    runs: dict[str, SchemeRun] = {}
    for name in schemes:
        runs[name] = run_scheme(name, cfg, problems, seed)
        r = runs[name]
        log(f"  seed {seed} {name:<9} makespan {r.makespan_s:9.0f} s  quality {r.mean_quality:.3f}  "
            f"({r.real_s:.1f} s real, {int(r.total('samples'))} samples)")
    a, b = runs["release"], runs["pool"]
    replayed, sent = replay_selection(cfg, problems, seed, a.cache)
    for r in runs.values():
        r.cache = None  # the call caches are large (every prompt and completion); only the replay needs one
    out: dict[str, Any] = {
        "seed": seed,
        "runs": runs,
        "same_selection": a.selected == b.selected,
        "replay_same_selection": replayed == a.selected,
        "replay_requests": sent,
        "lower_bound": lower_bound(b, cfg),
    }
    ratios = {"makespan_ratio_streaming_vs_release": b.makespan_s / a.makespan_s,
              "prompt_token_ratio_n_vs_release": b.tag("verify", "prompt_tokens") / a.tag("verify", "prompt_tokens"),
              "makespan_ratio_to_lower_bound": b.makespan_s / out["lower_bound"]["bound_s"]}
    if "adaptive" in runs:
        c = runs["adaptive"]
        ratios["verif_token_ratio_adaptive_vs_pool"] = c.verif_tokens / b.verif_tokens
        ratios["quality_delta_adaptive_vs_pool"] = c.mean_quality - b.mean_quality
    out["ratios"] = ratios
    return out


def spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


# ---- why: timelines and load ----------------------------------------------------------------


def _round(params: PoolParams, r: RequestInfo) -> int:
    if r.role == "generate":
        return 0
    return round_of(params, r.first if r.role == "refine" else r.first // params.verifications)


def stage_timeline(run: SchemeRun, params: PoolParams, problem: str | None = None) -> list[dict[str, Any]]:
    """Per (round, role): requests, when the first was sent and the last answered, and the
    longest sample's own decode time at full per-sequence speed; over all problems, or one."""
    groups: dict[tuple[int, str], list[RequestInfo]] = defaultdict(list)
    for r in run.log:
        if problem is None or r.problem == problem:
            groups[(_round(params, r), r.role)].append(r)
    dseq = ServerModel.decode_tps_seq
    return [{"round": rnd, "role": role, "requests": len(g), "first_sent": min(r.sent_at for r in g),
             "last_sent": max(r.sent_at for r in g), "first_done": min(r.done_at for r in g),
             "last_done": max(r.done_at for r in g), "longest_alone_s": max(r.longest for r in g) / dseq}
            for (rnd, role), g in sorted(groups.items())]


def last_problem(run: SchemeRun) -> str:
    done: dict[str, float] = defaultdict(float)
    for r in run.log:
        done[r.problem] = max(done[r.problem], r.done_at)
    return max(done, key=done.get)


def load_point(cfg: BenchConfig, scale: int, seed: int, log=print) -> dict[str, Any]:
    """(a) and (b) on a server `scale` times one node (slots, prefill and decode throughput
    multiplied; per-sequence speed unchanged): how the ratios depend on load."""
    base = ServerModel()
    sized = dataclasses.replace(cfg, server={"slots": base.slots * scale, "prefill_tps": base.prefill_tps * scale,
                                             "decode_tps_total": base.decode_tps_total * scale,
                                             "cache_tokens": base.cache_tokens * scale})
    problems = problems_of(cfg)
    a, b = (run_scheme(name, sized, problems, seed) for name in ("release", "pool"))
    lb = lower_bound(b, sized)
    log(f"  load x{scale}: release {a.makespan_s:.0f} s, pool {b.makespan_s:.0f} s, bound {lb['bound_s']:.0f} s")
    return {"scale": scale, "seed": seed, "release_s": a.makespan_s, "pool_s": b.makespan_s, "lower_bound": lb}


def ablation(cfg: BenchConfig, label: str, streaming: dict[str, Any], seed: int, log=print) -> dict[str, Any]:
    """(b) again with other streaming options (e.g. no priority): what each option buys."""
    varied = dataclasses.replace(cfg, streaming=streaming)
    problems = problems_of(cfg)
    b = run_scheme("pool", varied, problems, seed)
    lb = lower_bound(b, varied)
    log(f"  ablation {label}: pool {b.makespan_s:.0f} s, bound {lb['bound_s']:.0f} s")
    return {"label": label, "streaming": streaming, "seed": seed, "pool_s": b.makespan_s, "lower_bound": lb,
            "last": last_problem(b), "selected": b.selected, "verif_tokens": b.verif_tokens}


def utilization(run: SchemeRun, cfg: BenchConfig) -> float:
    """Share of the makespan the server would need at full decode throughput for this work."""
    server = ServerModel(time_scale=1.0, **cfg.server)
    return run.server["decode_tokens"] / min(server.decode_tps_total, server.slots * server.decode_tps_seq) / run.makespan_s


# ---- orchestrator overhead ----------------------------------------------------------------


def _overhead_client(url: str, calls: int, concurrency: int, stream: bool, core: int | None) -> dict[str, Any]:
    """Runs in its own process: `calls` small verification calls through Model + OpenAIProvider."""
    from proofloop.models.openai_provider import OpenAIProvider

    if core is not None:
        os.sched_setaffinity(0, {core})
    provider = OpenAIProvider("sim-1", base_url=url, stream=stream)
    model = Model(provider, max_concurrency=concurrency, cache=InMemoryCallCache(),
                  endpoint=f"{url}#overhead-{stream}")
    problem = make_problems(1, seed=99)[0]

    async def main() -> tuple[float, float, int]:
        async def one(i: int):
            msgs = [{"role": "user", "content": f"<!-- sim:role=verify -->\n{problem}\n## Solution\nStep 1. {i}"}]
            return await model.sample(msgs, Sampling(max_tokens=4096, seed=i), 1, tag="verify")
        await asyncio.gather(*(one(-1 - i) for i in range(min(concurrency, 50))))  # warm the connection pool
        t0, c0 = time.perf_counter(), time.process_time()
        done = await asyncio.gather(*(one(i) for i in range(calls)))
        return time.perf_counter() - t0, time.process_time() - c0, sum(1 for d in done if d[0].ok)

    wall, cpu, ok = asyncio.run(main())
    return {"calls": calls, "ok": ok, "wall_s": wall, "cpu_s": cpu, "calls_per_s": ok / wall,
            "cpu_us_per_call": 1e6 * cpu / max(1, ok), "stream": stream, "core": core, "concurrency": concurrency}


def orchestrator_overhead(calls: int, modes: tuple[tuple[bool, int], ...]) -> dict[str, Any]:
    """Start `python -m proofloop.cli sim serve --no-timing` (pinned to the last core), then one
    client process pinned to the first core per (streaming, concurrency) mode; their calls per
    second and client CPU per call."""
    cores = sorted(os.sched_getaffinity(0))
    client_core, server_core = cores[0], cores[-1]
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        url_file = Path(tmp) / "url"
        server = subprocess.Popen([sys.executable, "-m", "proofloop.cli", "sim", "serve", "--no-timing", "--port", "0",
                                   "--url-file", str(url_file)], stdout=subprocess.DEVNULL)
        try:
            if server_core != client_core:
                os.sched_setaffinity(server.pid, {server_core})
            deadline = time.monotonic() + 60
            while not url_file.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sim server did not start (exit code {server.poll()})")
                time.sleep(0.05)
            url = url_file.read_text().strip()
            out = []
            for stream, concurrency in modes:
                proc = subprocess.run([sys.executable, __file__, "--overhead-client", url, "--calls", str(calls),
                                       "--concurrency", str(concurrency), "--core", str(client_core)]
                                      + (["--stream"] if stream else []),
                                      capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    raise RuntimeError(f"overhead client failed: {proc.stderr[-2000:]}")
                out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
    return {"client_core": client_core, "server_core": server_core, "cores": len(cores), "modes": out}


# ---- report -------------------------------------------------------------------------------


def _fmt(x: float, digits: int = 0) -> str:
    if abs(x) >= 1e6:
        return f"{x / 1e6:.2f}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:.0f}k"
    return f"{x:.{digits}f}"


def _ms(values: list[float], digits: int = 0) -> str:
    s = spread(values)
    if len(values) == 1:
        return _fmt(s["mean"], digits)
    return f"{_fmt(s['mean'], digits)} ± {_fmt(s['std'], digits)}"


ROWS = [  # (label, how to read it from a SchemeRun, digits)
    ("makespan (simulated s)", lambda r: r.makespan_s, 0),
    ("generated tokens (all roles)", lambda r: r.total("completion_tokens"), 0),
    ("  of which verification", lambda r: r.tag("verify", "completion_tokens"), 0),
    ("  of which meta-verification", lambda r: r.tag("meta_verify", "completion_tokens"), 0),
    ("billed prompt tokens (all roles)", lambda r: r.total("prompt_tokens"), 0),
    ("  of which verification", lambda r: r.tag("verify", "prompt_tokens"), 0),
    ("  served from the prefix cache", lambda r: r.total("cached_prompt_tokens"), 0),
    ("prefilled by the server (uncached)", lambda r: r.server["prefill_tokens"], 0),
    ("verification tokens (billed prompt + generated)", lambda r: r.verif_tokens, 0),
    ("verifier requests", lambda r: r.tag("verify", "calls"), 0),
    ("verifier samples", lambda r: r.tag("verify", "samples"), 0),
    ("meta-verifier samples", lambda r: r.tag("meta_verify", "samples"), 0),
    ("generator samples (initial + refined)", lambda r: r.tag("generate", "samples") + r.tag("refine", "samples"), 0),
    ("requests (all roles)", lambda r: r.total("calls"), 0),
    ("problems stopped by an accepted proof", lambda r: r.accepted, 1),
    ("mean true quality of the selected proofs", lambda r: r.mean_quality, 3),
    ("share of selected proofs correct (grade 1)", lambda r: statistics.fmean(g == 1.0 for g in r.grade), 3),
    ("most sequences held at once (slots)", lambda r: r.server["max_active"], 0),
    ("benchmark CPU (real s, not simulated)", lambda r: r.real_s, 1),
]

TARGETS = [  # (ratio, target text, test)
    ("makespan_ratio_streaming_vs_release", "(b)/(a) makespan <= 0.6", lambda x: x <= 0.6),
    ("verif_token_ratio_adaptive_vs_pool", "(c)/(b) verification tokens <= 0.35", lambda x: x <= 0.35),
    ("quality_delta_adaptive_vs_pool", "|(c) - (b)| mean true quality <= 0.02", lambda x: abs(x) <= 0.02),
    ("prompt_token_ratio_n_vs_release", "(b)/(a) billed verification prompt <= 1/n", None),
    ("makespan_ratio_to_lower_bound", "(b) makespan / lower bound <= 1.25", lambda x: x <= 1.25),
]


def _timeline_table(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| round | role | requests | sent | answered | longest sample alone |", "|---|---|---:|---|---|---:|"]
    for t in rows:
        out.append(f"| {t['round']} | {t['role']} | {t['requests']} | {t['first_sent']:.0f}-{t['last_sent']:.0f} | "
                   f"{t['first_done']:.0f}-{t['last_done']:.0f} | {t['longest_alone_s']:.0f} |")
    return out


def report(cfg: BenchConfig, seeds: list[dict[str, Any]], overhead: dict[str, Any] | None,
           sweep: list[dict[str, Any]] = (), ablations: list[dict[str, Any]] = ()) -> str:
    schemes = [s for s in SCHEMES if s in seeds[0]["runs"]]
    head = {"release": "(a) release", "pool": "(b) pool", "adaptive": "(c) adaptive", "pool+meta": "(d) pool+meta"}
    rows = ROWS + [("server busy at full decode throughput (share of makespan)", lambda r: utilization(r, cfg), 2),
                   ("requests per simulated second (what the orchestrator must sustain)",
                    lambda r: r.total("calls") / r.makespan_s, 2)]
    lines = [f"Mean ± std over seeds {', '.join(str(s['seed']) for s in seeds)}; {cfg.problems} problems "
             f"(mix `{cfg.mix}`), parameters {cfg.params}, streaming options {cfg.streaming} in (b)-(d) "
             f"(priority on: Pool's default for the simulator), meta m={cfg.meta} in (d), adaptive {cfg.adaptive} "
             f"(window {strategy_for('adaptive', cfg).window}), "
             f"server {cfg.server or 'one node (ServerModel defaults)'}.", "",
             "| | " + " | ".join(head[s] for s in schemes) + " |", "|---|" + "---:|" * len(schemes)]
    for label, get, digits in rows:
        lines.append(f"| {label} | " + " | ".join(_ms([get(sd["runs"][s]) for sd in seeds], digits)
                                               for s in schemes) + " |")
    lines += ["", "Ratios (per seed; the printed value is the mean):", "",
              "| ratio | mean | std | min | max | per seed | target | met |", "|---|---:|---:|---:|---:|---|---|---|"]
    n = cfg.params["verifications"]
    for name, text, test in TARGETS:
        vals = [sd["ratios"][name] for sd in seeds if name in sd["ratios"]]
        if not vals:
            continue
        s = spread(vals)
        ok = all(v <= 1 / n + 1e-12 for v in vals) if test is None else all(test(v) for v in vals)
        lines.append(f"| `{name}` | {s['mean']:.4f} | {s['std']:.4f} | {s['min']:.4f} | {s['max']:.4f} | "
                     f"{', '.join(f'{v:.4f}' for v in vals)} | {text.replace('1/n', f'1/{n} = {1 / n:.4f}')} | "
                     f"{'yes' if ok else 'no'} |")
    lines += ["", "Lower bound for (b)'s work (ServerModel.lower_bound): prefill = tokens the server prefilled "
              "after prefix caching; decode = all completion tokens at min(decode_tps_total, slots x "
              "decode_tps_seq); chain = the slowest problem's dependent calls (per round, the proof whose "
              "generation request + verification request take longest alone; rounds in sequence).",
              "", "| seed | bound (s) | prefill term | decode term | chain term | chain | (b) makespan | (a) makespan |",
              "|---|---:|---:|---:|---:|---|---:|---:|"]
    for sd in seeds:
        lb = sd["lower_bound"]
        lines.append(f"| {sd['seed']} | {lb['bound_s']:.0f} | {lb['prefill_s']:.0f} | {lb['decode_s']:.0f} | "
                     f"{lb['chain_s']:.0f} | {lb['chain_calls']} calls, {lb['chain_of']} | "
                     f"{sd['runs']['pool'].makespan_s:.0f} | {sd['runs']['release'].makespan_s:.0f} |")
    first = seeds[0]
    params = cfg.pool_params()
    lines += ["", f"(a) release, seed {first['seed']}: its stages over all problems (simulated seconds; "
              "'longest sample alone' = that sample's tokens / decode_tps_seq):", ""]
    lines += _timeline_table(stage_timeline(first["runs"]["release"], params))
    b = first["runs"]["pool"]
    slow = last_problem(b)
    lines += ["", f"(b) pool, seed {first['seed']}: the problem that finished last ({slow}):", ""]
    lines += _timeline_table(stage_timeline(b, params, slow))
    if sweep:
        lines += ["", f"Load: (a) and (b) again on servers k x one node (slots, prefill and decode throughput x k; "
                  f"per-sequence speed unchanged), seed {sweep[0]['seed']}:", "",
                  "| server | (a) makespan | (b) makespan | (b)/(a) | bound for (b) | decode term | chain term | "
                  "(b)/bound |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        base = next(sd for sd in seeds if sd["seed"] == sweep[0]["seed"])
        points = [{"scale": 1, "release_s": base["runs"]["release"].makespan_s,
                   "pool_s": base["runs"]["pool"].makespan_s, "lower_bound": base["lower_bound"]}] + list(sweep)
        for pt in points:
            lb = pt["lower_bound"]
            lines.append(f"| x{pt['scale']} | {pt['release_s']:.0f} | {pt['pool_s']:.0f} | "
                         f"{pt['pool_s'] / pt['release_s']:.3f} | {lb['bound_s']:.0f} | {lb['decode_s']:.0f} | "
                         f"{lb['chain_s']:.0f} | {pt['pool_s'] / lb['bound_s']:.3f} |")
    if ablations:
        base = next(sd for sd in seeds if sd["seed"] == ablations[0]["seed"])
        b = base["runs"]["pool"]
        lines += ["", f"Ablations: (b) again with other streaming options, seed {ablations[0]['seed']} "
                  f"((a) = {base['runs']['release'].makespan_s:.0f} s):", "",
                  "| (b) with | options | makespan | (b)/(a) | (b)/bound | verification tokens vs (b) | finished last | same selection |",
                  "|---|---|---:|---:|---:|---:|---|---|"]
        rows = [{"label": "the options above", "streaming": cfg.streaming, "pool_s": b.makespan_s,
                 "lower_bound": base["lower_bound"], "last": last_problem(b), "selected": b.selected,
                 "verif_tokens": b.verif_tokens}] + list(ablations)
        for ab in rows:
            lines.append(f"| {ab['label']} | {ab['streaming']} | {ab['pool_s']:.0f} | "
                         f"{ab['pool_s'] / base['runs']['release'].makespan_s:.3f} | "
                         f"{ab['pool_s'] / ab['lower_bound']['bound_s']:.3f} | "
                         f"{ab['verif_tokens'] / b.verif_tokens:.3f} | {ab['last']} | "
                         f"{'yes' if ab['selected'] == b.selected else 'NO'} |")
    lines += ["", "Replay: " + "; ".join(
        f"seed {sd['seed']}: (a) and (b) select the same proofs: {'yes' if sd['same_selection'] else 'NO'}, "
        f"(b) replayed over (a)'s call cache: {'yes' if sd['replay_same_selection'] else 'NO'} "
        f"({sd['replay_requests']} requests sent)" for sd in seeds) + "."]
    if overhead is not None:
        lines += ["", f"Orchestrator overhead: Model + OpenAIProvider in one process pinned to core "
                  f"{overhead['client_core']}, small verification calls against `python -m proofloop.cli sim serve "
                  f"--no-timing` pinned to core {overhead['server_core']} ({overhead['cores']} cores, shared with "
                  f"other users):", "",
                  "| streaming | calls | concurrency | calls/s | client CPU per call |", "|---|---:|---:|---:|---:|"]
        for m in overhead["modes"]:
            lines.append(f"| {'yes' if m['stream'] else 'no'} | {m['ok']}/{m['calls']} | {m['concurrency']} | "
                         f"{m['calls_per_s']:.0f} | {m['cpu_us_per_call'] / 1000:.1f} ms |")
    return "\n".join(lines)


def summary_ratios(seeds: list[dict[str, Any]]) -> dict[str, float]:
    return {name: spread([sd["ratios"][name] for sd in seeds])["mean"] for name in RATIO_NAMES
            if all(name in sd["ratios"] for sd in seeds)}


def run_bench(cfg: BenchConfig, *, overhead: bool = True, log=print) -> dict[str, Any]:
    """The whole benchmark: every seed, the overhead measurement, the report and the ratios."""
    t0 = time.perf_counter()
    seeds = [run_seed(cfg, s, log=log) for s in cfg.seeds]
    sweep = [load_point(cfg, k, cfg.seeds[0], log=log) for k in cfg.sweep]
    ablations = [ablation(cfg, label, opts, cfg.seeds[0], log=log) for label, opts in cfg.ablations]
    over = orchestrator_overhead(cfg.overhead_calls, cfg.overhead) if overhead else None
    return {"seeds": seeds, "overhead": over, "sweep": sweep, "ablations": ablations,
            "ratios": summary_ratios(seeds), "report": report(cfg, seeds, over, sweep, ablations),
            "seconds": time.perf_counter() - t0}


# ---- README -------------------------------------------------------------------------------

START, END = "<!-- results:start -->", "<!-- results:end -->"


def write_readme(path: Path, command: str, out: dict[str, Any]) -> None:
    block = "\n".join([START, f"Command: `{command}`, run on {_dt.date.today().isoformat()} "
                       f"({out['seconds']:.0f} s on this machine).", "", out["report"], "", "Printed:", "", "```",
                       *(f"{k}={v:.4f}" for k, v in out["ratios"].items()), "```", END])
    text = path.read_text() if path.exists() else f"# Search benchmark\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    path.write_text(head + block + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the reduced version (12 problems, 2 seeds)")
    ap.add_argument("--seeds", type=int, nargs="+", help="model seeds (default: 1 2 3, quick: 1 2)")
    ap.add_argument("--problems", type=int, help="number of simulated problems")
    ap.add_argument("--no-overhead", action="store_true", help="skip the orchestrator-overhead measurement")
    ap.add_argument("--readme", default=None,
                    help="write the results into this README (full mode default: bench/search/README.md; 'none': no)")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    ap.add_argument("--overhead-client", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--calls", type=int, default=3000, help=argparse.SUPPRESS)
    ap.add_argument("--concurrency", type=int, default=256, help=argparse.SUPPRESS)
    ap.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.overhead_client:
        print(json.dumps(_overhead_client(args.overhead_client, args.calls, args.concurrency, args.stream,
                                          args.core)))
        return 0
    cfg = QUICK if args.quick else FULL
    if args.seeds:
        cfg = dataclasses.replace(cfg, seeds=tuple(args.seeds))
    if args.problems:
        cfg = dataclasses.replace(cfg, problems=args.problems)
    out = run_bench(cfg, overhead=not args.no_overhead, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(out["report"])
    print()
    for name in RATIO_NAMES:
        print(f"{name}={out['ratios'][name]:.4f}")
    readme = args.readme if args.readme is not None else (None if args.quick else str(HERE / "README.md"))
    if readme and readme != "none":
        given = list(sys.argv[1:] if argv is None else argv)
        command = ("make bench-search (= .venv/bin/python bench/search/run.py)" if not given
                   else "python bench/search/run.py " + " ".join(given))
        write_readme(Path(readme), command, out)
    if args.json:
        Path(args.json).write_text(json.dumps({"ratios": out["ratios"], "report": out["report"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

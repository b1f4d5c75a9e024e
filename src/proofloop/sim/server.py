"""The simulated inference server: timing model, and the OpenAI-compatible HTTP front end.

`ServerModel` stands for one inference deployment (vLLM/SGLang-like) on a scaled clock:

- `slots` sequences decode at once (a request with n samples is n sequences); more wait in a
  queue ordered by (request priority, arrival): lower priority values first, FIFO among
  equals (vLLM's `--scheduling-policy priority`; with every priority 0, plain FIFO). A
  sequence holds its slot from admission to its last token: a waiting request of better
  priority takes the next free slot but never preempts a running sequence.
- prefill is one FIFO server at `prefill_tps` tokens/s; only tokens missing from the prefix
  cache are prefilled (block-level, LRU, `cache_tokens` capacity), so a prompt sent n times,
  or once with n samples, is prefilled once and later copies report cached tokens.
- decoding is processor sharing: with k sequences decoding each advances at
  min(decode_tps_seq, decode_tps_total / k) tokens/s.
- `time_scale` simulated seconds pass per real second (1000: an hour of work in 3.6 s). On a
  `VirtualClockLoop` (`run_virtual`) with time_scale 1 the clock reads exact simulated
  seconds, jumps over every wait and does not depend on the machine's speed (tests, benches).

The default rates are one DeepSeek-V3-class serving node as DeepSeek reported it (H800,
73.7k input tok/s prefill, 14.8k output tok/s decode, 20-22 tok/s per sequence); see
docs/SIMULATOR.md for the sources and what is a guess.

    >>> import asyncio
    >>> srv = ServerModel(slots=2, decode_tps_seq=10, decode_tps_total=1e9, prefill_tps=1e9, time_scale=1)
    >>> async def main():
    ...     blocks = [(b"a", 100)]
    ...     infos = await asyncio.gather(*(srv.run(blocks, [100]) for _ in range(3)))
    ...     return [round(i.finished_at, 3) for i in infos], infos[1].cached_tokens
    >>> run_virtual(main())[0]   # 2 slots: the third request waits for one (10 s each)
    ([10.0, 10.0, 20.0], 100)
    >>> srv = ServerModel(slots=1, decode_tps_seq=10, decode_tps_total=1e9, prefill_tps=1e9, time_scale=1)
    >>> async def ranked():
    ...     b = [(b"b", 100)]
    ...     runs = [srv.run(b, [100]), srv.run(b, [100]), srv.run(b, [100], priority=-1)]
    ...     return [round(i.finished_at, 3) for i in await asyncio.gather(*runs)]
    >>> run_virtual(ranked())[0]   # 1 slot: the urgent request, sent last, is served second
    [10.0, 30.0, 20.0]

HTTP: `python -m proofloop.sim.server --port 0 --time-scale 1000 --fail-rate 0.1` prints
`PROOFLOOP_SERVING_URL http://127.0.0.1:PORT/v1` once it listens (also `proofloop sim serve`).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import selectors
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Coroutine, Sequence, TypeVar

from proofloop.extras import require

require("fastapi", "sim", "the proofloop simulator's server")  # before serving, which needs it
from proofloop import serving  # noqa: E402
from proofloop.sim.model import SimConfig, SimModel  # noqa: E402

if TYPE_CHECKING:
    from fastapi import FastAPI

T = TypeVar("T")

__all__ = ["ServerModel", "RunInfo", "Work", "lower_bound_makespan", "VirtualClockLoop", "run_virtual", "sim_responder", "make_sim_app",
           "responder_factory", "build_faults", "request_priority", "main"]


@dataclass
class RunInfo:
    """Timing of one request on the simulated server (simulated seconds)."""

    prompt_tokens: int
    cached_tokens: int
    arrived_at: float
    prefill_done_at: float
    finished_at: float  # when the last of its sequences finished
    queued_s: float  # time until its first sequence got a slot

    @property
    def latency_s(self) -> float:
        return self.finished_at - self.arrived_at


@dataclass(eq=False)
class _Seq:
    req: "_Req"
    length: float  # tokens to decode
    future: asyncio.Future
    start_at: float = math.inf  # decode start (after its request's prefill)
    target: float = math.inf  # the work clock's value when it finishes
    state: str = "queued"  # queued -> pending (slot held, prefill) -> decoding -> done | cancelled


@dataclass(eq=False)
class _Req:
    uncached: int
    arrived_at: float
    priority: int = 0
    admitted_at: float | None = None
    prefill_done_at: float | None = None


@dataclass
class Work:
    """What a workload asks of a server, for `lower_bound_makespan`.

    prefill_tokens: prompt tokens that must be prefilled (after prefix caching);
    decode_tokens: all completion tokens; critical_path: the longest chain of calls that must
    run one after another, as (prefill tokens, completion tokens of its longest sample) per call.
    """

    prefill_tokens: float
    decode_tokens: float
    critical_path: Sequence[tuple[float, float]] = ()


def lower_bound_makespan(work: Work, *, slots: int, prefill_tps: float, decode_tps_seq: float,
                         decode_tps_total: float) -> float:
    """Minimum simulated seconds any schedule needs for `work` on such a server:

        max( P / prefill_tps,                                   (prefill is one FIFO server)
             D / min(decode_tps_total, slots * decode_tps_seq), (aggregate decode throughput)
             sum over the critical path of p_i / prefill_tps + d_i / decode_tps_seq )

    Prefill and decode overlap in the model, hence a max, not a sum.
    """
    decode_cap = min(decode_tps_total, slots * decode_tps_seq)
    chain = sum(p / prefill_tps + d / decode_tps_seq for p, d in work.critical_path)
    return max(work.prefill_tokens / prefill_tps, work.decode_tokens / decode_cap, chain)


@dataclass
class ServerStats:
    requests: int = 0
    sequences: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prefill_tokens: int = 0
    decode_tokens: int = 0
    max_active: int = 0  # most slots held at once
    max_queued: int = 0


@dataclass
class ServerModel:
    """One simulated inference server (see the module docstring for the model)."""

    slots: int = 704  # = 14.8k / 21: sequences in flight on a DeepSeek-V3 decode node
    prefill_tps: float = 73_700.0  # DeepSeek: 73.7k input tokens/s per H800 node (prefill)
    decode_tps_seq: float = 21.0  # DeepSeek: 20-22 output tokens/s per sequence
    decode_tps_total: float = 14_800.0  # DeepSeek: 14.8k output tokens/s per H800 node (decode)
    cache_tokens: int = 4_000_000  # guess: prefix-cache capacity (KV cache + host offload)
    time_scale: float = 1000.0  # simulated seconds per real second
    block_chars: int = 256  # prefix-cache block size in prompt characters (~64 tokens)
    stats: ServerStats = field(default_factory=ServerStats)

    def __post_init__(self) -> None:
        if self.slots < 1 or min(self.prefill_tps, self.decode_tps_seq, self.decode_tps_total) <= 0:
            raise ValueError("slots and rates must be positive")
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        # Waiting sequences: a heap on (priority, arrival number, seq); arrival numbers are
        # consecutive per request, so a request's sequences stay together and equals are FIFO.
        self._queue: list[tuple[int, int, _Seq]] = []
        self._arrivals = 0
        # Processor sharing gives every decoding sequence the same speed, so one "work clock"
        # (tokens each decoding sequence has produced since t = 0) serves them all: a sequence
        # finishes when the clock reaches its target. Heaps make each event O(log n).
        self._work = 0.0
        self._pending: list[tuple[float, int, _Seq]] = []  # (start_at, n, seq)
        self._decoding: list[tuple[float, int, _Seq]] = []  # (target, n, seq)
        self._n_decoding = 0
        self._counter = 0
        self._cache: OrderedDict[bytes, int] = OrderedDict()
        self._cache_used = 0
        self._prefill_free_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._t0 = 0.0
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._held = 0  # slots held (pending prefill or decoding)

    # ---- clock

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and self._held + len(self._queue):
                raise RuntimeError("a ServerModel serves one event loop at a time")
            self._loop, self._t0, self._last = loop, loop.time(), 0.0
            self._prefill_free_at = 0.0
        return loop

    def now(self) -> float:
        """Simulated seconds since this server first served a request in the current loop."""
        return (self._loop.time() - self._t0) * self.time_scale if self._loop else 0.0

    def lower_bound(self, work: Work) -> float:
        return lower_bound_makespan(work, slots=self.slots, prefill_tps=self.prefill_tps,
                                    decode_tps_seq=self.decode_tps_seq, decode_tps_total=self.decode_tps_total)

    # ---- prefix cache

    def _lookup_and_insert(self, blocks: Sequence[tuple[bytes, int]]) -> int:
        cached, hit = 0, True
        for h, tokens in blocks:
            if hit and h in self._cache:
                cached += tokens
                self._cache.move_to_end(h)
                continue
            hit = False
            if h not in self._cache:
                self._cache[h] = tokens
                self._cache_used += tokens
            self._cache.move_to_end(h)
        while self._cache_used > self.cache_tokens and self._cache:
            _, tokens = self._cache.popitem(last=False)
            self._cache_used -= tokens
        return cached

    # ---- serving

    async def run(self, blocks: Sequence[tuple[bytes, int]], lengths: Sequence[int], priority: int = 0) -> RunInfo:
        """Serve one request (its prompt blocks, one completion length per sample); returns when
        its last sequence finished on the simulated clock. `priority`: lower values get free
        slots first (vLLM's per-request `priority`); it never preempts a running sequence."""
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an integer, got {priority!r}")
        loop = self._bind()
        now = max(self.now(), self._last)
        self._catch_up(now)
        prompt = sum(t for _, t in blocks)
        cached = self._lookup_and_insert(blocks)
        req = _Req(uncached=prompt - cached, arrived_at=now, priority=priority)
        seqs = [_Seq(req, float(max(0, n)), loop.create_future()) for n in lengths]
        st = self.stats
        st.requests += 1
        st.sequences += len(seqs)
        st.prompt_tokens += prompt
        st.cached_tokens += cached
        st.prefill_tokens += req.uncached
        st.decode_tokens += sum(max(0, n) for n in lengths)
        for s in seqs:
            self._arrivals += 1
            heapq.heappush(self._queue, (priority, self._arrivals, s))
        st.max_queued = max(st.max_queued, len(self._queue))
        self._step()
        try:
            finished = await asyncio.gather(*(s.future for s in seqs)) if seqs else [now]
        except asyncio.CancelledError:
            self._cancel(seqs)
            raise
        prefill_done = req.prefill_done_at if req.prefill_done_at is not None else now
        admitted = req.admitted_at if req.admitted_at is not None else now
        return RunInfo(prompt, cached, now, prefill_done, max(finished), admitted - now)

    def _cancel(self, seqs: list[_Seq]) -> None:
        self._catch_up(max(self.now(), self._last))
        for s in seqs:  # heap entries of cancelled sequences are skipped when they surface
            if s.state in ("pending", "decoding"):
                self._held_adjust(-1)
            if s.state == "decoding":
                self._n_decoding -= 1
            s.state = "cancelled"
        self._queue = [e for e in self._queue if e[2].state == "queued"]
        heapq.heapify(self._queue)
        self._step()

    def _held_adjust(self, delta: int) -> None:
        self._held += delta
        self.stats.max_active = max(self.stats.max_active, self._held)

    def _speed(self) -> float:
        k = self._n_decoding
        return min(self.decode_tps_seq, self.decode_tps_total / k) if k else 0.0

    def _advance(self, now: float) -> None:
        """Move the fluid model forward to `now` (decode progress at the current speed)."""
        dt = now - self._last
        if dt > 0 and self._n_decoding:
            self._work += self._speed() * dt
        self._last = max(self._last, now)

    def _top(self, heap: list[tuple[float, int, _Seq]], state: str) -> tuple[float, int, _Seq] | None:
        while heap and heap[0][2].state != state:
            heapq.heappop(heap)  # a cancelled sequence
        return heap[0] if heap else None

    def _next_event(self) -> float:
        nxt = math.inf
        top = self._top(self._decoding, "decoding")
        if top is not None:
            nxt = self._last + max(0.0, top[0] - self._work) / self._speed()
        top = self._top(self._pending, "pending")
        if top is not None:
            nxt = min(nxt, top[0])
        return nxt

    def _catch_up(self, now: float) -> None:
        """Process every event due by `now` at its exact simulated time (a timer that fires
        late in real time must not shift the simulated schedule), then stand at `now`."""
        for _ in range(1_000_000):
            nxt = self._next_event()
            if nxt > now:
                break
            self._advance(nxt)
            if not self._process() and self._next_event() <= nxt:
                break  # nothing moved: guard against a rounding loop
        self._advance(now)
        self._process()

    def _step(self) -> None:
        self._process()
        self._arm_timer()

    def _process(self) -> bool:
        """At the current simulated time: finish what is due, admit what fits, start decoding
        what is prefilled. Returns whether anything changed."""
        now = self._last
        tol = 1e-6 * (1.0 + abs(self._work))
        any_change = False
        while True:
            changed = False
            while (top := self._top(self._decoding, "decoding")) is not None and top[0] - self._work <= tol:
                s = heapq.heappop(self._decoding)[2]
                s.state = "done"
                self._n_decoding -= 1
                self._held_adjust(-1)
                if not s.future.done():
                    s.future.set_result(now)
                changed = True
            while self._queue and self._held < self.slots:
                s = heapq.heappop(self._queue)[2]
                if s.state != "queued":
                    continue
                self._held_adjust(1)
                r = s.req
                if r.prefill_done_at is None:
                    r.admitted_at = now
                    start = max(now, self._prefill_free_at)
                    r.prefill_done_at = start + r.uncached / self.prefill_tps
                    self._prefill_free_at = r.prefill_done_at
                s.start_at, s.state = r.prefill_done_at, "pending"
                self._counter += 1
                heapq.heappush(self._pending, (s.start_at, self._counter, s))
                changed = True
            while (top := self._top(self._pending, "pending")) is not None and top[0] <= now + 1e-9:
                s = heapq.heappop(self._pending)[2]
                s.state, s.target = "decoding", self._work + s.length
                self._n_decoding += 1
                self._counter += 1
                heapq.heappush(self._decoding, (s.target, self._counter, s))
                changed = True
            if not changed:
                return any_change
            any_change = True

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        nxt = self._next_event()
        if nxt < math.inf and self._loop is not None:
            self._timer = self._loop.call_at(self._t0 + nxt / self.time_scale, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._catch_up(max(self.now(), self._last))
        self._arm_timer()


# ------------------------------------------------------------------------------ virtual clock


class _JumpSelector(selectors.DefaultSelector):
    """Polls real I/O without waiting; when the loop would sleep until its next timer, the
    virtual clock jumps there instead."""

    loop: "VirtualClockLoop"

    def select(self, timeout: float | None = None):
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:  # nothing scheduled: only real I/O (another thread) can wake us
            return super().select(None)
        self.loop.virtual_now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose `time()` is virtual: it stands still while any callback is ready
    and jumps to the next timer when every task waits. Sleeps, timeouts and ServerModel
    timers take no real time and CPU work takes no virtual time, so a ServerModel at
    time_scale 1 reads exact simulated seconds however loaded the machine is."""

    def __init__(self) -> None:
        selector = _JumpSelector()
        self.virtual_now = 0.0
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        return self.virtual_now


def run_virtual(coro: Coroutine[Any, Any, T]) -> tuple[T, float]:
    """Run `coro` on a fresh VirtualClockLoop; returns (its result, virtual seconds it took).

    >>> async def nap():
    ...     await asyncio.sleep(3600)
    ...     return "rested"
    >>> run_virtual(nap())   # an hour, at once
    ('rested', 3600.0)
    """
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        start = runner.get_loop().time()
        result = runner.run(coro)
        return result, runner.get_loop().time() - start


# ------------------------------------------------------------------------------ HTTP


def request_priority(value: Any) -> int:
    """The scheduling priority a request asks for (body field `priority`, as vLLM reads it):
    an integer, default 0; anything else is a ValueError (the HTTP app answers it with a 400)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"priority must be an integer, got {value!r}")
    return value


def sim_responder(model: SimModel, server: ServerModel | None = None) -> serving.Responder:
    """A serving responder: SimModel answers, ServerModel (when given) sets the pace and the
    cached-token count; the body field `priority` (lower first, default 0) orders the
    request in the server's queue. A request without a seed gets fresh sample numbers (a
    per-prompt counter), one with a seed gets samples seed .. seed + n - 1 (replayable)."""
    counters: dict[str, int] = {}

    async def respond(req: serving.ChatRequest) -> serving.Reply:
        if req.seed is not None:
            first = int(req.seed)
        else:
            key = model.request_key(req.messages)
            first = counters.get(key, 0)
            counters[key] = first + req.n
        outs = model.respond(req.messages, req.n, req.max_tokens, first_sample=first)
        prompt_tokens = model.prompt_tokens(req.messages)
        cached = 0
        if server is not None:
            info = await server.run(model.prompt_blocks(req.messages, server.block_chars),
                                    [o.completion_tokens for o in outs], request_priority(req.extra.get("priority")))
            cached = info.cached_tokens
        return serving.Reply([serving.Choice(text=o.text, reasoning_content=o.reasoning,
                                             finish_reason=o.finish_reason, completion_tokens=o.completion_tokens)
                              for o in outs], prompt_tokens=prompt_tokens, cached_prompt_tokens=cached)

    return respond


FAULT_KINDS = ("rate_limit", "server_error", "drop", "drop_mid", "slow", "truncate", "malformed")


def build_faults(fail_rate: float = 0.0, kinds: Sequence[str] = ("rate_limit", "server_error", "drop", "malformed"),
                 *, retry_after: float = 1.0, slow_delay_s: float = 5.0, seed: int = 0) -> serving.Faults:
    """Random faults: each request fails with probability `fail_rate`, the kind drawn evenly
    from `kinds` (429 with Retry-After, 500, dropped connection, ... see serving.Fault)."""
    if not 0 <= fail_rate <= 1:
        raise ValueError("fail_rate must be in [0, 1]")
    bad = set(kinds) - set(FAULT_KINDS)
    if bad:
        raise ValueError(f"unknown fault kinds {sorted(bad)}; choose from {FAULT_KINDS}")
    each = fail_rate / len(kinds) if kinds else 0.0
    faults = [(serving.Fault(kind=k, retry_after=retry_after if k in ("rate_limit", "server_error") else None,
                             delay_s=slow_delay_s), each) for k in kinds]
    return serving.Faults(random=faults if each else [], seed=seed)


def make_sim_app(*, seed: int = 0, config: SimConfig | None = None, server: ServerModel | None = None,
                 faults: serving.Faults | None = None, model_name: str = "sim-1",
                 request_log: Any = None, api_key: str | None = None, max_n: int | None = None) -> FastAPI:
    """The OpenAI-compatible app: serving.make_app around the sim responder."""
    responder = sim_responder(SimModel(config, seed), server)
    app = serving.make_app(responder, faults=faults, request_log=request_log, models=[model_name], api_key=api_key)
    _check_body(app, max_n)
    app.state.sim_server = server
    return app


def _check_body(app: FastAPI, max_n: int | None) -> None:
    """Answer n > max_n (like hosted APIs) and a non-integer `priority` (like vLLM's request
    validation) with a 400, before the responder runs."""
    import json

    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def check_body(request: Request, call_next):
        if request.method == "POST" and request.url.path.endswith("/chat/completions"):
            body = await request.body()
            if max_n is None and b'"priority"' not in body:
                return await call_next(request)  # nothing to check: skip the parse
            try:
                parsed = json.loads(body)
                assert isinstance(parsed, dict)
            except Exception:
                return await call_next(request)  # serving answers a broken body itself
            try:
                n = int(parsed.get("n") or 1)
            except Exception:
                n = 1
            if max_n is not None and n > max_n:
                return _bad_request(f"n must be at most {max_n}")
            try:
                request_priority(parsed.get("priority"))
            except ValueError as e:
                return _bad_request(str(e))
        return await call_next(request)

    def _bad_request(message: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": 400}},
                            status_code=400)


def responder_factory(seed: int = 0, time_scale: float | None = 1000.0, **server_opts: Any) -> serving.Responder:
    """For `python -m proofloop.serving --responder proofloop.sim.server:responder_factory`:
    options come from the script's "responder" entry; time_scale None: no timing."""
    server = ServerModel(time_scale=time_scale, **server_opts) if time_scale else None
    return sim_responder(SimModel(seed=seed), server)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m proofloop.sim.server",
                                 description="The simulated DeepSeekMath-V2 as an OpenAI-compatible server.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: a free port (the URL is printed)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="sim-1")
    ap.add_argument("--max-n", type=int, default=None, help="reject requests with more samples (400)")
    ap.add_argument("--time-scale", type=float, default=1000.0, help="simulated seconds per real second")
    ap.add_argument("--no-timing", action="store_true", help="answer at once (no server model)")
    ap.add_argument("--slots", type=int, default=ServerModel.slots)
    ap.add_argument("--prefill-tps", type=float, default=ServerModel.prefill_tps)
    ap.add_argument("--decode-tps-seq", type=float, default=ServerModel.decode_tps_seq)
    ap.add_argument("--decode-tps-total", type=float, default=ServerModel.decode_tps_total)
    ap.add_argument("--cache-tokens", type=int, default=ServerModel.cache_tokens)
    ap.add_argument("--fail-rate", type=float, default=0.0, help="share of requests that fail on purpose")
    ap.add_argument("--fault-kinds", default="rate_limit,server_error,drop,malformed",
                    help=f"comma-separated, from {','.join(FAULT_KINDS)}")
    ap.add_argument("--retry-after", type=float, default=1.0)
    ap.add_argument("--slow-delay", type=float, default=5.0, help="seconds a 'slow' fault waits (real time)")
    ap.add_argument("--reasoning", choices=["field", "inline", "none"], default="field")
    ap.add_argument("--calibration-data", default=None, help="dsm2 outputs dir to fit the verifier from")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--request-log", default=None, help="append one JSON line per request here")
    ap.add_argument("--url-file", default=None, help="write the base URL here once listening")
    ap.add_argument("--log-level", default="warning")
    return ap


def app_from_args(args: argparse.Namespace) -> FastAPI:
    config = (SimConfig.from_data(args.calibration_data) if args.calibration_data else SimConfig())
    config = config.with_(reasoning=args.reasoning)
    server = None if args.no_timing else ServerModel(
        slots=args.slots, prefill_tps=args.prefill_tps, decode_tps_seq=args.decode_tps_seq,
        decode_tps_total=args.decode_tps_total, cache_tokens=args.cache_tokens, time_scale=args.time_scale)
    kinds = [k.strip() for k in args.fault_kinds.split(",") if k.strip()]
    faults = build_faults(args.fail_rate, kinds, retry_after=args.retry_after, slow_delay_s=args.slow_delay,
                          seed=args.seed)
    return make_sim_app(seed=args.seed, config=config, server=server, faults=faults, model_name=args.model,
                        request_log=args.request_log, api_key=args.api_key, max_n=args.max_n)


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    serving.serve(app_from_args(args), args.host, args.port, url_file=args.url_file, log_level=args.log_level)


if __name__ == "__main__":
    main()

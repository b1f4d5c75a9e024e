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

Over HTTP (sim/app.py): `proofloop sim serve --port 0 --time-scale 1000 --fail-rate 0.1` prints
`PROOFLOOP_SERVING_URL http://127.0.0.1:PORT/v1` once it listens.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import selectors
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine, Sequence, TypeVar

T = TypeVar("T")

__all__ = ["ServerModel", "RunInfo", "Work", "lower_bound_makespan", "VirtualClockLoop", "run_virtual",
           "request_priority"]


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

    async def run(self, blocks: Sequence[tuple[bytes, int]], lengths: Sequence[int], priority: int = 0,
                  on_sequence_done: Callable[[], None] | None = None) -> RunInfo:
        """Serve one request (its prompt blocks, one completion length per sample); returns when
        its last sequence finished on the simulated clock. `priority`: lower values get free
        slots first (vLLM's per-request `priority`); it never preempts a running sequence.
        `on_sequence_done` is called as each sequence finishes (what a streamed choice's
        finish_reason tells a client)."""
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
            if on_sequence_done is not None:
                s.future.add_done_callback(lambda f: None if f.cancelled() else on_sequence_done())
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


# ------------------------------------------------------------------------------ requests


def request_priority(value: Any) -> int:
    """The scheduling priority a request asks for (body field `priority`, as vLLM reads it):
    an integer, default 0; anything else is a ValueError (the HTTP app answers it with a 400)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"priority must be an integer, got {value!r}")
    return value

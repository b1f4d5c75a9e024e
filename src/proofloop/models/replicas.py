"""Several endpoints (replicas) serving one model, behind the one provider interface.

`ReplicaSet` is a Provider that sends each request to one of its member providers (one per
OpenAI-compatible server of the same model). The wrapper (models/wrapper.py) keeps its
retries, timeouts, call cache and accounting; the replica set only decides *where* each
attempt goes:

- Affinity. A request's key is the hash of its messages, so every request for the same prompt
  (all verifications of one proof, all generations of one problem) prefers the same replica,
  whose prefix cache already holds that prompt. The preferred replica is the one with the
  highest rendezvous weight hash(replica, key) among the healthy ones: when a replica leaves
  or returns, only the keys that prefer it move.
- Load. Each replica has at most `capacity` requests in flight; the preferred one is passed
  over when it is full or carries more than `max_skew` times the average load, and the
  request goes to the least-loaded replica with room instead. When every healthy replica is
  full, the request waits for a slot.
- Breaker. `BreakerPolicy.threshold` failed requests in a row (retryable errors: refused or
  dropped connections, timeouts, 5xx, 429) take a replica out for `cool_down_s`; after that
  one probe request is let through: success closes the breaker, failure opens it again.
- Failover. A failed attempt is raised to the wrapper (which records and retries it) with
  `retry_after` 0 when another replica can take it, and the key remembers which replica
  failed it, so the retry goes elsewhere at once. An attempt the wrapper cut off (its attempt
  timeout) is retried elsewhere too, but not counted by the breaker: a replica that hangs is
  taken out by its own idle-read timeouts. The call-cache key does not name the
  endpoint, so a sample answered by any replica is stored once under the same key.

`report()` says which replica served how many requests, their failures and breaker openings,
and the affinity share: of the requests whose prompt was sent at least twice, the share that
went to that prompt's most-used replica. That is this process's view; the store keeps which
replica answered every call (llm_calls.endpoint), and `affinity_share` of `Store.served_by`
gives the same share over all of a run's calls, whichever processes made them.

    >>> import asyncio
    >>> from proofloop.models.base import Completion, ProviderResponse, Sampling, Usage
    >>> class Echo:
    ...     name = "echo"; model = "m"; max_n = None
    ...     def __init__(self, endpoint): self.endpoint = endpoint
    ...     async def complete(self, messages, sampling, n):
    ...         return ProviderResponse([Completion(self.endpoint) for _ in range(n)], Usage(1, 1))
    >>> replicas = ReplicaSet([Echo("http://a/v1"), Echo("http://b/v1")], capacity=4)
    >>> msgs = [{"role": "user", "content": "Prove it."}]
    >>> served = {asyncio.run(replicas.complete(msgs, Sampling(), 1)).completions[0].text for _ in range(5)}
    >>> len(served), replicas.report()["affinity_share"]   # one prompt: always the same replica
    (1, 1.0)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from proofloop.errors import ModelConnectionError, ModelError, UserInputError
from proofloop.models.base import Message, Provider, ProviderResponse, Sampling, Timeouts

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- pure choice


def split_base_urls(value: str | Sequence[str] | None) -> list[str]:
    """The servers named by a --base-url value: comma-separated and/or repeated, blanks dropped.

    >>> split_base_urls("http://a:8000/v1, http://b:8000/v1") == split_base_urls(["http://a:8000/v1,", "http://b:8000/v1"])
    True
    """
    if value is None:
        return []
    parts = [value] if isinstance(value, str) else list(value)
    return [u.strip() for part in parts for u in part.split(",") if u.strip()]


def affinity_key(messages: list[Message]) -> str:
    """The key that keeps requests for one prompt on one replica: a hash of the messages."""
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def rendezvous_weight(name: str, key: str) -> int:
    """The weight of replica `name` for `key`; the highest weight wins (rendezvous hashing)."""
    return int.from_bytes(hashlib.sha256(f"{name}\x00{key}".encode("utf-8")).digest()[:8], "big")


def rank(key: str, names: Sequence[str]) -> list[str]:
    """`names` from most to least preferred for `key`. Removing a name keeps the others' order.

    >>> rank("proof-1", ["a", "b", "c"]) == [n for n in rank("proof-1", ["a", "b", "c", "d"]) if n != "d"]
    True
    """
    return sorted(names, key=lambda n: (rendezvous_weight(n, key), n), reverse=True)


@dataclass(frozen=True)
class Slot:
    """What the chooser sees of one replica: its requests in flight and how many it may have
    now (0: taken out by its breaker; 1 while a half-open breaker waits for its probe)."""

    name: str
    in_flight: int
    limit: int

    @property
    def room(self) -> bool:
        return self.in_flight < self.limit


def choose(key: str, slots: Sequence[Slot], *, avoid: str | None = None, max_skew: float = 2.0) -> int | None:
    """The index of the slot to send a request for `key` to; None when no slot has room.

    The preferred slot is the first in rendezvous order among those in service (limit > 0),
    leaving out `avoid` (the replica that just failed this key) when another has room. It
    takes the request when it has room and at most `max_skew` times the average load after
    the request; otherwise the least-loaded slot with room does (ties: rendezvous order).

    >>> slots = [Slot("a", 0, 2), Slot("b", 0, 2)]
    >>> choose("k", slots) == choose("k", slots)
    True
    >>> choose("k", [Slot("a", 2, 2), Slot("b", 0, 2)]), choose("k", [Slot("a", 0, 0), Slot("b", 1, 1)])
    (1, None)
    """
    with_room = [s for s in slots if s.room]
    if not with_room:
        return None
    in_service = [s for s in slots if s.limit > 0 and (s.name != avoid or not any(o.name != avoid for o in with_room))]
    order = {name: i for i, name in enumerate(rank(key, [s.name for s in in_service]))}
    candidates = [s for s in with_room if s.name in order]
    preferred = min(in_service, key=lambda s: order[s.name])
    average_after = (sum(s.in_flight for s in in_service) + 1) / len(in_service)
    if preferred.room and preferred.in_flight + 1 <= max(1.0, max_skew * average_after):
        best = preferred
    else:
        best = min(candidates, key=lambda s: (s.in_flight, order[s.name]))
    return list(slots).index(best)


def affinity_share(served: Iterable[Mapping[str, int]]) -> float | None:
    """Given, per prompt, how many requests (or samples) each replica answered: of those whose
    prompt was answered at least twice, the share answered by that prompt's most-used replica.
    None when no prompt was answered twice.

    >>> affinity_share([{"a": 3}, {"a": 1, "b": 1}, {"b": 1}])   # (3 + 1) of 5
    0.8
    """
    repeated = [counts for counts in served if sum(counts.values()) >= 2]
    total = sum(sum(counts.values()) for counts in repeated)
    return sum(max(counts.values()) for counts in repeated) / total if total else None


# ---------------------------------------------------------------------------- breaker


@dataclass(frozen=True)
class BreakerPolicy:
    threshold: int = 3  # failed requests in a row that take a replica out
    cool_down_s: float = 30.0  # how long it stays out before one probe request is let through


@dataclass
class Breaker:
    """A circuit breaker: closed (in service), open (out until `open_until`), half-open (the
    cool-down is over: one probe request decides). Times come from the caller's clock.

    >>> b = Breaker(BreakerPolicy(threshold=2, cool_down_s=10))
    >>> b.failure(0.0); b.state(0.0)
    'closed'
    >>> b.failure(1.0); b.state(5.0), b.state(11.0)
    ('open', 'half_open')
    >>> b.success(); b.state(11.0), b.opened
    ('closed', 1)
    """

    policy: BreakerPolicy
    failures: int = 0  # failed requests in a row
    open_until: float | None = None
    opened: int = 0  # how many times it opened

    def state(self, now: float) -> str:
        if self.open_until is None:
            return "closed"
        return "open" if now < self.open_until else "half_open"

    def success(self) -> None:
        self.failures, self.open_until = 0, None

    def failure(self, now: float) -> None:
        half_open = self.state(now) == "half_open"
        self.failures += 1
        if half_open or (self.open_until is None and self.failures >= self.policy.threshold):
            self.open_until = now + self.policy.cool_down_s
            self.opened += 1


# ---------------------------------------------------------------------------- the provider


@dataclass
class Replica:
    provider: Provider
    name: str
    breaker: Breaker
    in_flight: int = 0
    requests: int = 0  # requests it answered
    samples: int = 0
    failures: int = 0  # failed attempts it was sent
    refused: bool = False  # its last failure was "nobody there" (refused, unresolvable)

    def slot(self, now: float, capacity: int) -> Slot:
        state = self.breaker.state(now)
        limit = {"closed": capacity, "half_open": 1, "open": 0}[state]
        return Slot(self.name, self.in_flight, limit)


def endpoint_of(provider: Provider, index: int) -> str:
    return getattr(provider, "endpoint", None) or f"{provider.name}:{provider.model}#{index}"


class ReplicaSet:
    """A Provider over several providers of one model (see the module docstring).

    `capacity` is the most requests in flight per replica (None: no cap of its own; the
    wrapper's concurrency cap still bounds the total); `clock` is injectable for tests."""

    def __init__(self, members: Sequence[Provider], *, capacity: int | None = None,
                 breaker: BreakerPolicy = BreakerPolicy(), max_skew: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        if not members:
            raise UserInputError("a replica set needs at least one endpoint")
        names = [endpoint_of(p, i) for i, p in enumerate(members)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UserInputError(f"the same endpoint is listed twice: {', '.join(twice)}")
        if len({p.model for p in members}) > 1:
            raise UserInputError("all replicas must serve the same model")
        self.replicas = [Replica(p, n, Breaker(breaker)) for p, n in zip(members, names)]
        self.name = members[0].name
        self.model = members[0].model
        caps = [p.max_n for p in members if p.max_n is not None]
        self.max_n = min(caps) if caps else None
        self.endpoint = ",".join(names)
        self.capacity = capacity
        self.max_skew = max_skew
        self.clock = clock
        self._failed_on: OrderedDict[str, str] = OrderedDict()  # key -> replica that last failed it
        self._served: dict[str, Counter[str]] = {}  # key -> replica -> requests answered
        # Per event loop: set when a request ends, to wake requests waiting for a free slot.
        self._freed: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event]" = (
            weakref.WeakKeyDictionary())

    def cap_each(self, per_replica: int) -> int:
        """Cap every replica at `per_replica` requests in flight; return the total to give the
        wrapper as its concurrency cap."""
        self.capacity = per_replica
        return per_replica * len(self.replicas)

    def apply_timeouts(self, timeouts: Timeouts) -> None:
        for r in self.replicas:
            if hasattr(r.provider, "apply_timeouts"):
                r.provider.apply_timeouts(timeouts)
        self.timeouts = timeouts

    async def aclose(self) -> None:
        for r in self.replicas:
            close = getattr(r.provider, "aclose", None)
            if close is not None:
                await close()

    async def complete(self, messages: list[Message], sampling: Sampling, n: int) -> ProviderResponse:
        key = affinity_key(messages)
        replica = await self._acquire(key)
        verdict: bool | None = None  # None: cancelled, neither a success nor a failure
        try:
            resp = await replica.provider.complete(messages, sampling, n)
            verdict = True
        except ModelError as e:
            verdict = not e.retryable  # a bad request is the request's fault, not the replica's
            if e.retryable:
                self._failed(replica, key, e)
            raise
        except asyncio.CancelledError:
            # The wrapper's attempt timeout or a search that no longer needs the call: only
            # the first is the replica's fault and they look the same here, so the breaker
            # does not count it, but a retry of this prompt goes elsewhere.
            self._avoid(key, replica)
            raise
        finally:
            self._release(replica, verdict)
        self._answered(replica, key, len(resp.completions))
        return replace(resp, endpoint=replica.name)

    # -- choosing and holding a slot -----------------------------------------------------------

    def slots(self) -> list[Slot]:
        now, capacity = self.clock(), self.capacity if self.capacity is not None else 1 << 30
        return [r.slot(now, capacity) for r in self.replicas]

    async def _acquire(self, key: str) -> Replica:
        while True:
            slots = self.slots()
            if not any(s.limit > 0 for s in slots):
                raise self._all_out()
            i = choose(key, slots, avoid=self._failed_on.get(key), max_skew=self.max_skew)
            if i is not None:
                self.replicas[i].in_flight += 1
                return self.replicas[i]
            # Every replica in service is full (or probing): wait until a request ends.
            loop = asyncio.get_running_loop()
            if loop not in self._freed:
                self._freed[loop] = asyncio.Event()
            await self._freed[loop].wait()

    def _release(self, replica: Replica, verdict: bool | None) -> None:
        replica.in_flight -= 1
        if verdict is True:
            replica.breaker.success()
        elif verdict is False:
            replica.breaker.failure(self.clock())
        freed = self._freed.pop(asyncio.get_running_loop(), None)
        if freed is not None:  # wake every waiter; those that find no room wait on a new event
            freed.set()

    def _all_out(self) -> ModelConnectionError:
        """Every replica's breaker is open: retryable, with Retry-After = the first cool-down's end."""
        now = self.clock()
        wait = min(r.breaker.open_until for r in self.replicas if r.breaker.open_until is not None) - now
        # Refused everywhere counts as "nobody there", so the wrapper soon calls it unreachable.
        return ModelConnectionError(f"all {len(self.replicas)} endpoints are out after repeated failures; "
                                    f"the first is tried again in {wait:.1f}s", retry_after=max(0.0, wait),
                                    refused=all(r.refused for r in self.replicas))

    # -- outcomes ------------------------------------------------------------------------------

    def _failed(self, replica: Replica, key: str, error: ModelError) -> None:
        replica.failures += 1
        replica.refused = bool(getattr(error, "refused", False))
        self._avoid(key, replica)
        error.message = f"{error.message} [endpoint {replica.name}]"
        # Another replica that looks healthy can take the retry now: no backoff. When every
        # replica is failing, the wrapper's backoff (or a server's Retry-After) stands.
        healthy = [r for r in self.replicas if r is not replica and r.breaker.failures == 0
                   and r.breaker.state(self.clock()) == "closed"]
        if healthy:
            error.retry_after = 0.0
        log.info("endpoint %s failed (%s); %d other endpoint(s) healthy", replica.name, error.kind, len(healthy))

    def _avoid(self, key: str, replica: Replica) -> None:
        """The next attempt for `key` goes to another replica if one has room."""
        self._failed_on[key] = replica.name
        self._failed_on.move_to_end(key)
        while len(self._failed_on) > 10_000:  # a bounded memory of recent failures
            self._failed_on.popitem(last=False)

    def _answered(self, replica: Replica, key: str, samples: int) -> None:
        replica.requests += 1
        replica.samples += samples
        replica.refused = False
        self._failed_on.pop(key, None)
        self._served.setdefault(key, Counter())[replica.name] += 1

    # -- report --------------------------------------------------------------------------------

    def affinity_share(self) -> float | None:
        """Of the requests whose prompt was answered at least twice, the share answered by
        that prompt's most-used replica (None: no prompt was sent twice)."""
        return affinity_share(self._served.values())

    def report(self) -> dict[str, Any]:
        now = self.clock()
        return {"affinity_share": self.affinity_share(),
                "replicas": [{"endpoint": r.name, "requests": r.requests, "samples": r.samples,
                              "failures": r.failures, "breaker_opened": r.breaker.opened,
                              "state": r.breaker.state(now)} for r in self.replicas]}

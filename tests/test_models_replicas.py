"""Many endpoints for one model (models/replicas.py): the chooser, the breaker, load spreading,
failover through the wrapper, and whole runs over two HTTP servers, one healthy, one failing
or killed mid-run.

Nothing here depends on machine speed: load is observed with events (requests held open until
the test lets them go), the breaker runs on a hand-moved clock, and the HTTP runs check counts
in the servers' request logs, not timings.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofloop.errors import BadRequestError, ModelConnectionError, ServerError, UserInputError
from proofloop.models.base import Completion, ProviderResponse, RetryPolicy, Sampling, Usage
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.factory import ModelSettings
from proofloop.models.openai_provider import check_base_urls
from proofloop.models.replicas import (BreakerPolicy, ReplicaSet, Slot, affinity_key, affinity_share, choose, rank,
                                       split_base_urls)
from proofloop.models.wrapper import Model
from proofloop.runs import ModelSetup, create_prove_run, execute
from proofloop.sim import make_problems
from proofloop.sim.app import make_sim_app
from proofloop.sim.http import Fault, Faults, ServerThread, fingerprint, read_request_log
from proofloop.store import Store
from support.cli import CLI, cli_env, stored_calls
from support.scripted import ServerProcess
from support.servers import running_server

# ---------------------------------------------------------------------------- the chooser

NAMES = [f"http://10.0.0.{i}:8000/v1" for i in range(6)]


@st.composite
def slot_lists(draw):
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    slots = []
    for name in names:
        limit = draw(st.integers(0, 4))
        slots.append(Slot(name, draw(st.integers(0, 5)), limit))
    return slots


@given(key=st.text(max_size=8), slots=slot_lists(), avoid=st.one_of(st.none(), st.sampled_from(NAMES)),
       skew=st.floats(1.0, 4.0))
@settings(max_examples=400, deadline=None)
def test_choose_picks_a_slot_with_room_preferring_the_rendezvous_winner(key, slots, avoid, skew):
    i = choose(key, slots, avoid=avoid, max_skew=skew)
    with_room = [s for s in slots if s.room]
    if not with_room:
        assert i is None
        return
    assert i is not None and slots[i].room
    others_with_room = [s for s in with_room if s.name != avoid]
    if others_with_room:
        assert slots[i].name != avoid  # a retry never goes back to the replica that just failed it
    in_service = [s for s in slots if s.limit > 0 and (s.name != avoid or not others_with_room)]
    preferred = next(s for s in slots if s.name == rank(key, [s.name for s in in_service])[0])
    average_after = (sum(s.in_flight for s in in_service) + 1) / len(in_service)
    if preferred.room and preferred.in_flight + 1 <= max(1.0, skew * average_after):
        assert slots[i] == preferred
    else:  # fallback by load: nobody eligible carries less
        eligible = [s for s in with_room if s in in_service]
        assert slots[i].in_flight == min(s.in_flight for s in eligible)


@given(key=st.text(max_size=8), names=st.lists(st.sampled_from(NAMES), min_size=2, max_size=6, unique=True),
       data=st.data())
def test_rank_is_stable_when_a_replica_leaves(key, names, data):
    gone = data.draw(st.sampled_from(names))
    assert rank(key, [n for n in names if n != gone]) == [n for n in rank(key, names) if n != gone]
    assert sorted(rank(key, names)) == sorted(names)


def test_rank_spreads_keys_evenly():
    firsts = Counter(rank(f"proof-{i}", NAMES[:3])[0] for i in range(3000))
    assert all(800 <= c <= 1200 for c in firsts.values()), firsts  # about 1000 each


def test_split_and_check_base_urls():
    assert split_base_urls(["http://a/v1, http://b/v1", " ", "http://c/v1"]) == ["http://a/v1", "http://b/v1",
                                                                                 "http://c/v1"]
    assert check_base_urls(" http://a:1/v1 ,http://b:2/v1") == "http://a:1/v1,http://b:2/v1"
    assert ModelSettings(base_url="http://a/v1,http://b/v1").base_urls == ["http://a/v1", "http://b/v1"]
    with pytest.raises(UserInputError, match="base URL must look like"):
        check_base_urls("http://a:1/v1,ftp://b")
    with pytest.raises(UserInputError, match="no base URL"):
        check_base_urls(" , ")


# ---------------------------------------------------------------------------- scripted replicas


class Instant:
    """A replica that answers at once (or raises `broken`)."""

    name, model, max_n = "fake", "m", None

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.calls = 0
        self.broken: Exception | None = None

    async def complete(self, messages, sampling, n):
        self.calls += 1
        if self.broken is not None:
            raise self.broken
        await self.wait()
        return ProviderResponse([Completion(f"{self.endpoint} {messages[-1]['content']}") for _ in range(n)],
                                Usage(5, n))

    async def wait(self) -> None:
        pass


class Held(Instant):
    """A replica whose requests wait until the test releases them: load is then observable."""

    def __init__(self, endpoint: str):
        super().__init__(endpoint)
        self.gates: list[asyncio.Event] = []
        self.in_flight = self.most_in_flight = 0

    async def wait(self) -> None:
        gate = asyncio.Event()
        self.gates.append(gate)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await gate.wait()
        finally:
            self.in_flight -= 1

    def release_all(self) -> None:
        for g in self.gates:
            g.set()


def msgs(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"prompt {i}"}]


async def settle() -> None:
    for _ in range(20):  # let every runnable task reach its next await
        await asyncio.sleep(0)


def test_load_is_spread_by_in_flight_requests_and_capped_per_replica():
    a, b = Held("http://a/v1"), Held("http://b/v1")
    replicas = ReplicaSet([a, b], capacity=3)

    async def scenario():
        tasks = [asyncio.ensure_future(replicas.complete(msgs(i), Sampling(), 1)) for i in range(10)]
        await settle()
        in_flight = (a.in_flight, b.in_flight)
        waiting = sum(not t.done() for t in tasks) - sum(in_flight)
        a.release_all(); b.release_all()
        await settle()
        while not all(t.done() for t in tasks):
            a.release_all(); b.release_all()
            await settle()
        return in_flight, waiting, [t.result() for t in tasks]

    in_flight, waiting, results = asyncio.run(scenario())
    assert in_flight == (3, 3) and waiting == 4  # both full, the rest wait for a slot
    assert max(a.most_in_flight, b.most_in_flight) == 3
    assert len(results) == 10 and {r.endpoint for r in results} == {"http://a/v1", "http://b/v1"}


def test_one_prompt_stays_on_one_replica_until_it_is_skewed():
    a, b = Held("http://a/v1"), Held("http://b/v1")
    replicas = ReplicaSet([a, b], capacity=100, max_skew=1.5)
    home = rank(affinity_key(msgs(0)), [a.endpoint, b.endpoint])[0]

    async def scenario():
        tasks = [asyncio.ensure_future(replicas.complete(msgs(0), Sampling(), 1)) for _ in range(8)]
        await settle()
        counts = {a.endpoint: a.in_flight, b.endpoint: b.in_flight}
        a.release_all(); b.release_all()
        await asyncio.gather(*tasks)
        return counts

    counts = asyncio.run(scenario())
    # The prompt's own replica takes requests while it carries at most 1.5 times the average
    # load: 6 of 8 here (by hand: a a? no, b, a, a, b, a, a, a).
    assert counts[home] == 6 and counts[next(n for n in counts if n != home)] == 2


def test_breaker_opens_after_repeated_failures_and_closes_after_the_cool_down():
    now = [0.0]
    a, b = Instant("http://a/v1"), Instant("http://b/v1")
    replicas = ReplicaSet([a, b], capacity=4, breaker=BreakerPolicy(threshold=3, cool_down_s=30),
                          clock=lambda: now[0])
    a_keys = [i for i in range(200) if rank(affinity_key(msgs(i)), [a.endpoint, b.endpoint])[0] == a.endpoint]
    a.broken = ServerError("down", status=503)

    async def send(i):
        try:
            return (await replicas.complete(msgs(i), Sampling(), 1)).endpoint
        except ServerError as e:
            return e

    async def scenario():
        out = {}
        out["failing"] = [await send(i) for i in a_keys[:3]]
        out["state_open"] = replicas.report()["replicas"][0]["state"]
        out["while_open"] = [await send(i) for i in a_keys[3:8]]
        a_calls_while_open = a.calls
        now[0] = 29.9
        out["still_open"] = await send(a_keys[8])
        out["a_calls"] = (a_calls_while_open, a.calls)
        now[0] = 30.0  # cool-down over: one probe; it fails, so the breaker opens again
        out["probe_fails"] = await send(a_keys[9])
        out["reopened"] = replicas.report()["replicas"][0]["state"]
        now[0] = 60.0
        a.broken = None
        out["probe_ok"] = await send(a_keys[10])
        out["closed"] = replicas.report()["replicas"][0]["state"]
        out["back_home"] = [await send(i) for i in a_keys[11:15]]
        return out

    out = asyncio.run(scenario())
    assert all(isinstance(e, ServerError) and "[endpoint http://a/v1]" in e.message for e in out["failing"])
    assert all(e.retry_after == 0.0 for e in out["failing"])  # b is healthy: retry there at once
    assert out["state_open"] == "open"
    assert out["while_open"] == [b.endpoint] * 5 and out["still_open"] == b.endpoint
    assert out["a_calls"] == (3, 3)  # nothing was sent to a while it was out
    assert isinstance(out["probe_fails"], ServerError) and out["reopened"] == "open"
    assert out["probe_ok"] == a.endpoint and out["closed"] == "closed"
    assert out["back_home"] == [a.endpoint] * 4
    assert replicas.report()["replicas"][0]["breaker_opened"] == 2


def test_all_replicas_out_is_retryable_with_the_first_cool_down_as_retry_after():
    now = [100.0]
    a, b = Instant("http://a/v1"), Instant("http://b/v1")
    a.broken = b.broken = ModelConnectionError("refused", refused=True)
    replicas = ReplicaSet([a, b], breaker=BreakerPolicy(threshold=1, cool_down_s=10), clock=lambda: now[0])

    async def scenario():
        for i in range(2):
            with pytest.raises(ModelConnectionError):
                await replicas.complete(msgs(i), Sampling(), 1)
        now[0] = 104.0
        with pytest.raises(ModelConnectionError, match="all 2 endpoints are out") as out:
            await replicas.complete(msgs(9), Sampling(), 1)
        return out.value

    err = asyncio.run(scenario())
    assert err.retryable and err.retry_after == pytest.approx(6.0)
    assert (a.calls, b.calls) == (1, 1)


def test_a_bad_request_is_not_held_against_the_replica():
    a, b = Instant("http://a/v1"), Instant("http://b/v1")
    a.broken = BadRequestError("prompt too long", status=400)
    replicas = ReplicaSet([a, b], breaker=BreakerPolicy(threshold=1))
    a_keys = [i for i in range(50) if rank(affinity_key(msgs(i)), [a.endpoint, b.endpoint])[0] == a.endpoint]

    async def scenario():
        for i in a_keys[:3]:
            with pytest.raises(BadRequestError):
                await replicas.complete(msgs(i), Sampling(), 1)

    asyncio.run(scenario())
    assert a.calls == 3 and replicas.report()["replicas"][0]["state"] == "closed"


def test_replica_set_refuses_duplicate_endpoints_and_mixed_models():
    with pytest.raises(UserInputError, match="listed twice"):
        ReplicaSet([Instant("http://a/v1"), Instant("http://a/v1")])
    other = Instant("http://b/v1")
    other.model = "m2"
    with pytest.raises(UserInputError, match="same model"):
        ReplicaSet([Instant("http://a/v1"), other])


def test_failover_through_the_wrapper_stores_each_sample_once_without_backoff():
    """A replica that refuses everything: every sample is answered by the other, each stored
    once, each failed attempt recorded once, and the retry waits for no backoff (the policy's
    600 s backoff would time the test out)."""
    a, b = Instant("http://a/v1"), Instant("http://b/v1")
    a.broken = ModelConnectionError("connection refused", refused=True)
    cache = InMemoryCallCache()
    model = Model(ReplicaSet([a, b], capacity=4, breaker=BreakerPolicy(threshold=3)), cache=cache,
                  retry=RetryPolicy(initial_s=600, max_s=600), max_concurrency=8)

    async def scenario():
        async with asyncio.timeout(60):
            return await asyncio.gather(*(model.sample(msgs(i), Sampling(), n=2, tag="verify") for i in range(20)))

    results = asyncio.run(scenario())
    samples = [s for r in results for s in r]
    assert len(samples) == 40 and all(s.ok for s in samples)
    assert len(cache.records) == 40 and {r.endpoint for r in cache.records.values()} == {"http://b/v1"}
    assert a.calls == len(cache.failures) == 3  # then its breaker kept it out
    assert all("[endpoint http://a/v1]" in f.message for f in cache.failures)
    again = asyncio.run(model.sample(msgs(0), Sampling(), n=2))
    assert all(s.cached for s in again) and b.calls == 20


# ---------------------------------------------------------------------------- runs over HTTP

OPTIONS = {"initial": 6, "verifications": 4, "top_k": 3, "rounds": 2, "meta": 1, "accept": False}


def _setup(*urls: str, model: str = "sim-1", max_concurrency: int = 8) -> ModelSetup:
    """`max_concurrency` is per replica (runs/context.py)."""
    return ModelSetup(ModelSettings(provider="openai", base_url=",".join(urls), model=model, max_n=1), seed=0,
                      max_tokens=200_000, verify_max_tokens=200_000, api_key="x", max_concurrency=max_concurrency)


def verification_affinity(store: Store, run_id: str, logs: dict[str, list[dict]]) -> tuple[float, int]:
    """(share of verification requests served by their proof's most-used server, number of
    proofs verified more than once), from the servers' own request logs."""
    verify_prompts = {fingerprint({"messages": c.messages}) for c in store.calls(run_id) if c.tag == "verify"}
    per_prompt: dict[str, Counter[str]] = defaultdict(Counter)
    for server, entries in logs.items():
        for e in entries:
            if e["outcome"] == "ok" and e["messages_sha"] in verify_prompts:
                per_prompt[e["messages_sha"]][server] += 1
    repeated = [c for c in per_prompt.values() if sum(c.values()) >= 2]
    return sum(max(c.values()) for c in repeated) / sum(sum(c.values()) for c in repeated), len(repeated)


def sent_once(logs: dict[str, list[dict]]) -> Counter:
    """How often each answered sample (prompt, seed) was answered, over all servers."""
    return Counter((e["messages_sha"], e["seed"]) for entries in logs.values() for e in entries
                   if e["outcome"] == "ok")


def test_two_healthy_replicas_share_the_load_and_keep_each_proof_on_one(tmp_path):
    """Each replica may hold more requests than a round sends (64 each; a round sends at most 24
    at once), so no replica is ever full and no request spills to the other: every request for a
    prompt goes to its rendezvous winner, whatever order the calls finish in. (How many spill
    when the preferred replica is full depends on that order; the chooser's tests cover it.)"""
    problem = make_problems(1, seed=3, mix="default")[0]
    logs: dict[str, list[dict]] = {"a": [], "b": []}
    with ServerThread(make_sim_app(seed=0, request_log=logs["a"])) as a, \
            ServerThread(make_sim_app(seed=0, request_log=logs["b"])) as b:
        store = Store(tmp_path / "runs.db")
        setup = _setup(a.base_url, b.base_url, max_concurrency=64)
        run_id = create_prove_run(store, problem, setup, strategy="pool", options=OPTIONS)
        summary = execute(store, run_id, api_key="x", notice=lambda line: None)
    share, proofs = verification_affinity(store, run_id, logs)
    report = summary["endpoints"]
    print(f"verification affinity share {share:.3f} over {proofs} proofs; replica set's share "
          f"{report['affinity_share']:.3f}; requests {[r['requests'] for r in report['replicas']]}")
    assert proofs >= 6 and share == 1.0
    assert report["affinity_share"] == 1.0
    assert all(len(entries) >= 5 for entries in logs.values())  # both replicas served
    assert max(sent_once(logs).values()) == 1
    assert len(store.calls(run_id)) == sum(r["samples"] for r in report["replicas"])
    # The store knows which replica answered each call: the same counts and share as the servers' logs.
    served = {server.base_url.rstrip("/"): sum(e["outcome"] == "ok" for e in logs[name])
              for name, server in (("a", a), ("b", b))}
    assert Counter(c.endpoint for c in store.calls(run_id)) == served
    assert {r["endpoint"]: r["stored_samples"] for r in report["replicas"]} == served
    assert affinity_share(store.served_by(run_id, tag="verify").values()) == report["verification_affinity_share"]
    assert report["verification_affinity_share"] == pytest.approx(share)


def test_run_finishes_on_the_other_replica_when_one_fails(tmp_path):
    problem = make_problems(1, seed=3, mix="default")[0]
    logs: dict[str, list[dict]] = {"a": [], "b": []}
    broken = Faults(by_request={n: Fault(kind="server_error") for n in range(4, 10_000)})  # fails from request 4 on
    with ServerThread(make_sim_app(seed=0, request_log=logs["a"], faults=broken)) as a, \
            ServerThread(make_sim_app(seed=0, request_log=logs["b"])) as b:
        store = Store(tmp_path / "runs.db")
        run_id = create_prove_run(store, problem, _setup(a.base_url, b.base_url), strategy="pool", options=OPTIONS)
        summary = execute(store, run_id, api_key="x", notice=lambda line: None)
    a_report, b_report = summary["endpoints"]["replicas"]
    assert summary["proofs"] >= 6 and all(v.status != "call_error" for v in store.verifications(run_id=run_id))
    assert a_report["breaker_opened"] >= 1 and a_report["failures"] >= 3
    assert a_report["requests"] == 3 and b_report["requests"] > 20
    answered = sent_once(logs)
    assert max(answered.values()) == 1  # no finished call was sent again
    assert len(store.calls(run_id)) == sum(answered.values())  # each answered sample stored, once
    assert len(store.failures(run_id)) == a_report["failures"]


# ---------------------------------------------------------------------------- the CLI, one replica killed


def test_cli_run_survives_a_replica_killed_mid_run(tmp_path):
    """`proofloop prove --base-url A --base-url B`: A is killed (SIGKILL) after a few stored
    calls; the run finishes on B, every answered sample was answered once, and the summary
    names both endpoints. A answers its first two requests and holds the rest until it dies,
    so the kill lands mid-run however slowly the machine runs."""
    db = tmp_path / "runs.db"
    (tmp_path / "problem.md").write_text("Prove that for every positive integer $n$, $n^3 - n$ is divisible by 6.")
    pool = ["--strategy", "pool", "-o", "initial=4", "-o", "verifications=3", "-o", "top_k=2", "-o", "rounds=2",
            "-o", "accept=false", "--max-tokens", "4000", "--verify-max-tokens", "4000", "--max-n", "1",
            "--seed", "5", "--max-concurrency", "2"]
    held = {str(n): {"kind": "slow", "delay_s": 300} for n in range(3, 200)}
    with ServerProcess(script={"stream_delay_s": 0.02, "stream_chunk_chars": 16, "faults": {"by_request": held}},
                       request_log=tmp_path / "a.jsonl") as a, running_server() as (b, log_b):
        env = cli_env(db, None, PROOFLOOP_MODEL="scripted", PROOFLOOP_API_KEY="k")
        proc = subprocess.Popen(CLI + ["prove", str(tmp_path / "problem.md"), *pool, "--base-url", a.base_url,
                                       "--base-url", b.base_url, "--json"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while stored_calls(db) < 4:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        a.kill()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out)
    a_report, b_report = summary["endpoints"]["replicas"]
    assert (a_report["endpoint"], b_report["endpoint"]) == (a.base_url, b.base_url)
    assert a_report["requests"] >= 1 and a_report["failures"] >= 1 and b_report["requests"] >= 10
    logs = {"a": read_request_log(tmp_path / "a.jsonl"), "b": log_b}
    answered = sent_once(logs)
    assert max(answered.values()) == 1  # no finished call was sent again
    store = Store(db)
    [run] = store.list_runs()
    assert run.status.value == "finished" and len(store.calls(run.id)) == sum(answered.values())


def test_every_replica_refusing_is_unreachable_soon():
    """Nobody listens anywhere: the wrapper says "unreachable" after a few attempts instead
    of waiting out cool-downs."""
    from proofloop.errors import EndpointUnreachable

    a, b = Instant("http://a/v1"), Instant("http://b/v1")
    a.broken = b.broken = ModelConnectionError("connection refused", refused=True)
    model = Model(ReplicaSet([a, b], breaker=BreakerPolicy(threshold=1, cool_down_s=600)),
                  retry=RetryPolicy(initial_s=0.001, max_s=0.001))
    with pytest.raises(EndpointUnreachable, match="no server answers at http://a/v1,http://b/v1"):
        asyncio.run(model.sample(msgs(0), Sampling()))
    assert (a.calls, b.calls) == (1, 1)


def test_proofloop_base_url_with_commas_builds_a_replica_set_capped_per_replica(monkeypatch, tmp_path):
    from proofloop.models.factory import build_provider

    monkeypatch.chdir(tmp_path)  # no ./.env
    monkeypatch.setenv("PROOFLOOP_BASE_URL", "http://a:1/v1, http://b:2/v1")
    monkeypatch.setenv("PROOFLOOP_MODEL", "m")
    settings, _ = ModelSettings().resolved()
    assert (settings.provider, settings.base_url) == ("openai", "http://a:1/v1,http://b:2/v1")
    provider = build_provider(settings)
    assert isinstance(provider, ReplicaSet) and [r.name for r in provider.replicas] == settings.base_urls
    model = ModelSetup(settings, max_concurrency=3).resolved().model(Store(":memory:"), "run", notice=print)
    assert (model.provider.capacity, model.max_concurrency) == (3, 6)
    assert "2 replicas (http://a:1/v1, http://b:2/v1)" in ModelSetup(settings).resolved().describe()


def test_an_attempt_cut_off_by_the_attempt_timeout_is_retried_on_the_other_replica():
    """A replica that never answers: the wrapper's attempt timeout cuts the attempt off and
    the retry goes to the other replica (the breaker does not count a cancellation)."""
    from proofloop.models.base import Timeouts

    a, b = Held("http://a/v1"), Instant("http://b/v1")
    replicas = ReplicaSet([a, b], capacity=4)
    key = next(i for i in range(100) if rank(affinity_key(msgs(i)), [a.endpoint, b.endpoint])[0] == a.endpoint)
    cache = InMemoryCallCache()
    model = Model(replicas, cache=cache, timeouts=Timeouts(attempt_s=0.05), retry=RetryPolicy(initial_s=0.001))
    [s] = asyncio.run(model.sample(msgs(key), Sampling()))
    assert s.ok and s.completion.text.startswith("http://b/v1") and (a.calls, b.calls) == (1, 1)
    assert [f.kind for f in cache.failures] == ["timeout"]
    assert replicas.report()["replicas"][0]["state"] == "closed" and a.in_flight == 0

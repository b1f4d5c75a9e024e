"""Resume after failed calls: the resumed run is the run that never failed.

A pool search runs against a simulated server that refuses a share of requests (HTTP 400, not
retried), so some verifications end as call errors and the search decides on what it got. The
run is then resumed on a healthy server (`update_server`: a new base URL changes no call key):
the failed calls are sent again, every decision is made again from their answers, and what the
store shows must equal a fresh run on the healthy server with the same seed — no orphan proof,
analysis or meta-verification left from the decisions of the failed execution.
"""

from __future__ import annotations

import pytest

from proofloop.models.factory import ModelSettings
from proofloop.runs import ModelSetup, create_prove_run, execute, update_server
from proofloop.sim import make_problems
from proofloop.sim.app import make_sim_app
from proofloop.sim.http import Fault, Faults, ServerThread
from proofloop.store import Store

OPTIONS = {"initial": 4, "verifications": 4, "top_k": 2, "rounds": 2, "meta": 1, "accept": False}


def _content(store: Store, run_id: str) -> dict[str, list]:
    """What a run holds, independent of its id (call keys contain the run id)."""
    proofs = store.proofs(run_id)
    analyses = store.verifications(run_id=run_id)
    metas = store.meta_verifications(run_id=run_id)
    return {"proofs": sorted((p.status, p.solution or "", p.self_score) for p in proofs),
            "analyses": sorted((a.status, a.analysis or "", a.score) for a in analyses),
            "metas": sorted((m.status, m.analysis or "", m.rating) for m in metas)}


def _setup(url: str) -> ModelSetup:
    return ModelSetup(ModelSettings(provider="openai", base_url=url, model="sim-1"), seed=0,
                      max_tokens=200_000, verify_max_tokens=200_000, api_key="x")


@pytest.mark.parametrize("fail_share", [0.3])
def test_resume_after_failed_calls_equals_a_run_that_never_failed(db, fail_share):  # SQLite and PostgreSQL
    problem = make_problems(1, seed=3, mix="default")[0]
    faults = Faults(random=[(Fault(kind="bad_request"), fail_share)], seed=5)
    with ServerThread(make_sim_app(seed=0, faults=faults)) as flaky, ServerThread(make_sim_app(seed=0)) as healthy:
        store = Store(db)
        run_id = create_prove_run(store, problem, _setup(flaky.base_url), strategy="pool", options=OPTIONS)
        first = execute(store, run_id, api_key="x", notice=lambda line: None)
        assert store.failures(run_id), "the flaky server failed no request: the test proves nothing"
        update_server(store, run_id, base_url=healthy.base_url)
        resumed = execute(store, run_id, api_key="x", notice=lambda line: None)

        fresh_id = create_prove_run(store, problem, _setup(healthy.base_url), strategy="pool", options=OPTIONS)
        fresh = execute(store, fresh_id, api_key="x", notice=lambda line: None)

    assert _content(store, run_id) == _content(store, fresh_id)
    assert (resumed["proofs"], resumed["best_proof_id"] is not None) == (fresh["proofs"], True)
    assert first["proofs"] <= resumed["proofs"]
    assert all(a.status != "call_error" for a in store.verifications(run_id=run_id))

"""A search whose context can read analysis texts back (`analysis_texts`) keeps records without
their texts, and decides exactly as one that keeps whole records: the same proofs, the same
refinement prompts (so the same call keys), the same choice."""

from __future__ import annotations

import asyncio

import pytest

from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.search import make_strategy
from proofloop.search.base import MemoryRecorder, SearchContext
from proofloop.sim import make_problems
from proofloop.sim.provider import SimProvider

SAMPLING = Sampling(seed=0, max_tokens=200_000)
NO_ACCEPT = dict(preset="paper", initial=6, verifications=4, top_k=2, samples_per_prompt=2, rounds=2, accept=False)


def context(*, read_back: bool) -> SearchContext:
    recorder = MemoryRecorder()
    return SearchContext(Model(SimProvider(seed=5), namespace="memory-test"), gen_sampling=SAMPLING,
                         verify_sampling=SAMPLING, meta_sampling=SAMPLING, recorder=recorder,
                         analysis_texts=recorder.analysis_texts if read_back else None)


def solve(ctx: SearchContext, name: str = "pool", **options):
    problem = make_problems(1, seed=3, mix="hard")[0]
    return asyncio.run(make_strategy(name, **{**NO_ACCEPT, **options}).solve(problem, ctx))


@pytest.mark.parametrize("name,options", [("pool", {}), ("pool", {"meta": 1}),
                                          ("adaptive", {"stages": [2, 4], "refine_min": 2})])
def test_reading_texts_back_decides_the_same(name, options):
    whole, lean = context(read_back=False), context(read_back=True)
    a, b = solve(whole, name, **options), solve(lean, name, **options)
    assert [p.id for p in a.proofs] == [p.id for p in b.proofs]  # same prompts: same call keys
    assert [p.analyses_used for p in a.proofs] == [p.analyses_used for p in b.proofs]
    assert any(p.analyses_used for p in b.proofs)  # refinement prompts did show analyses
    assert (a.best.id, a.score, a.stop_reason) == (b.best.id, b.score, b.stop_reason)
    assert a.summary()["issues"] == b.summary()["issues"]
    # what was recorded is whole either way
    assert [r.model_dump() for r in whole.recorder.analyses] == [r.model_dump() for r in lean.recorder.analyses]


def test_the_working_state_holds_no_texts_once_recorded():
    ctx = context(read_back=True)
    result = solve(ctx)
    analyses = [a for v in result.verifications.values() for a in v.analyses]
    assert analyses and all(a.raw is None and a.analysis is None and a.reasoning is None for a in analyses)
    assert all(p.raw is None and p.reasoning is None for p in result.proofs)
    assert result.best.solution and result.best.self_evaluation  # what the result shows is kept
    assert all(r.raw for r in ctx.recorder.analyses if r.ok)  # the recorder got whole records


def test_a_text_that_cannot_be_read_back_is_an_error():
    ctx = context(read_back=True)
    ctx.analysis_texts = lambda proof_id, ids: {}
    with pytest.raises(LookupError, match="no recorded text"):
        solve(ctx)


def test_the_store_recorder_reads_a_runs_analysis_texts(tmp_path):
    from proofloop.models.factory import ModelSettings
    from proofloop.runs import ModelSetup, RunContext, create_prove_run, execute
    from proofloop.store import Store

    store = Store(tmp_path / "runs.db")
    run_id = create_prove_run(store, make_problems(1, seed=3, mix="hard")[0], ModelSetup(ModelSettings(provider="sim"),
                              seed=0), strategy="pool", options=NO_ACCEPT)
    summary = execute(store, run_id, notice=lambda line: None)
    assert summary["report"]["rounds_reached"] == 2
    ctx = RunContext.build(store, run_id, store.get_run(run_id).config, notice=lambda line: None)
    assert ctx.search.analysis_texts == ctx.recorder.analysis_texts
    proof = store.proofs(run_id)[0]
    stored = store.verifications(run_id, proof_id=proof.id)
    texts = ctx.recorder.analysis_texts(proof.id, [v.id for v in stored[:3]] + ["no-such-id"])
    assert texts == {v.id: v.analysis or v.raw for v in stored[:3]}


def test_the_released_scheme_reads_texts_back_the_same():
    from proofloop.search.decisions import params_from
    from proofloop.search.release import run_release

    params = params_from("release", **{k: v for k, v in NO_ACCEPT.items() if k != "preset"})
    problems = make_problems(2, seed=3, mix="hard")
    whole, lean = context(read_back=False), context(read_back=True)
    a = asyncio.run(run_release(problems, whole, params))
    b = asyncio.run(run_release(problems, lean, params))
    assert [[p.id for p in r.proofs] for r in a] == [[p.id for p in r.proofs] for r in b]
    assert any(p.analyses_used for r in b for p in r.proofs)
    assert [r.best.id for r in a] == [r.best.id for r in b]

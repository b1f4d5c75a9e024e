"""Proofs cut at the token limit are recorded with their status but never verified, refined
from or chosen, in every strategy; `keep_truncated=True` keeps the old behaviour."""

from __future__ import annotations

import asyncio

import pytest

from proofloop.protocol.types import ParseStatus
from proofloop.search import make_strategy
from proofloop.search.release import run_release
from proofloop.sim import make_problems
from search_rigs import rig_context, solve

TRUNC = ParseStatus.TRUNCATED
POOL = dict(preset=None, initial=6, verifications=4, top_k=3, samples_per_prompt=2, rounds=2, accept=False)


@pytest.fixture(scope="module")
def problems():
    return make_problems(3, seed=4, mix="hard")


def every_third(i: int) -> bool:
    return i % 3 == 0


def test_single_never_chooses_a_truncated_proof(problems):
    for keep in (False, True):
        result = solve(make_strategy("single", k=4, keep_truncated=keep), problems[0],
                       rig_context(truncate=lambda i: True))
        assert [p.status for p in result.proofs] == [TRUNC] * 4  # recorded with their status
        assert result.summary()["truncated_proofs"] == 4
        if keep:  # the old behaviour: a truncated proof with a solution may win
            assert result.best is not None and result.best.status is TRUNC
        else:
            assert result.best is None and result.stop_reason == "nothing_scored"
    result = solve(make_strategy("single", k=4), problems[0], rig_context(truncate=lambda i: i != 2))
    assert result.best.id == result.proofs[2].id and result.stop_reason == "completed"




@pytest.mark.parametrize("keep", [False, True])
def test_sequential_refines_from_the_last_usable_proof(problems, keep):
    threads, attempts = 4, 4
    ctx = rig_context(truncate=lambda i: (i // threads) % 2 == 1)  # attempts 1 and 3 of every thread are cut
    result = solve(make_strategy("sequential", threads=threads, attempts=attempts, keep_truncated=keep),
                   problems[0], ctx)
    by_thread: dict[int, list] = {}
    for record, where in ctx.recorder.proofs:
        by_thread.setdefault(where["thread"], []).append(record)
    after_truncated = 0
    for history in by_thread.values():
        for previous, record in zip(history, history[1:]):
            if previous.status is TRUNC:
                after_truncated += 1
                usable_before = [p for p in history[:history.index(record)] if p.status is not TRUNC]
                expected = previous if keep else (usable_before[-1] if usable_before else None)
                assert record.parents == ([expected.id] if expected else [])
    assert after_truncated > 0  # the rig really made a thread go on after a truncated attempt
    if not keep:
        assert result.best is not None and result.best.status is not TRUNC


def _pool_checks(result, recorder, keep: bool):
    truncated = {p.id for p in result.proofs if p.status is TRUNC}
    assert truncated  # the rig cut some proofs, and they are recorded
    verified = {a.proof_id for a in recorder.analyses}
    parents = {q for p in result.proofs for q in p.parents}
    if keep:
        assert truncated & verified  # the old behaviour: truncated proofs are verified
    else:
        assert not truncated & verified and not truncated & parents
        assert result.best is not None and result.best.id not in truncated
        assert result.meta["report"]["truncated_proofs"] == len(truncated)


@pytest.mark.parametrize("name,extra", [("pool", {}), ("adaptive", dict(stages=[2, 4], refine_min=2))])
@pytest.mark.parametrize("keep", [False, True])
def test_pool_and_adaptive_skip_truncated_proofs(problems, name, extra, keep):
    ctx = rig_context(truncate=every_third)
    result = solve(make_strategy(name, **POOL, **extra, keep_truncated=keep), problems[1], ctx)
    _pool_checks(result, ctx.recorder, keep)


@pytest.mark.parametrize("keep", [False, True])
def test_release_scheme_skips_truncated_proofs(problems, keep):
    ctx = rig_context(truncate=every_third)
    params = make_strategy("pool", **POOL, keep_truncated=keep).params
    [result] = asyncio.run(run_release([problems[1]], ctx, params))
    _pool_checks(result, ctx.recorder, keep)


def test_all_proofs_truncated_means_nothing_scored(problems):
    for name in ("pool", "adaptive"):
        result = solve(make_strategy(name, **POOL), problems[0], rig_context(truncate=lambda i: True))
        assert (result.best, result.stop_reason) == (None, "nothing_scored")

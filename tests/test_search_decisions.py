"""The pool search's pure decisions (search/decisions.py) and adaptive's (search/adaptive.py)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofloop.search.adaptive import View, acceptance_step, full_mean_bounds, next_stage, stage_plan, topk_step
from proofloop.search.decisions import (PRESETS, Candidate, Judged, PoolParams, accepted, analysis_rng,
                                        choose_analyses, final_choice, meta_index, meta_rejected, params_from,
                                        passes, rank_key, slot_of, top_k, verify_index)

SCORE = st.sampled_from([0.0, 0.5, 1.0])


def cand(i, scores, self_score=0.5, round_=0, complete=True):
    return Candidate(id=f"p{i}", slot=i, round=round_, self_score=self_score, scores=tuple(scores), complete=complete)


candidates = st.lists(st.tuples(st.lists(SCORE, max_size=6), st.sampled_from([None, 0.0, 0.5, 1.0]),
                                st.integers(0, 2)), max_size=12).map(
    lambda xs: [cand(i, s, ss, r) for i, (s, ss, r) in enumerate(xs)])


# ---- presets and indices ------------------------------------------------------------------


def test_presets_carry_the_papers_and_the_release_numbers():
    p, r = PRESETS["paper"], PRESETS["release"]
    assert (p.initial, p.verifications, p.top_k, p.analyses_per_prompt, p.rounds) == (64, 64, 64, 8, 16)
    assert (r.initial, r.top_k, r.samples_per_prompt, r.verifications, r.max_per_score) == (128, 32, 4, 64, 4)
    assert params_from("release", top_k=8).top_k == 8
    with pytest.raises(ValueError):
        params_from("nope")
    with pytest.raises(ValueError):
        PoolParams(initial=0)


@given(st.integers(1, 6), st.integers(1, 5), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))
def test_slots_and_sample_indices_never_collide(initial, k, s, v, m):
    p = PoolParams(initial=initial, top_k=k, samples_per_prompt=s, verifications=v, meta=m)
    slots = [slot_of(p, 0, 0, i) for i in range(initial)]
    slots += [slot_of(p, r, j, x) for r in range(1, 4) for j in range(k) for x in range(s)]
    assert sorted(slots) == list(range(len(slots)))  # dense, distinct, in search order
    vi = [verify_index(p, sl, j) for sl in slots for j in range(v)]
    assert len(set(vi)) == len(vi)
    mi = [meta_index(p, sl, j, i) for sl in slots for j in range(v) for i in range(m)]
    assert len(set(mi)) == len(mi)


# ---- ranking, acceptance ------------------------------------------------------------------


@given(candidates, st.integers(0, 15))
def test_top_k_is_the_k_best_by_mean_then_self_score_then_slot(cs, k):
    got = top_k(cs, k)
    scored = [c for c in cs if c.scores]
    assert len(got) == min(k, len(scored))
    assert got == sorted(got, key=rank_key)
    worst_in = got[-1] if got else None
    for c in scored:
        if c not in got and worst_in is not None:
            assert rank_key(c) > rank_key(worst_in)


def test_ties_broken_by_self_score_then_slot():
    a, b, c = cand(0, [1, 0.5], 0.5), cand(1, [0.5, 1], 1.0), cand(2, [0.5, 1], 1.0)
    assert [x.id for x in top_k([a, b, c], 3)] == ["p1", "p2", "p0"]
    unscored = cand(3, [1, 0.5], None)
    assert top_k([unscored, a], 1)[0].id == "p0"


@given(candidates, st.integers(1, 4))
def test_accepted_is_the_best_passing_proof_of_the_earliest_round(cs, min_valid):
    acc = accepted(cs, min_valid)
    passing = [c for c in cs if passes(c, min_valid)]
    if not passing:
        assert acc is None
        return
    assert passes(acc, min_valid)
    assert all(acc.round <= c.round for c in passing)
    assert all(rank_key(acc) <= rank_key(c) for c in passing if c.round == acc.round)


def test_passing_needs_all_ones_enough_scores_and_every_verification_back():
    assert passes(cand(0, [1, 1]), 2)
    assert not passes(cand(0, [1, 0.5]), 2)
    assert not passes(cand(0, [1]), 2)
    assert not passes(cand(0, [1, 1], complete=False), 2)
    assert final_choice([cand(0, [1, 0.5]), cand(1, [1, 1])], 2)[0].id == "p1"
    assert final_choice([cand(0, [1, 0.5]), cand(1, [0.5, 0.5])], 2) == (cand(0, [1, 0.5]), "best_mean")
    assert final_choice([], 2) == (None, "no_scored_proof")


# ---- analyses for a prompt ----------------------------------------------------------------

judged_lists = st.lists(SCORE, max_size=20).map(lambda ss: [Judged(f"a{i}", i, s) for i, s in enumerate(ss)])


@given(judged_lists, st.integers(0, 10), st.sampled_from([None, 1, 2, 4]), st.integers(0, 5))
def test_choose_analyses_prefers_issues_caps_per_score_and_is_deterministic(analyses, count, cap, seed):
    rng = lambda: analysis_rng(seed, "problem", 1, "proof")  # noqa: E731
    got = choose_analyses(analyses, count, cap, rng())
    assert got == choose_analyses(analyses, count, cap, rng())
    assert len(got) == len({a.id for a in got}) and set(got) <= set(analyses)
    per_score = {s: sum(1 for a in analyses if a.score == s) for s in (0.0, 0.5, 1.0)}
    avail = {s: n if cap is None else min(n, cap) for s, n in per_score.items()}
    issue_avail = avail[0.0] + avail[0.5]
    assert len(got) == min(count, issue_avail + avail[1.0])
    chosen_issue = [a for a in got if a.score < 1]
    assert len(chosen_issue) == min(count, issue_avail)  # confirming ones only fill the rest
    for s in (0.0, 0.5, 1.0):
        assert sum(1 for a in got if a.score == s) <= avail[s]
    assert got == sorted(chosen_issue, key=lambda a: a.index) + sorted(
        [a for a in got if a.score == 1], key=lambda a: a.index)


def test_analysis_rng_depends_on_seed_problem_round_and_proof_only():
    draws = lambda *key: analysis_rng(*key).random()  # noqa: E731
    assert draws(0, "p", 1, "x") == draws(0, "p", 1, "x")
    assert len({draws(0, "p", 1, "x"), draws(1, "p", 1, "x"), draws(0, "q", 1, "x"),
                draws(0, "p", 2, "x"), draws(0, "p", 1, "y")}) == 5


def test_meta_rejection_is_a_strict_majority_of_valid_zero_ratings():
    assert meta_rejected([0.0, 0.0, 1.0])
    assert not meta_rejected([0.0, 1.0])
    assert not meta_rejected([0.0, 0.5, 1.0])
    assert meta_rejected([0.0, None, None])
    assert not meta_rejected([None, None])


# ---- adaptive -----------------------------------------------------------------------------


@given(st.lists(SCORE, min_size=1, max_size=16), st.integers(0, 16), st.floats(0.5, 4))
def test_bounds_always_contain_every_reachable_final_mean_prefix(full, j, z):
    n = len(full)
    j = min(j, n)
    lo, hi = full_mean_bounds(full[:j], j, n, z)
    assert 0.0 <= lo <= hi <= 1.0
    if j:
        m = sum(full[:j]) / j
        assert lo - 1e-12 <= m <= hi + 1e-12
    # never looser than the exact bounds: the missing scores all 0 / all 1
    s = sum(full[:j])
    assert lo >= s / n - 1e-12 and hi <= (s + n - j) / n + 1e-12
    if j == n:
        assert lo == hi == sum(full) / n


def test_stage_plan():
    assert stage_plan([4, 16, 32, 64], 8) == [4, 8]
    assert stage_plan([4, 16], 64) == [4, 16, 64]
    assert next_stage([4, 16, 64], 4) == 16 and next_stage([4, 16, 64], 4, at_least=20) == 64
    assert next_stage([4, 16, 64], 64) == 64


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from([1.0, 1.0, 1.0, 0.5, 0.0]), min_size=8, max_size=8),
                          st.sampled_from([None, 0.5, 1.0])), min_size=1, max_size=8),
       st.integers(1, 3), st.integers(1, 8))
def test_staged_acceptance_finds_exactly_the_proof_full_verification_accepts(rows, window, min_valid):
    """Acceptance is exact: walking adaptive's steps on revealed prefixes accepts the same proof
    pool accepts with every verification in, and never reveals more than it has to."""
    n, plan = 8, [2, 4, 8]
    full = {f"p{i}": s for i, (s, _) in enumerate(rows)}
    selfs = {f"p{i}": ss for i, (_, ss) in enumerate(rows)}
    done = {pid: plan[0] for pid in full}

    def views():
        return [View(Candidate(pid, int(pid[1:]), 0, selfs[pid], tuple(full[pid][:done[pid]]), done[pid] >= n),
                     done[pid]) for pid in full]

    while True:
        acc, more = acceptance_step(views(), n, min_valid, window)
        if acc is not None or not more:
            break
        assert len(more) <= window
        for pid in more:
            done[pid] = next_stage(plan, done[pid])
    complete = [Candidate(pid, int(pid[1:]), 0, selfs[pid], tuple(full[pid]), True) for pid in full]
    expected = accepted(complete, min_valid)
    assert (acc.id if acc else None) == (expected.id if expected else None)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(SCORE, min_size=8, max_size=8), min_size=1, max_size=10), st.integers(1, 5))
def test_topk_on_complete_verification_is_pools_top_k(rows, k):
    cs = [cand(i, s, self_score=random.Random(i).choice([0.0, 0.5, 1.0])) for i, s in enumerate(rows)]
    step = topk_step([View(c, 8) for c in cs], k, n=8, plan=[2, 4, 8], z=2.5, tolerance=0.0)
    assert step.escalate == {}
    assert step.selected == top_k(cs, k)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(SCORE, min_size=8, max_size=8), min_size=2, max_size=10), st.integers(1, 4))
def test_topk_steps_terminate_and_select_k(rows, k):
    plan, n = [2, 4, 8], 8
    done = [2] * len(rows)
    for _ in range(20):
        views = [View(cand(i, r[:done[i]], complete=done[i] >= n), done[i]) for i, r in enumerate(rows)]
        step = topk_step(views, k, n=n, plan=plan, z=2.0, tolerance=0.1, refine_min=4)
        if step.selected is not None:
            break
        for pid, upto in step.escalate.items():
            i = int(pid[1:])
            assert upto > done[i]
            done[i] = upto
    else:
        pytest.fail("top-K never settled")
    assert len(step.selected) == min(k, len(rows))
    assert len({c.id for c in step.selected}) == len(step.selected)

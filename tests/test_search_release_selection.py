"""The released script's analysis loop (decisions.release_analyses) and the release preset's
round count (max_rounds 16 = the initial round + 15 refinement rounds)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofloop.search import make_strategy
from proofloop.search.decisions import PRESETS, Judged, analysis_rng, choose_analyses, release_analyses
from proofloop.sim import make_problems
from search_rigs import rig_context, solve


def judged(counts: dict[float, int]) -> list[Judged]:
    """`counts[score]` analyses of each score, sample indices interleaved across scores."""
    out, i = [], 0
    for score, n in counts.items():
        for _ in range(n):
            out.append(Judged(f"a{i}", i, score))
            i += 1
    return out


def per_score(chosen: list[Judged]) -> dict[float, int]:
    out: dict[float, int] = {}
    for a in chosen:
        out[a.score] = out.get(a.score, 0) + 1
    return out


# (analyses per score) -> (analyses shown per score); limit 8, at most 4 per score as configured
CASES = [
    # one score only: the cap is 8, not 4
    ({0.0: 10}, {0.0: 8}),
    ({1.0: 12}, {1.0: 8}),
    ({0.5: 8}, {0.5: 8}),
    # two scores: 4 + 4 at most
    ({0.0: 6, 0.5: 6}, {0.0: 4, 0.5: 4}),
    ({0.0: 2, 1.0: 10}, {0.0: 2, 1.0: 4}),
    ({0.5: 9, 1.0: 1}, {0.5: 4, 1.0: 1}),
    # three scores: the break ends only the current score, so 12 can be shown
    ({0.0: 5, 0.5: 5, 1.0: 5}, {0.0: 4, 0.5: 4, 1.0: 4}),
    ({0.0: 4, 0.5: 4, 1.0: 9}, {0.0: 4, 0.5: 4, 1.0: 4}),
    # ... unless the 8th falls inside a score: then that score stops there
    ({0.0: 2, 0.5: 5, 1.0: 5}, {0.0: 2, 0.5: 4, 1.0: 2}),
    ({0.0: 1, 0.5: 3, 1.0: 6}, {0.0: 1, 0.5: 3, 1.0: 4}),
    # fewer analyses than 8
    ({0.0: 3}, {0.0: 3}),
    ({0.0: 2, 0.5: 1}, {0.0: 2, 0.5: 1}),
    ({0.0: 1, 0.5: 1, 1.0: 1}, {0.0: 1, 0.5: 1, 1.0: 1}),
    ({}, {}),
]


@pytest.mark.parametrize("counts,shown", CASES)
def test_release_loop_as_written(counts, shown):
    analyses = judged(counts)
    for seed in range(5):
        chosen = release_analyses(analyses, 8, 4, random.Random(seed))
        assert per_score(chosen) == shown
        assert [a.score for a in chosen] == sorted(a.score for a in chosen)  # ascending score, as the script
        assert len({a.id for a in chosen}) == len(chosen) and set(chosen) <= set(analyses)


def test_the_paper_rule_never_shows_more_than_8():
    analyses = judged({0.0: 5, 0.5: 5, 1.0: 5})
    assert len(choose_analyses(analyses, 8, 4, random.Random(0))) == 8
    assert len(release_analyses(analyses, 8, 4, random.Random(0))) == 12


@given(st.lists(st.sampled_from([0.0, 0.5, 1.0]), max_size=40), st.integers(0, 2**32))
def test_release_choice_is_a_function_of_the_seed(scores, seed):
    analyses = [Judged(f"a{i}", i, s) for i, s in enumerate(scores)]
    a = release_analyses(analyses, 8, 4, analysis_rng(seed, "p", 1, 3))
    b = release_analyses(list(reversed(analyses)), 8, 4, analysis_rng(seed, "p", 1, 3))
    assert a == b  # input order does not matter, the seed decides
    assert len(a) <= 12


def test_presets_round_counts():
    # the released script's max_rounds 16: round 1 generates, rounds 2..16 refine (15 refinements)
    assert (PRESETS["release"].rounds, PRESETS["release"].selection) == (15, "release")
    # the paper: "up to 16 refinement iterations" after the initial pool
    assert (PRESETS["paper"].rounds, PRESETS["paper"].selection) == (16, "paper")


@pytest.mark.parametrize("preset,refinements", [("release", 15), ("paper", 16)])
def test_preset_rounds_run_the_initial_round_plus_refinements(preset, refinements):
    opts = dict(preset=preset, initial=2, verifications=2, top_k=1, samples_per_prompt=1, accept=False)
    result = solve(make_strategy("pool", **opts), make_problems(1, seed=4, mix="hard")[0], rig_context())
    report = result.meta["report"]
    assert report["rounds_reached"] == refinements and len(result.proofs) == 2 + refinements
    assert result.stop_reason == "round_limit"

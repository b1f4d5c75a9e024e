"""The `tree` strategy against the simulator (whose steps carry a hidden validity): pruning,
the three searches, acceptance by pool's rule, budgets, symbolic pruning, the drawn tree."""

from __future__ import annotations

import asyncio

import pytest

from proofloop.errors import UserInputError
from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.search import make_strategy
from proofloop.search.base import MemoryRecorder, SearchContext
from proofloop.search.tree import Tree, TreeRun
from proofloop.sim import make_problems
from proofloop.sim.model import SimConfig
from proofloop.sim.provider import SimProvider
from proofloop.sim.steps import StepSimConfig, step_markers

BIG = Sampling(max_tokens=200_000)
PERFECT = SimConfig(steps=StepSimConfig(valid_one=1.0, invalid_zero=1.0, fool_prob=0.0, doubt_prob=0.0))


def context(config: SimConfig | None = None, seed: int = 1) -> SearchContext:
    return SearchContext(Model(SimProvider(config=config, seed=seed)), gen_sampling=BIG, verify_sampling=BIG,
                         meta_sampling=BIG, recorder=MemoryRecorder())


def solve(tree: Tree, problem: str, ctx: SearchContext) -> tuple:
    run = TreeRun(tree, problem, ctx)
    stop, detail = asyncio.run(run.search())
    return run, run.result(stop, detail)


def valid(step: str) -> bool:
    return step_markers(step)[0]["v"] == "1"


@pytest.mark.parametrize("search", ["best_first", "beam", "mcts"])
def test_a_perfect_step_verifier_prunes_exactly_the_invalid_steps(search):
    problems = make_problems(3, seed=21, mix="basic")
    for problem in problems:
        run, result = solve(Tree(k=3, step_verifications=2, search=search, max_expansions=30, verifications=4),
                            problem, context(PERFECT))
        scored = [n for n in run.nodes if n.score is not None]
        assert scored
        for n in scored:
            assert (n.pruned is not None) == (not valid(n.step)), (n.step, n.scores, n.pruned)
        assert all(not n.expanded for n in run.nodes if n.pruned)  # a pruned node is never expanded
        if result.stop_reason == "accepted":
            assert all(valid(s) for s in result.best.solution.split("\n\n") if "sim:step" in s)
            assert result.score == 1.0
            assert len(result.verifications[result.best.id].valid) == 4


def test_search_is_deterministic_and_records_every_node_with_its_parent():
    problem = make_problems(1, seed=4)[0]
    first_ctx = context()
    run1, r1 = solve(Tree(k=2, step_verifications=2, verifications=4, max_expansions=12), problem, first_ctx)
    run2, r2 = solve(Tree(k=2, step_verifications=2, verifications=4, max_expansions=12), problem, context())
    assert [n.id for n in run1.nodes] == [n.id for n in run2.nodes]
    assert r1.meta["report"]["tree"] == r2.meta["report"]["tree"]
    recorded = {p.id: (p, where) for p, where in first_ctx.recorder.proofs}
    for n in run1.nodes:
        record, where = recorded[n.id]
        assert where["round"] == n.depth
        assert record.parents == ([] if n.depth == 1 else [n.parent.id])
        assert record.solution == n.text
    step_analyses = [a for a in first_ctx.recorder.analyses if a.proof_id in {n.id for n in run1.nodes}]
    assert len(step_analyses) == 2 * sum(1 for n in run1.nodes if n.score is not None or n.scores)


def test_accepted_proof_passes_pools_rule_and_is_drawn():
    problem = make_problems(1, seed=2, mix="basic")[0]
    run, result = solve(Tree(k=3, step_verifications=3, verifications=6, max_expansions=40), problem, context())
    assert result.stop_reason == "accepted"
    v = result.verifications[result.best.id]
    assert len(v.valid) >= 3 and all(a.score == 1.0 for a in v.valid)
    tree = result.meta["report"]["tree"]
    assert tree[0] == "root" and sum("ACCEPTED" in line for line in tree) >= 1
    assert len(tree) == 1 + len(run.nodes)


def test_beam_keeps_at_most_beam_width_nodes_per_level():
    problem = make_problems(1, seed=9, mix="hard")[0]
    run, _ = solve(Tree(k=4, step_verifications=2, search="beam", beam_width=2, max_expansions=12, verifications=2),
                   problem, context())
    by_depth: dict[int, int] = {}
    for n in run.nodes:
        if n.expanded:
            by_depth[n.depth] = by_depth.get(n.depth, 0) + 1
    assert by_depth and max(by_depth.values()) <= 2


def test_mcts_backs_up_every_expansion_through_the_root():
    problem = make_problems(1, seed=9, mix="hard")[0]
    run, result = solve(Tree(k=3, step_verifications=2, search="mcts", max_expansions=10, verifications=2),
                        problem, context())
    assert run.root.visits >= run.expansions - 1  # the root's own expansion is backed up too
    assert 0.0 <= run.root.q <= 1.0
    for n in run.nodes:
        assert n.visits == 0 or n.expanded or n.pruned
    priors = [c.prior for c in run.root.children]
    assert sum(priors) == pytest.approx(1.0)


def test_token_budget_stops_the_search_between_expansions():
    problem = make_problems(1, seed=3, mix="basic")[0]  # unbudgeted: accepted at the 6th expansion
    run, result = solve(Tree(k=2, step_verifications=2, budget_tokens=30_000, max_expansions=50), problem, context())
    assert result.stop_reason == "budget_tokens"
    assert run.spent.tokens >= 30_000 and run.expansions < 6
    assert "30000" in result.stop_detail


def test_refuted_steps_are_pruned():
    class Check:
        def evidence(self):
            return "s1.r1: 1 + 1 = 3: refuted (no variables), lhs - rhs = -1"

    class Report:
        def __init__(self, refute):
            self.refute = refute

        def evidence(self):
            return [Check()] if self.refute else []

    class FakeChecker:
        calls = 0

        def check_proof(self, proof, problem=""):
            FakeChecker.calls += 1
            return Report(FakeChecker.calls % 2 == 1)  # every other step is "refuted"

    ctx = context()
    run = TreeRun(Tree(k=2, step_verifications=1, max_expansions=3, verifications=2, symbolic=True),
                  make_problems(1, seed=5)[0], ctx)
    run.checker = FakeChecker()
    asyncio.run(run.search())
    refuted = [n for n in run.nodes if n.refuted]
    assert refuted and all(n.pruned == "refuted by the symbolic checker" for n in refuted)
    assert len(refuted) == (FakeChecker.calls + 1) // 2


@pytest.mark.parametrize("options, message", [
    ({"search": "dfs"}, "search"), ({"k": 0}, "k"), ({"prune_below": 1.5}, "prune_below"),
    ({"verifications": 2, "pass_min_valid": 3}, "pass_min_valid"), ({"nope": 1}, "nope")])
def test_bad_options_are_user_errors(options, message):
    with pytest.raises(UserInputError, match=message):
        make_strategy("tree", **options)

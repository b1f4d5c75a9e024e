"""`tree`: proof search over steps. A node is a proof prefix; expanding it asks the generator
for k next steps (protocol/stepwise.py's continuation template), and each distinct step is
scored by the step verifier (n samples) and, with `symbolic`, by the symbolic checker.
A step the checker refutes, or whose mean score is at most `prune_below` (by default: only
zero-scored steps), or that got no score at all, is pruned. A step that says it completes the
proof makes a finished proof, verified by the whole-proof verifier (`verifications` samples,
`meta` meta-verifications of each issue-finding analysis) and accepted by pool's rule
(decisions.passes: all back, at least `pass_min_valid` scored, every one 1).

Which node to expand next (`search`):

- `best_first` (default): the open node whose weakest step scores best (deeper, then older,
  first on ties);
- `beam`: level by level, the `beam_width` best children of a level go on;
- `mcts`: PUCT selection from the root, argmax Q + c_puct * P * sqrt(N_parent) / (1 + N);
  P is the share of the k proposals that gave this step (sample frequency), Q the average of
  the values backed up through the node (a new node starts at its step score); an
  expansion backs up the mean step score of its children (pruned ones count 0), a finished
  proof its verification mean.

Every decision is a function of model outputs alone, and expansions run one at a time (the
calls inside one run concurrently), so replaying the search over the call cache takes the same
path: a run killed at any point resumes with no finished call repeated. Nodes are recorded as
proofs (solution: the prefix so far; parents: the node they extend; round: their depth), their
step analyses point at them, and a finished proof is recorded once more as `<node>/proof`
with its whole-proof analyses. `result.meta["report"]["tree"]` draws the explored tree.

    >>> import asyncio
    >>> from proofloop.models.wrapper import Model
    >>> from proofloop.models.base import Sampling
    >>> from proofloop.sim import make_problems
    >>> from proofloop.sim.provider import SimProvider
    >>> ctx = SearchContext(Model(SimProvider(seed=1)), gen_sampling=Sampling(max_tokens=200_000),
    ...                     verify_sampling=Sampling(max_tokens=200_000))
    >>> result = asyncio.run(Tree(k=2, step_verifications=2, verifications=4).solve(make_problems(1)[0], ctx))
    >>> result.stop_reason in ("accepted", "round_limit", "attempts_exhausted"), result.strategy
    (True, 'tree')
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass, field

from proofloop.models.base import FREE, Usage
from proofloop.protocol.types import ParseStatus
from proofloop.roles import meta_verify, verify
from proofloop.roles.records import AnalysisRecord, ProofRecord, RoleRecord, Verification
from proofloop.roles.steps import StepRecord, propose_steps, verify_step
from proofloop.search.base import ProblemResult, SearchContext, StopReason
from proofloop.search.budget import Budget
from proofloop.search.decisions import Candidate, finds_issues, meta_rejected, passes
from proofloop.search.tree_report import draw_tree

SEARCHES = ("best_first", "beam", "mcts")


@dataclass(eq=False)
class Node:
    """A proof prefix: the root (no step) or a step under its parent."""

    id: str
    parent: "Node | None" = None
    step: str | None = None
    depth: int = 0
    prior: float = 1.0
    complete: bool = False
    score: float | None = None        # mean step-verifier score
    scores: list[float | None] = field(default_factory=list)
    pruned: str | None = None         # why, when pruned
    refuted: list[str] = field(default_factory=list)
    children: list["Node"] = field(default_factory=list)
    expanded: bool = False
    failed_proposals: int = 0
    visits: int = 0
    value_sum: float = 0.0
    final: Verification | None = None  # the whole-proof verification of a finished proof
    final_scores: tuple[float, ...] = ()
    accepted: bool = False
    order: int = 0

    @property
    def steps(self) -> list[str]:
        out, node = [], self
        while node is not None and node.step is not None:
            out.append(node.step)
            node = node.parent
        return out[::-1]

    @property
    def text(self) -> str:
        return "\n\n".join(self.steps)

    @property
    def weakest(self) -> float:
        """The lowest step score on the path (1 for the root)."""
        node, low = self, 1.0
        while node is not None and node.step is not None:
            low = min(low, node.score if node.score is not None else 0.0)
            node = node.parent
        return low

    @property
    def open(self) -> bool:
        return self.pruned is None and not self.complete and not self.expanded

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else (self.score or 0.0)


def _role_fields(record: RoleRecord) -> dict:
    return {f: getattr(record, f) for f in RoleRecord.model_fields}


@dataclass
class Tree:
    """Options (`-o key=value`, search.options.TREE lists them): k proposals per expansion,
    step_verifications per step, prune_below, search (best_first | beam | mcts), beam_width,
    c_puct, max_depth (steps), max_expansions, verifications / pass_min_valid / meta for a
    finished proof, symbolic (the SymPy checker on each step), budget_tokens (checked between
    expansions: the expansion that crosses it finishes, whole-proof verifications included)."""

    k: int = 4
    step_verifications: int = 4
    prune_below: float = 0.0
    search: str = "best_first"
    beam_width: int = 2
    c_puct: float = 1.5
    max_depth: int = 16
    max_expansions: int = 24
    verifications: int = 8
    pass_min_valid: int | None = None
    meta: int = 0
    symbolic: bool = False
    budget_tokens: int | None = None
    name: str = "tree"

    def __post_init__(self):
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {self.search!r}")
        if min(self.k, self.step_verifications, self.beam_width, self.max_depth, self.max_expansions,
               self.verifications) < 1:
            raise ValueError("k, step_verifications, beam_width, max_depth, max_expansions and verifications "
                             "must be at least 1")
        if self.pass_min_valid is not None and not 1 <= self.pass_min_valid <= self.verifications:
            raise ValueError(f"pass_min_valid must be between 1 and verifications ({self.verifications})")
        if not 0.0 <= self.prune_below < 1.0:
            raise ValueError("prune_below must be within [0, 1)")

    @property
    def min_valid(self) -> int:
        return self.pass_min_valid or max(1, math.ceil(self.verifications / 2))

    async def solve(self, problem: str, ctx: SearchContext) -> ProblemResult:
        run = TreeRun(self, problem, ctx)
        if self.symbolic:
            from proofloop.steps.symbolic import Checker  # SymPy's worker starts only when asked

            with Checker() as checker:
                run.checker = checker
                stop, detail = await run.search()
        else:
            stop, detail = await run.search()
        return run.result(stop, detail)


class TreeRun:
    """One tree search on one problem: the nodes, the records made, the budget spent."""

    def __init__(self, options: Tree, problem: str, ctx: SearchContext):
        self.o, self.problem, self.ctx = options, problem, ctx
        self.root = Node(id="root")
        self.nodes: list[Node] = []
        self.proofs: list[ProofRecord] = []
        self.verifications: dict[str, Verification] = {}
        self.budget = Budget(tokens=options.budget_tokens, parent=ctx.budget)
        self.spent: Usage = FREE
        self.expansions = 0
        self.checker = None
        self.lock = asyncio.Lock()

    # ---- budget and records

    def charge(self, records) -> None:
        for r in records:
            if r.usage is not None:
                self.budget.charge(r.usage)
                self.spent = self.spent + r.usage

    def record_node(self, proposal: StepRecord, node: Node) -> None:
        parents = [node.parent.id] if node.parent is not None and node.parent.parent is not None else []
        record = ProofRecord(**_role_fields(proposal), problem=self.problem, solution=node.text or None,
                             parents=parents)
        self.proofs.append(record)
        self.ctx.recorder.proof(self.problem, record, round=node.depth)

    # ---- one expansion

    async def expand(self, node: Node) -> list[Node]:
        """Propose k next steps, score the distinct ones, verify the finished ones."""
        node.expanded = True
        self.expansions += 1
        proposals = await propose_steps(self.ctx.generator, self.problem, node.steps, k=self.o.k,
                                        sampling=self.ctx.gen_sampling, templates=None, parent=node.id)
        self.charge(proposals)
        groups: dict[str, list[StepRecord]] = {}
        for p in proposals:
            if p.status is ParseStatus.OK and p.step:
                groups.setdefault(p.step, []).append(p)
            else:
                node.failed_proposals += 1
                dead = Node(id=p.id, parent=node, step=p.step or "(no step)", depth=node.depth + 1,
                            pruned=f"unusable proposal: {p.cause}")
                self.record_node(p, dead)
        children = []
        for step, same in groups.items():
            child = Node(id=same[0].id, parent=node, step=step, depth=node.depth + 1, prior=len(same) / len(proposals),
                         complete=same[0].complete, order=len(self.nodes))
            self.nodes.append(child)
            self.record_node(same[0], child)
            children.append(child)
        node.children = children
        await asyncio.gather(*(self.score(c) for c in children))
        await asyncio.gather(*(self.finish(c) for c in children if c.complete and c.pruned is None))
        return children

    async def score(self, child: Node) -> None:
        previous = child.parent.steps if child.parent else []
        if self.checker is not None:
            async with self.lock:  # one worker process, one check at a time
                report = await asyncio.to_thread(self.checker.check_proof, child.step, self.problem)
            child.refuted = [c.evidence() for c in report.evidence()]
        v = await verify_step(self.ctx.verifier, self.problem, previous, child.step,
                              sampling=self.ctx.verify_sampling, n=self.o.step_verifications,
                              evidence=child.refuted, step_id=child.id)
        for a in v.analyses:
            self.ctx.recorder.analysis(self.problem, a)
        self.charge(v.analyses)
        child.scores, child.score = [a.score for a in v.analyses], v.mean_score
        if child.refuted:
            child.pruned = "refuted by the symbolic checker"
        elif child.score is None:
            child.pruned = "no valid step score"
        elif child.score <= self.o.prune_below:
            child.pruned = f"step score {child.score:g} <= {self.o.prune_below:g}"

    async def finish(self, child: Node) -> None:
        """Verify a finished proof as a whole; accepted by pool's rule."""
        record = ProofRecord(id=f"{child.id}/proof", problem=self.problem, status=ParseStatus.OK, raw=child.text,
                             solution=child.text, parents=[child.id])
        self.proofs.append(record)
        self.ctx.recorder.proof(self.problem, record, round=child.depth)
        shown = await self.ctx.verifier_problem(self.problem, record)
        v = await verify(self.ctx.verifier, shown, record, sampling=self.ctx.verify_sampling,
                         n=self.o.verifications)
        for a in v.analyses:
            self.ctx.recorder.analysis(self.problem, a)
        self.charge(v.analyses)
        rejected = await self.meta(record, v.analyses) if self.o.meta else set()
        child.final = v
        child.final_scores = tuple(a.score for a in v.valid if a.id not in rejected)
        self.verifications[record.id] = v
        child.accepted = passes(Candidate(record.id, child.order, child.depth, None, child.final_scores),
                                self.o.min_valid)

    async def meta(self, proof: ProofRecord, analyses: list[AnalysisRecord]) -> set[str]:
        """The ids of the issue-finding analyses the meta-verifier rejects."""
        finding = [a for a in analyses if a.ok and finds_issues(a.score)]
        shown = await self.ctx.verifier_problem(self.problem, proof)
        ratings = await asyncio.gather(*(meta_verify(self.ctx.verifier, shown, proof, a,
                                                     sampling=self.ctx.meta_sampling, m=self.o.meta)
                                         for a in finding))
        for rs in ratings:
            for r in rs:
                self.ctx.recorder.meta(self.problem, r)
            self.charge(rs)
        return {a.id for a, rs in zip(finding, ratings) if meta_rejected([r.rating if r.ok else None for r in rs])}

    # ---- the searches

    def accepted(self) -> Node | None:
        return next((n for n in self.nodes if n.accepted), None)

    def stop_check(self) -> tuple[str, str | None] | None:
        """Why the search must stop before the next expansion, or None."""
        if self.accepted() is not None:
            return StopReason.ACCEPTED.value, None
        why = self.budget.exhausted_why()
        if why:
            return why
        if self.expansions >= self.o.max_expansions:
            return StopReason.ROUND_LIMIT.value, f"{self.expansions} expansions"
        return None

    def expandable(self, node: Node) -> bool:
        return node.open and node.depth < self.o.max_depth

    async def search(self) -> tuple[str, str | None]:
        how = {"best_first": self.best_first, "beam": self.beam, "mcts": self.mcts}[self.o.search]
        return await how()

    def exhausted(self) -> tuple[str, str | None]:
        """The stop reason when no node is left to expand."""
        if not self.nodes and self.root.failed_proposals:
            return StopReason.ALL_CALLS_FAILED.value, "no usable step was proposed"
        return StopReason.ATTEMPTS_EXHAUSTED.value, "every branch was pruned, finished or hit max_depth"

    async def best_first(self) -> tuple[str, str | None]:
        await self.expand(self.root)
        while (stop := self.stop_check()) is None:
            candidates = [n for n in self.nodes if self.expandable(n)]
            if not candidates:
                return self.exhausted()
            await self.expand(max(candidates, key=lambda n: (n.weakest, n.depth, -n.order)))
        return stop

    async def beam(self) -> tuple[str, str | None]:
        level = [self.root]
        while (stop := self.stop_check()) is None:
            room = self.o.max_expansions - self.expansions
            level = [n for n in level if self.expandable(n)][:room]
            if not level:
                return self.exhausted()
            children = [c for found in await asyncio.gather(*(self.expand(n) for n in level)) for c in found]
            live = [c for c in children if c.pruned is None and not c.complete]
            level = sorted(live, key=lambda n: (-n.weakest, n.order))[:self.o.beam_width]
        return stop

    def select(self) -> list[Node]:
        """The PUCT path from the root to a node to expand (or to a dead end)."""
        path, node = [self.root], self.root
        while node.expanded:
            live = [c for c in node.children if c.pruned is None and not c.complete and
                    (self.expandable(c) or c.children)]
            if not live:
                break
            total = math.sqrt(max(1, node.visits))
            node = max(live, key=lambda c: (c.q + self.o.c_puct * c.prior * total / (1 + c.visits), -c.order))
            path.append(node)
        return path

    async def mcts(self) -> tuple[str, str | None]:
        while (stop := self.stop_check()) is None:
            path = self.select()
            leaf = path[-1]
            if leaf is self.root and leaf.expanded:
                return self.exhausted()  # nothing live is left below the root
            if not self.expandable(leaf):  # an expanded node whose children all died
                leaf.pruned = leaf.pruned or "dead end: nothing left below it"
                self.backup(path, 0.0)
                continue
            children = await self.expand(leaf)
            values = [0.0 if c.pruned else (sum(c.final_scores) / len(c.final_scores) if c.final_scores else 0.0)
                      if c.complete else (c.score or 0.0) for c in children]
            self.backup(path, sum(values) / len(values) if values else 0.0)
        return stop

    @staticmethod
    def backup(path: list[Node], value: float) -> None:
        for n in path:
            n.visits += 1
            n.value_sum += value

    # ---- the result

    def result(self, stop: str, detail: str | None) -> ProblemResult:
        finished = [n for n in self.nodes if n.final is not None]
        chosen = self.accepted() or max(finished, key=lambda n: (sum(n.final_scores) / len(n.final_scores)
                                                                if n.final_scores else -1.0, -n.order), default=None)
        best = next((p for p in self.proofs if chosen is not None and p.id == f"{chosen.id}/proof"), None)
        score = (sum(chosen.final_scores) / len(chosen.final_scores)) if chosen is not None and chosen.final_scores \
            else None
        report = {"search": self.o.search, "expansions": self.expansions, "nodes": len(self.nodes),
                  "pruned": sum(1 for n in self.nodes if n.pruned), "finished": len(finished),
                  "accepted": chosen.id if chosen is not None and chosen.accepted else None,
                  "stop_reason": stop, "usage": {"tokens": self.spent.tokens},
                  "depth": max((n.depth for n in self.nodes), default=0),
                  "pruned_by": dict(Counter((n.pruned or "").split(":")[0].split(" <=")[0]
                                            for n in self.nodes if n.pruned)),
                  "tree": draw_tree(self.root)}
        return ProblemResult(self.problem, self.o.name, best, score, "verification", self.proofs,
                             self.verifications, stop_reason=stop, stop_detail=detail, meta={"report": report})

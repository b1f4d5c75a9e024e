"""The pool search's decisions (paper §3.3.3, DESIGN.md §2) as pure functions of model outputs.

Nothing here looks at time, completion order or a shared random generator, so any executor
(streaming `pool`, `adaptive`, the re-created release scheme in release.py) that feeds them
the same model outputs takes the same decisions. Every proof has a *slot*: its position in
the search, fixed by (round, prompt, sample) alone; slots give every call a distinct,
deterministic sample index and break the last ties.

    >>> a = Candidate(id="a", slot=0, round=0, self_score=1.0, scores=(1.0, 0.5), complete=True)
    >>> b = Candidate(id="b", slot=1, round=0, self_score=0.5, scores=(1.0, 1.0), complete=True)
    >>> [c.id for c in top_k([a, b], 1)], accepted([a, b], min_valid=2).id
    (['b'], 'b')
    >>> rng = analysis_rng(0, "problem", 1, parent_slot=1)
    >>> [j.score for j in choose_analyses([Judged("x", 0, 1.0), Judged("y", 1, 0.0)], 1, None, rng)]
    [0.0]

Reproducibility: the only random decision is which analyses a refinement prompt shows, and
its generator is seeded from (seed, problem, round, parent slot) alone: nothing that holds a
run id (call keys, record ids) feeds it, so two runs with the same `--seed` over a
deterministic provider choose the same analyses.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PoolParams:
    """The search's parameters. `rounds` counts refinement rounds after the initial generation
    (round 0); each round makes one prompt per top-K proof and `samples_per_prompt` proofs per
    prompt. `meta` > 0 turns on meta-verification in the loop (m ratings per issue-finding
    analysis). A proof *passes* when all its scored analyses say 1 and there are at least
    `pass_min_valid` of them (default: half of `verifications`; failed calls count neither
    way, but a proof most of whose verifications failed is not trusted).

    `rounds` is the number of *refinement* rounds: `rounds=16` makes round 0 plus 16 refinement
    rounds (the paper: "up to 16 refinement iterations"). The released script's `max_rounds 16`
    is round 1 (initial) plus 15 refinements, so its preset says `rounds=15`.
    `selection` is the rule that picks a refinement prompt's analyses: "paper"
    (choose_analyses) or "release" (release_analyses, the released script's loop).
    `accept=False` accepts no proof, so every round runs (benchmarks that need the full
    search; `min_valid` is then above `verifications`, which no proof can reach).
    `keep_truncated` keeps proofs cut at the token limit in the search (verified, refined
    from, selectable); by default they are recorded but never used, as the script drops them."""

    initial: int = 64
    verifications: int = 64
    top_k: int = 64
    analyses_per_prompt: int = 8
    max_per_score: int | None = None
    samples_per_prompt: int = 1
    rounds: int = 16
    pass_min_valid: int | None = None
    meta: int = 0
    selection: str = "paper"
    keep_truncated: bool = False
    accept: bool = True

    def __post_init__(self):
        for name in ("initial", "verifications", "top_k", "samples_per_prompt"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.rounds < 0 or self.analyses_per_prompt < 0 or self.meta < 0:
            raise ValueError("rounds, analyses_per_prompt and meta cannot be negative")
        if self.max_per_score is not None and self.max_per_score < 1:
            raise ValueError("max_per_score must be at least 1 (or None: no cap)")
        if self.pass_min_valid is not None and not 1 <= self.pass_min_valid <= self.verifications:
            raise ValueError(f"pass_min_valid must be between 1 and verifications ({self.verifications}), "
                             f"got {self.pass_min_valid}: no proof could pass")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")

    @property
    def min_valid(self) -> int:
        if not self.accept:
            return self.verifications + 1  # more scored analyses than a proof can have: none passes
        return self.pass_min_valid if self.pass_min_valid is not None else max(1, math.ceil(self.verifications / 2))

    @property
    def round_size(self) -> int:
        """Most proofs one refinement round makes."""
        return self.top_k * self.samples_per_prompt


SELECTIONS = ("paper", "release")

PRESETS: dict[str, PoolParams] = {
    # paper §3.3.3: 64 proofs, 64 verifications, top 64, 8 analyses, up to 16 refinement
    # iterations, one proof per pair
    "paper": PoolParams(initial=64, verifications=64, top_k=64, analyses_per_prompt=8, max_per_score=None,
                        samples_per_prompt=1, rounds=16),
    # the released script: 128 proofs, top 32, 32 prompts x 4 samples, its analysis loop
    # (release_analyses: 8, at most 4 per score as written), max_rounds 16 = initial + 15 refinements
    "release": PoolParams(initial=128, verifications=64, top_k=32, analyses_per_prompt=8, max_per_score=4,
                          samples_per_prompt=4, rounds=15, selection="release"),
}

PRESET_HELP = {
    "paper": "the paper (§3.3.3): 64 proofs x 64 verifications, top 64 x 8 analyses, 16 refinement rounds",
    "release": "the released script: 128 proofs, top 32 x 4 samples, its analysis loop, initial + 15 rounds",
}


def params_from(preset: str | None, **overrides) -> PoolParams:
    """A preset (or the paper's numbers) with some fields replaced."""
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = PRESETS[preset or "paper"]
    fields = {k: getattr(base, k) for k in PoolParams.__dataclass_fields__}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    return PoolParams(**fields)


# ---- slots and sample indices -------------------------------------------------------------


def slot_of(params: PoolParams, round_: int, prompt: int = 0, sample: int = 0) -> int:
    """Round 0 holds slots [0, initial); round r >= 1 prompt j sample s follows in order."""
    if round_ == 0:
        return sample
    return params.initial + (round_ - 1) * params.round_size + prompt * params.samples_per_prompt + sample


def verify_index(params: PoolParams, slot: int, j: int = 0) -> int:
    """Sample index of the j-th verification of the proof in `slot` (distinct even when two
    proofs have the same text)."""
    return slot * params.verifications + j


def meta_index(params: PoolParams, slot: int, j: int, i: int = 0) -> int:
    """Sample index of the i-th meta-verification of analysis j of the proof in `slot`."""
    return verify_index(params, slot, j) * max(1, params.meta) + i


# ---- ranking, selection, acceptance --------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A proof as the decisions see it: its scored analyses (failed calls and meta-rejected
    analyses left out) and whether every verification asked for has come back."""

    id: str
    slot: int
    round: int
    self_score: float | None
    scores: tuple[float, ...]
    complete: bool = True

    @property
    def mean(self) -> float | None:
        return sum(self.scores) / len(self.scores) if self.scores else None


def rank_key(c: Candidate) -> tuple[float, float, int]:
    """Sort key, best first: mean verification score desc, then self score desc (unscored
    last), then the earlier slot."""
    mean = c.mean if c.mean is not None else -1.0
    self_score = c.self_score if c.self_score is not None else -1.0
    return (-mean, -self_score, c.slot)


def top_k(candidates: Iterable[Candidate], k: int) -> list[Candidate]:
    """The k best proofs with at least one score, best first."""
    return sorted((c for c in candidates if c.scores), key=rank_key)[:k]


def passes(c: Candidate, min_valid: int) -> bool:
    """Every scored analysis says 1, all verifications are in, and there are enough of them."""
    return c.complete and len(c.scores) >= min_valid and all(s == 1.0 for s in c.scores)


def accepted(candidates: Iterable[Candidate], min_valid: int) -> Candidate | None:
    """The proof that stops the search: among the proofs that pass, those of the earliest
    round, the best by rank_key. None when no proof passes."""
    passing = [c for c in candidates if passes(c, min_valid)]
    if not passing:
        return None
    first = min(c.round for c in passing)
    return min((c for c in passing if c.round == first), key=rank_key)


def final_choice(candidates: Sequence[Candidate], min_valid: int) -> tuple[Candidate | None, str]:
    """The proof a search returns and why: the accepted one, else the best by mean score."""
    acc = accepted(candidates, min_valid)
    if acc is not None:
        return acc, "accepted"
    best = top_k(candidates, 1)
    return (best[0], "best_mean") if best else (None, "no_scored_proof")


# ---- analyses for a refinement prompt -----------------------------------------------------


@dataclass(frozen=True)
class Judged:
    """One usable analysis: its id, its sample index (a stable order) and its score."""

    id: str
    index: int
    score: float


def analysis_rng(seed: int, problem: str, round_: int, parent_slot: int) -> random.Random:
    """A generator private to one refinement prompt, so the choice never depends on what
    other prompts drew or in which order calls finished. Seeded from the prompt's position
    (its round and the parent proof's slot), never from an id: ids hold the run's namespace,
    and the same `--seed` must choose the same analyses in every run."""
    digest = hashlib.sha256(f"{seed}\x00{problem}\x00{round_}\x00{parent_slot}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def choose_analyses(analyses: Sequence[Judged], count: int, max_per_score: int | None,
                    rng: random.Random) -> list[Judged]:
    """Up to `count` analyses to show with a proof: issue-finding ones (score < 1) first, drawn
    at random, at most `max_per_score` per distinct score; confirming ones (score 1) fill the
    rest. Returned issue-finding first, each part in sample-index order."""
    groups: dict[float, list[Judged]] = {}
    for a in sorted(analyses, key=lambda a: (a.score, a.index)):
        groups.setdefault(a.score, []).append(a)
    capped: dict[float, list[Judged]] = {}
    for score in sorted(groups):  # fixed order, so the generator is consumed the same way every time
        members = list(groups[score])
        if max_per_score is not None and len(members) > max_per_score:
            members = rng.sample(members, max_per_score)
        capped[score] = members
    issues = [a for s in sorted(capped) if s < 1.0 for a in capped[s]]
    if len(issues) > count:
        issues = rng.sample(issues, count)
    confirming = [a for s in sorted(capped) if s >= 1.0 for a in capped[s]]
    room = count - len(issues)
    if len(confirming) > room:
        confirming = rng.sample(confirming, room)
    by_index = lambda a: a.index  # noqa: E731
    return sorted(issues, key=by_index) + sorted(confirming, key=by_index)


def release_analyses(analyses: Sequence[Judged], limit: int, per_score: int | None,
                     rng: random.Random) -> list[Judged]:
    """The released script's choice of analyses for one proof of a refinement prompt, as
    written (not as its comment intends).

    The script walks the distinct scores in ascending order; for each it shuffles that
    score's analyses and appends the first `cap` of them, where cap = `limit` (8) when the
    proof has a single distinct score and `per_score` (4) otherwise; after each append it
    checks `len == limit` and `break`s. That break leaves only the inner loop (the current
    score), and the check is for equality, so once the count has passed `limit` nothing stops
    it: the outer loop goes on to the next score. In effect:

    - one distinct score: up to `limit` (8) analyses of that score;
    - two scores: up to 4 + 4 = 8;
    - three scores: up to 4 + 4 + 4 = 12 (the 8 is reached, if at all, only at the end of the
      second score, and the third score's appends never hit 8 again); the break cuts a score
      short only when 8 falls inside it, e.g. 2 + 4 + (2 of 4) = 8.

    Returned in the script's order: ascending score, shuffled order within a score. Analyses
    of score 1 are shown too (they sort last). The shuffles are drawn from `rng` in ascending
    score order, one per distinct score, so the choice is a function of the seed."""
    groups: dict[float, list[Judged]] = {}
    for a in sorted(analyses, key=lambda a: (a.score, a.index)):
        groups.setdefault(a.score, []).append(a)
    cap = limit if len(groups) == 1 else (per_score if per_score is not None else limit)
    out: list[Judged] = []
    for score in sorted(groups):
        members = list(groups[score])
        rng.shuffle(members)
        for a in members[:cap]:
            out.append(a)
            if len(out) == limit:
                break  # the script's break: it ends this score only
    return out


def prompt_choice(params: PoolParams, analyses: Sequence[Judged], rng: random.Random) -> list[Judged]:
    """The analyses shown with one proof, by the rule `params.selection` names."""
    if params.selection == "release":
        return release_analyses(analyses, params.analyses_per_prompt, params.max_per_score, rng)
    return choose_analyses(analyses, params.analyses_per_prompt, params.max_per_score, rng)


# ---- meta-verification --------------------------------------------------------------------


def meta_rejected(ratings: Sequence[float | None]) -> bool:
    """An analysis is rejected when most of its valid meta ratings say its issues are not
    real (rating 0). No valid rating: not rejected (no evidence against it)."""
    valid = [r for r in ratings if r is not None]
    return bool(valid) and sum(1 for r in valid if r == 0.0) * 2 > len(valid)


def finds_issues(score: float | None) -> bool:
    return score is not None and score < 1.0

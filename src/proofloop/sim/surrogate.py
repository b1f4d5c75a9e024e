"""A fast Monte Carlo of the simulated model at the level of proof qualities, to fit regimes.

It draws from the same distributions as model.py (generation quality, self score, defects,
verifier samples and their claims, refinement), but with numpy arrays instead of texts and
hashes, so a whole sequential refinement (Figure 2) or pool search over hundreds of problems
takes seconds. regimes.py fits its free parameters with it (`python -m proofloop.sim.regimes`); the search benchmark runs the
real model and search code.

    >>> import numpy as np
    >>> d = np.random.default_rng(0).beta(3.0, 1.0, 20)
    >>> curves = sequential_curves(SimConfig(), d, threads=4, iterations=2, seed=0)
    >>> len(curves["pass@1"]), 0 <= curves["best@4"][1] <= 1
    (2, True)

Simplifications (they move nothing the fit targets): hallucinated claims are never repeated,
quality is not rounded to 4 decimals, and no output is truncated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from proofloop.extras import require
from proofloop.sim.model import SimConfig

np = require("numpy", "sim", "the proofloop simulator")
_special = require("scipy.special", "sim", "the proofloop simulator")
expit, betaincinv, ndtr, ndtri = _special.expit, _special.betaincinv, _special.ndtr, _special.ndtri

__all__ = ["sequential_curves", "pool_search", "PoolOutcome", "PAPER_POOL"]


# ---- the model's draws, vectorised -----------------------------------------------------------


def grade(c: SimConfig, q):
    return np.where(q >= c.correct_threshold, 1.0, np.where(q >= c.partial_threshold, 0.5, 0.0))


def generate(c: SimConfig, d, rng):
    return expit(rng.normal(c.gen_logit_intercept - c.gen_logit_slope * d, c.gen_logit_sd))


def self_score(c: SimConfig, q, rng):
    return grade(c, q + c.self_optimism + rng.normal(0.0, c.self_noise, np.shape(q)))


def defects(c: SimConfig, q, rng):
    """(fatal, minor) defect counts, as model._proof_defects draws them."""
    g = grade(c, q)
    u1, u2 = rng.random(np.shape(q)), rng.random(np.shape(q))
    fatal = np.where(g == 0, 1 + (u1 < (c.partial_threshold - q) / c.partial_threshold), 0)
    minor = np.where(g == 0.5, 1 + (u2 < 0.4), np.where(g == 0, (u2 < 0.5).astype(int), 0))
    return fatal, minor


def refine(c: SimConfig, q, found, halluc, rng, d=0.0):
    """model.SimModel._refined_quality for one base proof per prompt (d: the problem's difficulty)."""
    p_up = np.clip(c.refine_p0 + c.refine_p_found * found - c.refine_p_halluc * halluc, 0.05, 0.95)
    up = rng.random(np.shape(q)) < p_up
    gain = np.minimum(1.0, c.refine_gain_base + c.refine_gain_found * found) * rng.beta(2, 2, np.shape(q))
    gain = gain * (1 - np.asarray(d)) ** c.refine_gain_difficulty
    down = rng.beta(1.5, 8, np.shape(q))
    return np.clip(np.where(up, q + (1 - q) * gain, q - q * down), 0.0, 1.0)


def verifier_mu(c: SimConfig, q, rng):
    """model._verifier_mean: accepting mu (with false reject) or the calibrated copula."""
    cal = c.calibration
    n = np.shape(q)
    if c.verifier_false_reject > 0:
        accept = 1.0 - np.minimum(0.5, c.verifier_false_reject * rng.exponential(1.0, n))
    else:
        accept = np.full(n, cal.correct_mu)
    r = np.clip(q / c.correct_threshold, 1e-6, 1 - 1e-6)
    rho = c.fool_quality_coupling
    u = ndtr(rho * ndtri(r) + math.sqrt(1 - rho * rho) * rng.normal(size=n))
    fooled = u > 1 - cal.fool_prob
    other = betaincinv(cal.beta_a, cal.beta_b, np.minimum(u / (1 - cal.fool_prob), 1 - 1e-12))
    return np.where(q >= c.correct_threshold, accept, np.where(fooled, accept, other))


# ---- sequential refinement (paper §3.3.2, Figure 2) ----------------------------------------


def sequential_curves(c: SimConfig, difficulty, threads: int = 32, iterations: int = 8,
                      seed: int = 0) -> dict[str, list[float]]:
    """Pass@1 and Best@threads (by self score) after max 1..iterations attempts per thread."""
    rng = np.random.default_rng(seed)
    d = np.repeat(np.asarray(difficulty, float)[:, None], threads, axis=1)
    q = generate(c, d, rng)
    s = self_score(c, q, rng)
    pass1, best = [], []
    for it in range(iterations):
        if it:
            active = s < 1
            fatal, minor = defects(c, q, rng)
            real = fatal + minor
            named = rng.binomial(real, c.self_find_prob)
            found = np.where(real > 0, named / np.maximum(real, 1), 0.0)
            halluc = (named == 0).astype(float)  # nothing real named: one hallucinated claim
            q2 = refine(c, q, found, halluc, rng, d)
            q = np.where(active, q2, q)
            s = np.where(active, self_score(c, q2, rng), s)
        g = grade(c, q) == 1.0
        pass1.append(float(g.mean()))
        pick = np.argmax(s + 1e-3 * rng.random(s.shape), axis=1)  # ties at random
        best.append(float(g[np.arange(len(d)), pick].mean()))
    return {"pass@1": pass1, f"best@{threads}": best}


# ---- the pool search (paper §3.3.3) -----------------------------------------------------------


@dataclass
class PoolOutcome:
    grades: list[float]  # true grade of each problem's selected proof
    rounds: list[int]  # refinement rounds run (0 = stopped after the initial proofs)
    accepted: list[bool]

    def summary(self, max_rounds: int) -> dict[str, float]:
        n = len(self.grades)
        return {"mean_grade": float(np.mean(self.grades)),
                "accepted": sum(self.accepted) / n,
                "share_rounds_ge_4": sum(r >= 4 for r in self.rounds) / n,
                "share_all_rounds": sum(r >= max_rounds and not a for r, a in zip(self.rounds, self.accepted)) / n,
                "mean_rounds": float(np.mean(self.rounds))}


def _claims(c: SimConfig, fatal: int, minor: int, halves: np.ndarray, rng) -> tuple[float, float]:
    """(found, halluc) of a refinement prompt showing analyses with these half-point totals."""
    real = fatal + minor
    hit, n_claims, n_halluc = set(), 0, 0
    for h in halves:
        pool = fatal if (h == 0 and fatal) else real
        seen = set()
        for _ in range(1 + (rng.random() < 0.5 and c.verifier_max_claims > 1)):
            if pool and rng.random() < c.verifier_real_issue_prob:
                k = int(rng.integers(pool))  # fatal defects are indices 0..fatal-1
                if k not in seen:
                    seen.add(k)
                    n_claims += 1
            else:
                n_claims += 1
                n_halluc += 1
        hit |= seen
    found = len(hit) / real if real else 0.0
    return found, (n_halluc / n_claims if n_claims else 0.0)


def _verify(c: SimConfig, q, verifications: int, rng):
    mu = verifier_mu(c, q, rng)
    halves = rng.binomial(2, np.repeat(mu[:, None], verifications, axis=1))
    return halves


def _one_problem(c: SimConfig, d: float, p: dict[str, int], rng) -> tuple[float, int, bool]:
    q = generate(c, np.full(p["initial"], d), rng)
    s = self_score(c, q, rng)
    fatal, minor = defects(c, q, rng)
    halves = _verify(c, q, p["verifications"], rng)
    rounds_of = np.zeros(len(q), int)
    for r in range(p["rounds"] + 1):
        new = rounds_of == r
        passing = new & (halves == 2).all(axis=1)
        mean = halves.mean(axis=1)
        order = np.lexsort((np.arange(len(q)), -s, -mean))  # rank_key: mean, self score, slot
        if passing.any():
            best = next(i for i in order if passing[i])
            return float(grade(c, q[best])), r, True
        if r == p["rounds"]:
            return float(grade(c, q[order[0]])), r, False
        top = order[:p["top_k"]]
        fb = np.empty(len(top))
        hb = np.empty(len(top))
        for j, i in enumerate(top):
            issues = halves[i][halves[i] < 2]
            if len(issues) > p["analyses"]:
                issues = rng.choice(issues, p["analyses"], replace=False)
            fb[j], hb[j] = _claims(c, int(fatal[i]), int(minor[i]), issues, rng)
        q2 = refine(c, q[top], fb, hb, rng, d)
        f2, m2 = defects(c, q2, rng)
        q, s = np.concatenate([q, q2]), np.concatenate([s, self_score(c, q2, rng)])
        fatal, minor = np.concatenate([fatal, f2]), np.concatenate([minor, m2])
        halves = np.concatenate([halves, _verify(c, q2, p["verifications"], rng)])
        rounds_of = np.concatenate([rounds_of, np.full(len(q2), r + 1)])
    raise AssertionError("unreachable")


PAPER_POOL = dict(initial=64, verifications=64, top_k=64, analyses=8, rounds=16)


def pool_search(c: SimConfig, difficulty, params: dict[str, int] | None = None, seed: int = 0) -> PoolOutcome:
    """The paper's pool search per problem (samples_per_prompt = 1, analyses chosen issue-first)."""
    p = {**PAPER_POOL, **(params or {})}
    rng = np.random.default_rng(seed)
    out = PoolOutcome([], [], [])
    for d in np.asarray(difficulty, float):
        g, r, a = _one_problem(c, float(d), p, rng)
        out.grades.append(g)
        out.rounds.append(r)
        out.accepted.append(a)
    return out

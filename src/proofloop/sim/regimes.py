"""Simulator regimes: the simulated model tuned to the paper's *search* outcomes, not its final proofs.

The default simulator (`released`) is calibrated on the 84 released final proofs, which the
verifier had already selected: correct proofs never fail a verification, and every problem of
a pool search stops within two rounds. The regimes below re-tune a few knobs so that the
multi-round search the paper is about happens: correct proofs sometimes fail a verification,
few generated proofs fool the verifier, problems are as hard as the benchmarks', and a proof
improves over several refinements.

    >>> cfg, problems = config_for("advanced"), problems_for("advanced", 3, seed=1)
    >>> cfg.verifier_false_reject > 0 and len(problems) == 3
    True
    >>> round(REGIMES["shortlist"].difficulty[0] / sum(REGIMES["shortlist"].difficulty), 3) > 0.5
    True

Targets and their sources (DESIGN.md §3; the paper, arXiv 2511.22570):

- `shortlist`: paper Figure 2, sequential refinement on IMO Shortlist 2024 with 32 threads:
  Pass@1 0.15 .. 0.27 and Best@32 (by self score) 0.26 .. 0.42 over max 1 .. 8 iterations
  (FIGURE2 below). Fitted (8 numbers): the problems' difficulty distribution (mean 0.608,
  concentration 1.02: a U shape, most problems either easy or out of reach, which is how
  Pass@1 0.15 and Best@32 0.26 go together), the generator's slope over difficulty, the self
  evaluation's optimism and noise, and the refinement gain (refine_p0, refine_gain_base,
  refine_gain_difficulty). Tolerance, per point on 1000 problems: Pass@1 within 0.05, Best@32
  within 0.06 (the real benchmark has ~31 problems: Best@32's own sampling error there is
  ~0.09). Reached: 0.041 / 0.039 (seed 1), 0.036 / 0.042 (seed 2). Known misfit: the
  simulated Pass@1 is flat from 1 to 2 iterations (0.155, 0.152) and then rises steadily to
  0.268, where the paper's rises fastest first (0.15, 0.18, 0.21): the simulator's refinement
  breaks a correct proof that its own self evaluation doubts (a hallucinated issue: p_up at
  its floor 0.05), which the paper's model evidently rarely does.
- `basic`, `advanced`: the high-compute pool search (64 proofs x 64 verifications, top 64, 8
  analyses, 16 rounds) scores 99.0% on IMO-ProofBench Basic and 61.9% on Advanced (expert
  grades). Fitted: each benchmark's mean difficulty (0.258 / 0.903, concentration as
  shortlist's), so that the mean true grade (0 / 0.5 / 1) of the proof the pool search selects
  is 0.990 / 0.619 within POOL_TOL (0.02) on 200 problems (seed 1). The generator, its self
  evaluation and refinement are shortlist's (one model; benchmarks differ in their problems).
  In `advanced` 2/3 of the problems run 4 rounds or more and a third run all 16 without
  accepting a proof. That Advanced comes out harder than the Shortlist in this scale (0.90
  against 0.61) is a result of the fit, not an input: with Figure 2's refinement gain, the
  pool search (64 parallel chains, verifier-guided) solves Shortlist-like problems ~95% of
  the time; a stronger difficulty drag on refinement (refine_gain_difficulty >= 2) brings the
  pool to ~0.6 on Shortlist-like problems but then misses Figure 2 by 0.13-0.15.
- `released`: today's simulator, untouched (SimConfig() and the `default` mix).

Assumptions (guesses, no published number pins them; each is a knob of SimConfig):

- verifier false reject, `verifier_false_reject` = 0.006: a proof of accepted quality rejects
  each half-point with its own rate eps ~ Exponential(mean 0.006), so P(it passes all 64
  verifications) = E[(1 - eps)^128] ~ 1 / (1 + 128 x 0.006) = 0.57. In the released outputs
  every correct final proof scored 1.0, but those were selected by that very test; a
  generated correct proof passing only about half the time is what makes the paper's search
  run more than one round on problems it solves.
- verifier false accept, `fool_prob` = 0.002 (with the calibrated coupling to quality: near
  misses fool more often), and Beta(1.5, 2) instead of the fitted Beta(0.84, 0.62) for the
  per-proof mean of the other incorrect proofs: the released outputs' numbers describe
  *selected* incorrect proofs, where a fooling proof is over-represented by the selection
  itself. With 64 fresh proofs per round, the released values stop every problem at round 0
  (a Beta(0.84, 0.62) proof has mu > 0.99 one time in ten and then passes 64 verifications
  half the time) and cap Advanced far below 61.9%.
- difficulty: Beta(m k, (1 - m) k) per regime, k = CONCENTRATION fitted on shortlist.
- the defects, the analysis claims and the rest of the generator are the default
  simulator's (docs/SIMULATOR.md).

Fitting uses `surrogate.py`: a vectorised Monte Carlo of the same equations at the level of
proof qualities (no texts), fast enough to fit; `python -m proofloop.sim.regimes` refits
(a few minutes of CPU) and prints the numbers that MODEL_FIT, CONCENTRATION and
DIFFICULTY_MEAN hold (the committed numbers came from the same steps run by hand; a refit
on 2026-11-30 gave the model knobs within 0.02 of them, slope 11.01, shortlist mean 0.612,
advanced 0.907, and basic 0.517: basic's mean is weakly pinned, any value from ~0.25 to ~0.5
selects grade 0.99-1.0); tests/test_sim_regimes.py checks they reproduce the targets and that
the surrogate's generation agrees with the model's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from proofloop.extras import require
from proofloop.sim import surrogate
from proofloop.sim.calibration import Calibration
from proofloop.sim.model import SimConfig, make_problems

np = require("numpy", "sim", "the proofloop simulator")

__all__ = ["Regime", "REGIMES", "FIGURE2", "FIGURE2_TOL", "POOL_TARGETS", "POOL_TOL", "config_for",
           "problems_for", "regime", "fit_all", "CONCENTRATION"]

# paper Figure 2 (DESIGN.md §3): max iterations 1..8
FIGURE2 = {"pass@1": (0.15, 0.18, 0.21, 0.22, 0.24, 0.24, 0.26, 0.27),
           "best@32": (0.26, 0.29, 0.33, 0.39, 0.39, 0.40, 0.40, 0.42)}
FIGURE2_TOL = {"pass@1": 0.05, "best@32": 0.06}  # per point, on 1000 problems (see the docstring)
POOL_TARGETS = {"basic": 0.990, "advanced": 0.619}  # IMO-ProofBench, high-compute search (DESIGN.md §3)
POOL_TOL = 0.02
CALIBRATION_FIELDS = ("fool_prob", "beta_a", "beta_b")  # overrides that replace the fitted verifier table

# The model fitted to Figure 2 (shared by every tuned regime), the difficulty concentration
# fitted with it, the verifier guesses, and each regime's fitted mean difficulty.
# Produced by `python -m proofloop.sim.regimes` (fit_all below).
MODEL_FIT: dict[str, float] = dict(self_optimism=-0.0606, self_noise=0.2027, refine_p0=0.1864,
                                   refine_gain_base=0.5445, refine_gain_difficulty=0.1461, gen_logit_slope=10.9751)
CONCENTRATION = 1.019
VERIFIER_GUESS: dict[str, float] = dict(verifier_false_reject=0.006, fool_prob=0.002, beta_a=1.5, beta_b=2.0)
DIFFICULTY_MEAN: dict[str, float] = dict(shortlist=0.6076, basic=0.2581, advanced=0.9031)


@dataclass(frozen=True)
class Regime:
    """A named simulator setting: config overrides and how its problems' difficulty is drawn."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)  # SimConfig fields, or CALIBRATION_FIELDS
    difficulty: tuple[float, float] | None = None  # Beta(a, b); None: the band mix below
    mix: str = "default"
    target: str = ""

    def config(self) -> SimConfig:
        fields = dict(self.overrides)
        verifier = {k: fields.pop(k) for k in CALIBRATION_FIELDS if k in fields}
        return SimConfig(calibration=dataclasses.replace(Calibration.committed(), **verifier), **fields)


def _beta(mean: float) -> tuple[float, float]:
    return (mean * CONCENTRATION, (1 - mean) * CONCENTRATION)


def _tuned(name: str, target: str) -> Regime:
    return Regime(name, overrides={**MODEL_FIT, **VERIFIER_GUESS}, difficulty=_beta(DIFFICULTY_MEAN[name]),
                  target=target)


REGIMES: dict[str, Regime] = {
    "released": Regime("released", target="the released final proofs (calibration.py); every problem stops by round 1"),
    "shortlist": _tuned("shortlist", "Figure 2: sequential Pass@1 0.15->0.27, Best@32 0.26->0.42 (1->8 iterations)"),
    "basic": _tuned("basic", "pool search selects expert-correct quality 0.990 (IMO-ProofBench Basic)"),
    "advanced": _tuned("advanced", "pool search selects expert-correct quality 0.619 (IMO-ProofBench Advanced)"),
}


def regime(name: str) -> Regime:
    if name not in REGIMES:
        raise ValueError(f"unknown regime {name!r}; choose one of {', '.join(REGIMES)}")
    return REGIMES[name]


def config_for(name: str) -> SimConfig:
    """The SimConfig of a regime (SimConfig() for `released`)."""
    return regime(name).config()


def problems_for(name: str, count: int, seed: int = 0) -> list[str]:
    """`count` problems of a regime (released: the `default` band mix)."""
    r = regime(name)
    return make_problems(count, seed=seed, mix=r.mix, beta=r.difficulty)


# ---- fitting (python -m proofloop.sim.regimes) ---------------------------------------------

FIGURE2_FREE = {  # name: search bounds; mean/concentration are shortlist's difficulty Beta
    "mean": (0.2, 0.95), "concentration": (0.5, 8.0), "self_optimism": (-0.1, 0.3), "self_noise": (0.02, 0.4),
    "refine_p0": (0.0, 0.9), "refine_gain_base": (0.0, 0.9), "refine_gain_difficulty": (0.0, 4.0),
    "gen_logit_slope": (4.0, 12.0)}


def verifier_base() -> SimConfig:
    return Regime("fit", overrides=dict(VERIFIER_GUESS)).config()


def _draw(mean: float, concentration: float, problems: int, seed: int):
    return np.random.default_rng(seed).beta(mean * concentration, (1 - mean) * concentration, problems)


def figure2_curves(x: dict[str, float], problems: int, seed: int) -> dict[str, list[float]]:
    model = {k: v for k, v in x.items() if k not in ("mean", "concentration")}
    c = dataclasses.replace(verifier_base(), **model)
    return surrogate.sequential_curves(c, _draw(x["mean"], x["concentration"], problems, seed), seed=seed)


def _figure2_loss(v, names: list[str], problems: int, seed: int) -> float:
    x = dict(zip(names, v))
    if not (0.05 < x["mean"] < 0.95 and 0.3 < x["concentration"] < 20 and x["self_noise"] > 0.01
            and 0 <= x["refine_p0"] <= 1 and 0 <= x["refine_gain_base"] <= 1 and x["refine_gain_difficulty"] >= 0):
        return 1e3  # Nelder-Mead has no bounds: outside the model's domain
    curves = figure2_curves(x, problems, seed)
    return sum((a - b) ** 2 for key in FIGURE2 for a, b in zip(curves[key], FIGURE2[key]))


def fit_figure2(maxiter: int = 50) -> dict[str, float]:
    """Differential evolution on the squared gaps to Figure 2's 16 points (300 problems, common
    random numbers), then a Nelder-Mead polish on 800 other problems."""
    from scipy import optimize

    names = list(FIGURE2_FREE)
    coarse = optimize.differential_evolution(_figure2_loss, list(FIGURE2_FREE.values()), args=(names, 300, 0),
                                             seed=1, popsize=10, maxiter=maxiter, tol=1e-7, polish=False)
    fine = optimize.minimize(_figure2_loss, coarse.x, args=(names, 800, 3), method="Nelder-Mead",
                             options=dict(maxiter=400, xatol=1e-3, fatol=1e-7))
    return {k: round(float(v), 4) for k, v in zip(names, fine.x)}


def fit_pool_mean(c: SimConfig, target: float, concentration: float, problems: int = 200, seed: int = 1,
                  steps: int = 8) -> float:
    """Bisection on the mean difficulty so the pool search's mean selected grade is `target`."""
    lo, hi = 0.02, 0.98
    for _ in range(steps):
        mid = (lo + hi) / 2
        got = float(np.mean(surrogate.pool_search(c, _draw(mid, concentration, problems, seed), seed=seed).grades))
        lo, hi = (mid, hi) if got > target else (lo, mid)
    return round((lo + hi) / 2, 4)


def fit_all() -> dict[str, Any]:
    """Fit shortlist to Figure 2, then basic and advanced's mean difficulty to their pool scores."""
    fig = fit_figure2()
    model = {k: v for k, v in fig.items() if k not in ("mean", "concentration")}
    tuned = dataclasses.replace(verifier_base(), **model)
    means = {name: fit_pool_mean(tuned, t, fig["concentration"]) for name, t in POOL_TARGETS.items()}
    return {"MODEL_FIT": model, "CONCENTRATION": fig["concentration"],
            "DIFFICULTY_MEAN": {"shortlist": fig["mean"], **means}}


def main() -> None:
    """Refit the free parameters with the surrogate and print them and the fit's outcomes."""
    print(json.dumps(fit_all(), indent=2))


if __name__ == "__main__":
    main()

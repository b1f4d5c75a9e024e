"""Fit the simulated verifier (and proof lengths) to DeepSeekMath-V2's released outputs.

The released outputs (deepseek-ai/DeepSeek-Math-V2, `outputs/*.jsonl`, 84 final proofs) hold,
per proof, the mean of 64 verifier scores (`average_automatic_rating`) and an expert grade
(`human_rating`, scale 0-7; CMO2024 0-21; Putnam2024 0-10). A proof is expert-correct when its
grade is at least 6/7 of the scale (DESIGN.md §3).

The verifier model that is fitted (docs/SIMULATOR.md, "Verifier"):

- each proof has a per-proof mean score mu; one verifier sample is s = (b1 + b2) / 2 with b1, b2
  independent Bernoulli(mu). So P(1) = mu^2, P(0.5) = 2 mu (1 - mu), P(0) = (1 - mu)^2, and the
  64-sample total in half-points, 128 * mean, is exactly Binomial(128, mu). That makes the
  likelihood of the released means exact.
- expert-correct proofs: mu = 1 - eps (one value for all). All 68 of them scored 1.0 in the data,
  so eps is the Jeffreys posterior mean of the rejected half-points, (k + 1/2) / (N + 1).
- expert-incorrect proofs: a mixture. With probability `fool` the proof fools the verifier
  (it is treated like a correct proof, mu = 1 - eps: IMO 2025 P6 and friends); otherwise
  mu ~ Beta(a, b). `fool`, a, b are fitted by maximum likelihood (beta-binomial on 128 trials).

Run it (prints the table that `FITTED` below holds):

    python -m proofloop.sim.calibration /work/shared/data/dsm2/outputs

    >>> cal = Calibration.committed()
    >>> round(cal.correct_mu, 4), round(cal.fool_prob, 3)
    (0.9999, 0.22)
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from proofloop.extras import require

np = require("numpy", "sim", "the proofloop simulator")
optimize = require("scipy.optimize", "sim", "the proofloop simulator")
stats = require("scipy.stats", "sim", "the proofloop simulator")
_special = require("scipy.special", "sim", "the proofloop simulator")
betaln, expit, gammaln = _special.betaln, _special.expit, _special.gammaln

HALF_POINTS = 128  # 64 samples x 2 half-points: the mean x 128 is an integer in the data
CORRECT_FRACTION = 6 / 7  # expert grade >= 6/7 of the scale counts as correct (DESIGN.md §3)
CHARS_PER_TOKEN = 3.5  # rough chars/token for LaTeX-heavy English (a guess, used for proof lengths)
ENV_DATA_DIR = "PROOFLOOP_DSM2_OUTPUTS"  # where calibration looks when no path is given


@dataclass(frozen=True)
class Calibration:
    """The numbers the simulated verifier and proof lengths use."""

    correct_mu: float  # per-sample mean score on an expert-correct proof
    fool_prob: float  # share of expert-incorrect proofs that fool the verifier (mu = correct_mu)
    beta_a: float  # mu ~ Beta(a, b) for the other expert-incorrect proofs
    beta_b: float
    proof_tokens_median: float  # lognormal fit of final proof lengths (chars / CHARS_PER_TOKEN)
    proof_tokens_sigma: float
    n_correct: int  # how many proofs the fit saw
    n_incorrect: int
    source: str  # "data:<dir>" or "committed"

    @classmethod
    def committed(cls) -> "Calibration":
        return cls(**FITTED)

    def accept_prob_incorrect(self, threshold: float = 0.75) -> float:
        """P(64-sample mean >= threshold | expert-incorrect) under the fitted model."""
        k0 = math.ceil(threshold * HALF_POINTS - 1e-9)
        ks = np.arange(k0, HALF_POINTS + 1)
        fooled = stats.binom.sf(k0 - 1, HALF_POINTS, self.correct_mu)
        rest = float(np.exp(_log_beta_binom(ks, self.beta_a, self.beta_b)).sum())
        return self.fool_prob * fooled + (1 - self.fool_prob) * rest

    def precision_at(self, threshold: float = 0.75) -> float:
        """Expected precision with the data's mix of correct and incorrect proofs."""
        acc_c = float(stats.binom.sf(math.ceil(threshold * HALF_POINTS - 1e-9) - 1, HALF_POINTS,
                                     self.correct_mu))
        tp = self.n_correct * acc_c
        return tp / (tp + self.n_incorrect * self.accept_prob_incorrect(threshold))


# Produced by `python -m proofloop.sim.calibration /work/shared/data/dsm2/outputs` (numbers only;
# the data are not in the repository). Used when the data directory is absent.
FITTED = dict(
    correct_mu=0.9999425617,
    fool_prob=0.2195942,
    beta_a=0.8363904,
    beta_b=0.6200715,
    proof_tokens_median=2073.73,
    proof_tokens_sigma=0.5357,
    n_correct=68,
    n_incorrect=16,
    source="committed",
)


def read_outputs(data_dir: str | Path) -> list[tuple[str, float, float, int]]:
    """(problem id, 64-sample mean, expert grade as a fraction of its scale, proof chars) rows."""
    rows = []
    files = sorted(Path(data_dir).glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no *.jsonl files in {data_dir}")
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            pred = r["model_prediction"]
            pid = str(r["problem_idx"])
            scale = 21 if pid.startswith("CMO2024") else 10 if pid.startswith("Putnam") else 7
            rows.append((pid, float(pred["average_automatic_rating"]), pred["human_rating"] / scale,
                         len(pred["proof"])))
    return rows


def _log_beta_binom(k, a: float, b: float, n: int = HALF_POINTS):
    return (gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
            + betaln(k + a, n - k + b) - betaln(a, b))


def fit(data_dir: str | Path) -> Calibration:
    """Fit the calibration from the released outputs (see the module docstring)."""
    rows = read_outputs(data_dir)
    k = np.array([round(mean * HALF_POINTS) for _, mean, _, _ in rows])
    correct = np.array([grade >= CORRECT_FRACTION - 1e-9 for _, _, grade, _ in rows])
    if correct.sum() == 0 or (~correct).sum() < 3:
        raise ValueError(f"{data_dir}: too few correct/incorrect proofs to fit")
    rejected = float((HALF_POINTS - k[correct]).sum())
    eps = (rejected + 0.5) / (HALF_POINTS * correct.sum() + 1)
    mu_c = 1.0 - eps
    ki = k[~correct]

    def nll(p):
        f, a, b = expit(p[0]), math.exp(p[1]), math.exp(p[2])
        fooled = math.log(f) + stats.binom.logpmf(ki, HALF_POINTS, mu_c)
        other = math.log1p(-f) + _log_beta_binom(ki, a, b)
        return -float(np.logaddexp(fooled, other).sum())

    starts = [(-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (-2.0, -1.0, -1.0), (-1.0, 0.5, 0.5)]
    best = min((optimize.minimize(nll, x0, method="Nelder-Mead",
                                  options=dict(maxiter=4000, xatol=1e-8, fatol=1e-10)) for x0 in starts),
               key=lambda r: r.fun)
    tokens = np.log(np.array([chars for *_, chars in rows]) / CHARS_PER_TOKEN)
    return Calibration(correct_mu=mu_c, fool_prob=float(expit(best.x[0])),
                       beta_a=float(math.exp(best.x[1])), beta_b=float(math.exp(best.x[2])),
                       proof_tokens_median=float(math.exp(np.median(tokens))),
                       proof_tokens_sigma=float(tokens.std(ddof=1)),
                       n_correct=int(correct.sum()), n_incorrect=int((~correct).sum()),
                       source=f"data:{data_dir}")


def default_data_dir() -> Path | None:
    """$PROOFLOOP_DSM2_OUTPUTS, else ../shared/data/dsm2/outputs beside the checkout, if present."""
    candidates = [os.environ.get(ENV_DATA_DIR)] if os.environ.get(ENV_DATA_DIR) else []
    here = Path(__file__).resolve()
    candidates += [str(p / "shared" / "data" / "dsm2" / "outputs") for p in here.parents[3:6]]
    for c in candidates:
        if c and Path(c).is_dir() and any(Path(c).glob("*.jsonl")):
            return Path(c)
    return None


def load(data_dir: str | Path | None = None) -> Calibration:
    """Fit from `data_dir` (or the default location) when it exists; else the committed table.

    An explicitly given directory that does not exist is an error, not a silent fallback."""
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise FileNotFoundError(f"calibration data directory not found: {data_dir}")
        return fit(data_dir)
    found = default_data_dir()
    return fit(found) if found else Calibration.committed()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cal = fit(argv[0]) if argv else load()
    print(json.dumps(asdict(cal), indent=2))
    print(f"P(mean >= 0.75 | incorrect) = {cal.accept_prob_incorrect():.3f}; "
          f"expected precision at 0.75 with the data's mix = {cal.precision_at():.3f}")


if __name__ == "__main__":
    main()

r"""Step-level behaviour of the simulated model: proofs written one step at a time, each step
with a hidden validity, and a step verifier that judges it with calibrated noise.

Pure functions of (the prompt, the sample key); model.py calls them for the two step roles
(protocol.stepwise) and for a whole-proof verification of a proof assembled from sim steps.
A step carries its hidden state as a marker, like the proofs of model.py:
`<!-- sim:step id=... p=PROBLEM i=3 of=6 v=1 pad=... -->` (i: its index; of: the length a
proof of this problem has; v: 1 valid, 0 not).

Assumptions, and where their numbers come from:

- Length: a proof of a problem has `of` = 4..7 steps (a hash of the problem id). Free
  parameter, the order of the sim proofs of model.py (4..9 steps).
- Validity: each proposed step is valid with probability p_step = p_correct(d) ** (1 / of),
  independently, so a proof written step by step without any pruning is all-valid with the
  same probability as a whole proof of model.py is correct (the generator's calibration,
  docs/SIMULATOR.md). A step after an invalid one is drawn the same way: the error stays in
  the prefix (ProcessBench's label is the FIRST wrong step).
- Step verifier: a step is *seen* as it is, except that an invalid step fools the verifier
  consistently (every sample) with probability `fool_prob` and a valid step is consistently
  doubted with probability `doubt_prob` (a hash of the step: the errors of repeated samples
  are correlated, so more samples do not make the verifier perfect). Then, per sample, a
  step seen as valid scores 1 with probability `valid_one` (else 0.5 or 0 evenly) and one
  seen as invalid scores 0 with probability `invalid_zero` (else 0.5 or 1 evenly). All four
  are free parameters, set so that one sample's first-error F1 on simulated proofs lands
  near 0.7: the ProcessBench paper (arXiv 2412.06559) reports 71.5 F1 for the best open
  critic model (QwQ-32B-Preview) and 87.9 for o1-mini. Not fitted to any data.
- A whole proof assembled from sim steps is judged by the whole-proof verifier of model.py as a
  proof of quality ASSEMBLED_VALID_Q when every step is valid, else ASSEMBLED_INVALID_Q (an
  incorrect proof with a fatal defect): the calibrated verifier then decides as for any proof.

    >>> problem = "<!-- sim:problem id=s0-0001 d=0.200 -->\nProve it."
    >>> text, complete = next_step(problem, "k:0", StepSimConfig(), p_whole=0.8)
    >>> text.startswith("## Next Step") and "sim:step" in text
    True
    >>> round(step_validity_prob(0.8, 4), 3)
    0.946
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

__all__ = ["StepSimConfig", "next_step", "step_score", "step_validity_prob", "assembled_quality", "step_markers",
           "ASSEMBLED_VALID_Q", "ASSEMBLED_INVALID_Q", "seen_accuracy"]

ASSEMBLED_VALID_Q = 0.9    # above model.py's correct threshold (0.75)
ASSEMBLED_INVALID_Q = 0.3  # below its partial threshold (0.5): grade 0

_STEP = re.compile(r"<!--\s*sim:step((?:\s+\w+=[^\s>]*)*)\s*-->")
_PAIR = re.compile(r"(\w+)=([^\s>]*)")
_PROBLEM = re.compile(r"<!--\s*sim:problem\s+id=(\S+)\s+d=([0-9.]+)")
_CLAIMS = ("the quantity in question is bounded by the previous estimate", "the two cases reduce to one",
           "the auxiliary function is monotone on the interval", "the congruence holds for every residue",
           "the construction meets every condition", "the extremal element has the stated property")


@dataclass(frozen=True)
class StepSimConfig:
    valid_one: float = 0.95     # free parameter: P(score 1 | step seen as valid), one sample
    invalid_zero: float = 0.85  # free parameter: P(score 0 | step seen as invalid), one sample
    fool_prob: float = 0.12     # free parameter: share of invalid steps seen as valid by every sample
    doubt_prob: float = 0.03    # free parameter: share of valid steps seen as invalid by every sample
    min_steps: int = 4
    max_steps: int = 7
    reasoning_tokens: int = 1500  # guess: thinking per step (a sixth of a whole proof's)
    step_tokens: int = 250        # guess: tokens a step stands for


def _u(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return (int.from_bytes(digest[:7], "big") + 0.5) / 2 ** 56


def seen_accuracy(config: StepSimConfig, valid: bool) -> float:
    """P(one sample scores a valid step 1, or an invalid step 0): the mixture of seen-as-is
    and consistently misjudged steps."""
    if valid:
        return (1 - config.doubt_prob) * config.valid_one + config.doubt_prob * (1 - config.invalid_zero) / 2
    return (1 - config.fool_prob) * config.invalid_zero + config.fool_prob * (1 - config.valid_one) / 2


def step_markers(text: str) -> list[dict[str, str]]:
    """Every sim step marker of `text`, in order, as dicts of its fields."""
    return [dict(_PAIR.findall(m.group(1))) for m in _STEP.finditer(text or "")]


def step_validity_prob(p_whole: float, steps: int) -> float:
    """P(one step is valid) when `steps` valid steps in a row have probability p_whole."""
    return min(max(p_whole, 1e-9), 1.0) ** (1 / steps)


def _problem(prompt: str) -> tuple[str, float]:
    m = _PROBLEM.search(prompt)
    if m:
        return m.group(1), float(m.group(2))
    return "x" + hashlib.sha256(prompt.split("## Proof So Far")[0].encode()).hexdigest()[:8], 0.5


def next_step(prompt: str, key: str, config: StepSimConfig, p_whole: float) -> tuple[str, bool]:
    """The answer to a continuation prompt: the next step (with its marker) and whether it
    completes the proof. `p_whole`: the generator's P(correct proof) at this difficulty."""
    prob_id, _ = _problem(prompt)
    length = config.min_steps + int(_u("length", prob_id) * (config.max_steps - config.min_steps + 1))
    index = len(step_markers(prompt.split("## Proof So Far")[-1])) + 1
    rng = random.Random(hashlib.sha256(f"step\x1f{key}".encode()).digest())
    valid = rng.random() < step_validity_prob(p_whole, length)
    sid = hashlib.sha256(f"sid\x1f{key}".encode()).hexdigest()[:10]
    complete = index >= length
    claim = _CLAIMS[rng.randrange(len(_CLAIMS))]
    body = f"We show that {claim}."
    if complete:
        body += "\nThis completes the proof."
    marker = f"<!-- sim:step id={sid} p={prob_id} i={index} of={length} v={int(valid)} pad={config.step_tokens} -->"
    return f"## Next Step\n\n{marker}\n{body}", complete


def step_score(prompt: str, rng: random.Random, config: StepSimConfig) -> float | None:
    """One simulated step-verifier score for the LAST step marker of `prompt` (the step to
    judge comes last in the template); None when the prompt holds no sim step."""
    found = step_markers(prompt.split("## Step to Judge")[-1]) or step_markers(prompt)
    if not found:
        return None
    valid = found[-1].get("v") == "1"
    if _u("misread", found[-1].get("id", "")) < (config.doubt_prob if valid else config.fool_prob):
        valid = not valid  # this step is misjudged by every sample
    hit = rng.random() < (config.valid_one if valid else config.invalid_zero)
    if hit:
        return 1.0 if valid else 0.0
    return 0.5 if rng.random() < 0.5 else (0.0 if valid else 1.0)


def assembled_quality(text: str) -> tuple[str, float] | None:
    """(proof id, quality) of a proof made of sim steps, or None when `text` has no sim step."""
    found = step_markers(text)
    if not found:
        return None
    pid = "a" + hashlib.sha256(",".join(m.get("id", "") for m in found).encode()).hexdigest()[:10]
    return pid, ASSEMBLED_VALID_Q if all(m.get("v") == "1" for m in found) else ASSEMBLED_INVALID_Q

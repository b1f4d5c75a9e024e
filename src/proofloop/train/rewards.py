"""The rewards DeepSeekMath-V2 trains its three roles with (paper §2, DESIGN.md §2). Pure: no
I/O, no torch, no RL framework; TRL reward functions, verl's `compute_score` and a reward
server all call these.

- R_score(s', s) = 1 - |s' - s|: how close a predicted score s' is to the target s.
- Verifier: R_format * R_score(s', s), s the expert score of the proof; with
  meta-verification R_format * R_score * R_meta, R_meta the meta-verifier's rating of the
  analysis.
- Meta-verifier: the same form on the expert quality rating of the analysis.
- Generator: R_format(Y, Z) * (alpha * R_Y + beta * R_Z) with R_Y = s, the verifier's score of
  the proof Y, and R_Z = R_score(s', s) * R_meta(Z), s' the generator's self score and
  R_meta(Z) the meta-verifier's rating of its self evaluation Z; alpha = 0.76, beta = 0.24.

R_format is 1 when the output keeps its contract (the key phrases and a boxed score in
{0, 0.5, 1}; the generator needs both sections and its self score) and 0 otherwise, with the
parser's reason. A judge that failed (a verifier or meta-verifier call with no usable score,
passed as None) is not a reward of 0: the reward's `total` is None, so the completion gets no
reward (TRL: None; verl: left out), and `reason` says why.

    >>> ok = ("Here is my evaluation of the solution: fine.\\n\\n"
    ...       "Based on my evaluation, the final overall score should be: \\\\boxed{0.5}")
    >>> verifier_reward(ok, target=1.0)
    Reward(total=0.5, components={'format': 1.0, 'score': 0.5}, reason=None)
    >>> verifier_reward(ok, target=0.5, meta=0.5).total
    0.5
    >>> bad = verifier_reward("no verdict at all", target=1.0)
    >>> bad.total, bad.components, bad.reason.split(":")[0]
    (0.0, {'format': 0.0}, 'no_final_phrase')
    >>> verifier_reward(ok, target=1.0, meta=None, needs_meta=True).total is None   # the judge failed
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proofloop.protocol import parse_meta_verification, parse_proof, parse_verification
from proofloop.protocol.types import SCORES

ALPHA = 0.76  # weight of the proof's own score in the generator reward
BETA = 0.24  # weight of the self evaluation's reward


@dataclass(frozen=True)
class Reward:
    """A reward and the named parts it was computed from. `total` None: no reward (a judge
    failed), with the reason; a format failure is a total of 0.0 with the parser's reason."""

    total: float | None
    components: dict[str, float] = field(default_factory=dict)
    reason: str | None = None


def score_reward(predicted: float, target: float) -> float:
    """R_score(s', s) = 1 - |s' - s| for scores in [0, 1].

    >>> score_reward(0.5, 1.0), score_reward(1.0, 1.0), score_reward(0.0, 1.0)
    (0.5, 1.0, 0.0)
    """
    for name, value in (("predicted", predicted), ("target", target)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} score {value} is outside [0, 1]")
    return 1.0 - abs(predicted - target)


def _judged(name: str, value: float | None) -> str | None:
    """Why a judged input cannot be used (None: it can)."""
    if value is None:
        return f"no {name}: the judge call failed or its output had no score"
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} {value} is outside [0, 1]")
    return None


def _scored_reward(parsed_status: str, parsed_cause: str | None, predicted: float | None, target: float,
                   meta: float | None, needs_meta: bool) -> Reward:
    """R_format * R_score(predicted, target) [* R_meta]: the verifier's and meta-verifier's form."""
    if target not in SCORES:
        raise ValueError(f"target {target} is not one of 0, 0.5, 1")
    if parsed_status != "ok" or predicted is None:
        return Reward(0.0, {"format": 0.0}, f"{parsed_status}: {parsed_cause}")
    components = {"format": 1.0, "score": score_reward(predicted, target)}
    if needs_meta or meta is not None:
        why = _judged("meta rating", meta)
        if why:
            return Reward(None, components, why)
        components["meta"] = float(meta)  # type: ignore[arg-type]
    total = 1.0
    for value in components.values():
        total *= value
    return Reward(total, components)


def verifier_reward(output: str, target: float, *, meta: float | None = None, needs_meta: bool = False,
                    reasoning: str | None = None, finish_reason: str | None = None) -> Reward:
    """The verifier's reward for one analysis of a proof whose expert score is `target`.
    `meta`: the meta-verifier's rating of this analysis (with `needs_meta`, None means the
    meta-verifier failed: no reward)."""
    p = parse_verification(output, reasoning=reasoning, finish_reason=finish_reason, issues=False)  # verdict only
    return _scored_reward(p.status.value, p.cause, p.score, target, meta, needs_meta)


def meta_verifier_reward(output: str, target: float, *, meta: float | None = None, needs_meta: bool = False,
                         reasoning: str | None = None, finish_reason: str | None = None) -> Reward:
    """The meta-verifier's reward for one rating of an analysis whose expert quality rating
    is `target` (the same form as the verifier's)."""
    p = parse_meta_verification(output, reasoning=reasoning, finish_reason=finish_reason, issues=False)
    return _scored_reward(p.status.value, p.cause, p.score, target, meta, needs_meta)


def generator_reward(output: str, proof_score: float | None, self_eval_meta: float | None, *,
                     alpha: float = ALPHA, beta: float = BETA, reasoning: str | None = None,
                     finish_reason: str | None = None) -> Reward:
    """The generator's reward for one output (proof Y and self evaluation Z): R_format(Y, Z) *
    (alpha * R_Y + beta * R_Z). `proof_score`: the verifier's (mean) score of the proof;
    `self_eval_meta`: the meta-verifier's rating of the self evaluation. Either None: a judge
    failed, no reward."""
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must not be negative (got {alpha}, {beta})")
    p = parse_proof(output, reasoning=reasoning, finish_reason=finish_reason)
    if p.status.value != "ok" or p.self_score is None:
        return Reward(0.0, {"format": 0.0}, f"{p.status.value}: {p.cause}")
    for name, value in (("proof score", proof_score), ("self-evaluation rating", self_eval_meta)):
        why = _judged(name, value)
        if why:
            return Reward(None, {"format": 1.0}, why)
    r_y = float(proof_score)  # type: ignore[arg-type]
    r_z = score_reward(p.self_score, r_y) * float(self_eval_meta)  # type: ignore[arg-type]
    return Reward(alpha * r_y + beta * r_z, {"format": 1.0, "proof": r_y, "self_score": p.self_score,
                                             "self_evaluation": r_z})

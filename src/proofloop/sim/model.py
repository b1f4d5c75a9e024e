r"""The simulated DeepSeekMath-V2: a seeded, role-aware stand-in for the 685B model.

Pure: every output is a function of (the request's messages, the model seed, the sample
number) only, so a replayed or resumed run sees the very same texts. Hidden state travels
INSIDE the texts as HTML comments, so a proof verified later (another process, after a resume)
is judged the same way:

- a sim problem carries `<!-- sim:problem id=... d=0.620 -->` (d = difficulty in [0, 1]);
- a generated proof carries `<!-- sim:proof id=... p=... d=... q=0.7340 pad=... -->` in its
  `## Solution` section (q = true quality; the verifier only sees that section);
- an analysis carries `<!-- sim:analysis proof=... by=verifier claims=S3-gap,S5-case pad=... -->`
  (the issues it claims, by key; the proof's real defects are a function of its id and q).
`pad` is the number of tokens the short simulated text stands for beyond its own length, so
prompt token counts look like the real ones (a real proof is thousands of tokens).

The numbers behind each knob are in SimConfig's comments and docs/SIMULATOR.md.

    >>> sim = SimModel(seed=1)
    >>> problem = make_problems(1, seed=3)[0]
    >>> gen = [{"role": "user", "content": "Prove it.\n\n" + problem + "\n\n## Solution ... ## Self Evaluation"}]
    >>> out = sim.respond(gen, n=2, max_tokens=200_000)
    >>> out[0].text.startswith("## Solution") and out[0].finish_reason == "stop"
    True
    >>> 0.0 <= true_quality(out[0].text) <= 1.0
    True
    >>> sim.respond(gen, n=2, max_tokens=200_000) == out   # deterministic
    True
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from statistics import NormalDist
from typing import Any, Literal, NamedTuple, Sequence

from proofloop.extras import require
from proofloop.protocol.stepwise import STEP_FINAL_PHRASE, detect_step_role
from proofloop.protocol.templates import ROLE_MARKERS, detect_role
from proofloop.sim import calibration as _calibration
from proofloop.sim.calibration import Calibration
from proofloop.sim.steps import StepSimConfig, assembled_quality, next_step, step_score

betaincinv = require("scipy.special", "sim", "the proofloop simulator").betaincinv

__all__ = ["SimConfig", "SimModel", "SimOutput", "Defect", "make_problems", "true_quality",
           "true_grade", "grade_of", "problem_difficulty", "proof_defects", "verifier_mean",
           "p_correct", "count_tokens", "markers", "ROLES"]

ROLES = ("generate", "verify", "meta_verify", "refine")
_N01 = NormalDist()


@dataclass(frozen=True)
class SimConfig:
    """Every knob of the simulated model. "guess" marks numbers that no data pins down."""

    # --- true quality -> expert grade (guess: a quality scale whose top quarter is "correct")
    correct_threshold: float = 0.75  # q >= this: expert-correct (grade 1, >= 6/7 points)
    partial_threshold: float = 0.5  # q in [this, correct): grade 0.5 (minor errors); below: 0

    # --- verifier: calibrated on the released dsm2 outputs (calibration.py, FITTED table)
    calibration: Calibration = field(default_factory=Calibration.committed)
    # guess: Gaussian-copula correlation between an incorrect proof's quality (its position in
    # [0, correct_threshold)) and its per-proof verifier mean: near-miss proofs fool the verifier
    # more often than blatant failures. Keeps the calibrated marginal when quality is uniform.
    fool_quality_coupling: float = 0.7
    verifier_real_issue_prob: float = 0.8  # guess: a claimed issue is a real defect (if any exist)
    verifier_max_claims: int = 2  # guess: issues named by one analysis that does not accept
    # false reject (regimes.py): 0 keeps the calibrated correct_mu for every accepted-quality
    # proof; r > 0 gives each such proof (correct, or fooling) its own per-half-point rejection
    # rate eps ~ Exponential(mean r), capped at 0.5, so P(pass all 64) = E[(1 - eps)^128].
    verifier_false_reject: float = 0.0

    # --- meta-verifier (guesses)
    meta_noise: float = 0.1  # probability the rating is replaced by another one
    meta_catch_missed: float = 0.3  # P(rate 0.5) for an accepting analysis of a flawed proof

    # --- generator: logit(q) ~ Normal(intercept - slope * d, sd)  (guess, chosen so that
    # P(correct) per sample is ~0.8 at d = 0.1, ~0.3 at d = 0.5 and ~0.03 at d = 0.9)
    gen_logit_intercept: float = 2.87
    gen_logit_slope: float = 5.1
    gen_logit_sd: float = 1.5
    self_optimism: float = 0.15  # guess: self score reads quality + this (over-optimistic) ...
    self_noise: float = 0.15  # ... + Normal(0, this)
    self_find_prob: float = 0.5  # guess: the self evaluation names each real defect with this prob.

    # --- refinement (guesses): P(improve) = p0 + p_found * found - p_halluc * halluc, where
    # found = share of the base proof's real defects named by the analyses given and halluc =
    # share of hallucinated claims among them; an improvement closes
    # (gain_base + gain_found * found) * Beta(2, 2) of the gap to 1, a regression loses
    # Beta(1.5, 8) of q.
    refine_p0: float = 0.35
    refine_p_found: float = 0.45
    refine_p_halluc: float = 0.15
    refine_gain_base: float = 0.25
    refine_gain_found: float = 0.6
    # regimes.py: the gain is also multiplied by (1 - d) ** this (d = the problem's difficulty,
    # read from the proof's marker): a hard problem's proof is hard to fix. 0: no effect.
    refine_gain_difficulty: float = 0.0

    # --- output lengths in tokens: lognormal(median, sigma). Proof length is fitted on the
    # released proofs (calibration); reasoning and analysis lengths are guesses.
    gen_reasoning_median: float = 6000.0
    gen_reasoning_sigma: float = 0.9  # P(reasoning > 64K) ~ 0.4%: rare long tails
    self_eval_median: float = 500.0
    self_eval_sigma: float = 0.5
    verify_reasoning_median: float = 3000.0
    verify_reasoning_sigma: float = 0.9
    verify_answer_median: float = 700.0
    verify_answer_sigma: float = 0.5
    meta_reasoning_median: float = 1500.0
    meta_reasoning_sigma: float = 0.8
    meta_answer_median: float = 300.0
    meta_answer_sigma: float = 0.5
    chars_per_token: float = 4.0  # matches proofloop.sim.http.approx_tokens

    # how reasoning is returned: a reasoning_content field, inline before </think>, or not at all
    reasoning: Literal["field", "inline", "none"] = "field"

    # --- role detection: substrings of the prompt, checked as protocol.detect_role does
    # (refine, meta_verify, generate, verify; the protocol owns the defaults). A sim proof
    # marker in a prompt that is neither refine nor meta_verify means "verify";
    # `<!-- sim:role=verify -->` overrides everything.
    refine_markers: tuple[str, ...] = ROLE_MARKERS["refine"]
    meta_markers: tuple[str, ...] = ROLE_MARKERS["meta_verify"]
    verify_markers: tuple[str, ...] = ROLE_MARKERS["verify"]
    generate_markers: tuple[str, ...] = ROLE_MARKERS["generate"]
    # --- step-level behaviour (sim/steps.py states its assumptions)
    steps: StepSimConfig = field(default_factory=StepSimConfig)

    @classmethod
    def from_data(cls, data_dir: str | None = None, **overrides: Any) -> "SimConfig":
        """A config whose verifier is fitted now from the dsm2 outputs (committed table if absent)."""
        return cls(calibration=_calibration.load(data_dir), **overrides)

    def with_(self, **changes: Any) -> "SimConfig":
        return replace(self, **changes)


class SimOutput(NamedTuple):
    text: str
    reasoning: str | None
    finish_reason: str  # "stop" or "length"
    completion_tokens: int


@dataclass(frozen=True)
class Defect:
    key: str  # "S3-gap": step 3, kind gap
    step: int
    kind: str
    fatal: bool
    text: str


# ------------------------------------------------------------------------------ hashing


def _digest(*parts: Any) -> bytes:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()


def _rng(*parts: Any) -> random.Random:
    return random.Random(_digest(*parts))


def _u(*parts: Any) -> float:
    """A uniform in (0, 1) from a hash (never exactly 0 or 1)."""
    return (int.from_bytes(_digest(*parts)[:7], "big") + 0.5) / 2 ** 56


def _hex(*parts: Any, n: int = 10) -> str:
    return _digest(*parts).hex()[:n]


def _lognormal(rng: random.Random, median: float, sigma: float) -> int:
    return max(1, int(round(median * math.exp(sigma * rng.gauss(0.0, 1.0)))))


def _fmt(s: float) -> str:
    return "0.5" if s == 0.5 else str(int(s))


# ------------------------------------------------------------------------------ markers

_MARKER = re.compile(r"<!--\s*sim:(\w+)(?:=(\w+))?((?:\s+[\w]+=[^\s>]*)*)\s*-->")
_PAIR = re.compile(r"(\w+)=([^\s>]*)")


def markers(text: str, kind: str | None = None) -> list[dict[str, str]]:
    """Every `<!-- sim:KIND k=v ... -->` in `text`, as dicts with "_kind", "_start", "_end"."""
    return [dict(d) for d in _all_markers(text or "") if kind is None or d["_kind"] == kind]


# A prompt is read several times per sample, all within one synchronous `respond`: a few
# entries suffice, and more would hold thousands of long prompts (a refinement prompt with its
# analyses runs to tens of KB) for the whole run.
@lru_cache(maxsize=64)
def _all_markers(text: str) -> tuple[dict[str, Any], ...]:
    found = []
    for m in _MARKER.finditer(text):
        d: dict[str, Any] = dict(_PAIR.findall(m.group(3) or ""))
        d.update(_kind=m.group(1), _value=m.group(2) or "", _start=m.start(), _end=m.end())
        found.append(d)
    return tuple(found)


def count_tokens(text: str, chars_per_token: float = 4.0) -> int:
    """Simulated token count: characters / chars_per_token plus each marker's `pad`."""
    if not text:
        return 0
    pads = sum(int(m.get("pad", "0") or 0) for m in markers(text))
    return math.ceil(len(text) / chars_per_token) + pads


# ------------------------------------------------------------------------------ ground truth


def grade_of(q: float, config: SimConfig | None = None) -> float:
    """True expert grade (0, 0.5 or 1) of a proof of quality q."""
    c = config or _DEFAULT
    return 1.0 if q >= c.correct_threshold else 0.5 if q >= c.partial_threshold else 0.0


def true_quality(proof_text: str) -> float | None:
    """The hidden true quality of the (first) simulated proof in `proof_text`; None if none."""
    ms = markers(proof_text, "proof")
    return float(ms[0]["q"]) if ms and "q" in ms[0] else None


def true_grade(proof_text_or_quality: str | float, config: SimConfig | None = None) -> float | None:
    """True expert grade of a proof text (or a quality); None for a text without a sim proof."""
    q = proof_text_or_quality if isinstance(proof_text_or_quality, (int, float)) else true_quality(proof_text_or_quality)
    return None if q is None else grade_of(float(q), config)


def problem_difficulty(problem_text: str) -> float | None:
    ms = markers(problem_text, "problem")
    return float(ms[0]["d"]) if ms and "d" in ms[0] else None


def p_correct(d: float, config: SimConfig | None = None) -> float:
    """P(a freshly generated proof is correct) at difficulty d (the generator model)."""
    c = config or _DEFAULT
    thr = math.log(c.correct_threshold / (1 - c.correct_threshold))
    return 1 - _N01.cdf((thr - (c.gen_logit_intercept - c.gen_logit_slope * d)) / c.gen_logit_sd)


_OBJECTS = ("the sequence $a_k$ is strictly increasing", "the map $f$ is injective",
            "$x_i \\le 2^{i}$ for every $i$", "the point $P$ lies on the circle $\\omega$",
            "$\\gcd(m, n) = 1$", "the polynomial $Q$ has no real root", "the sum $S_n$ is even",
            "the triangles $ABX$ and $CDX$ are similar", "the graph $G$ has a vertex of degree at most 3",
            "$g(t) \\ge 0$ on $[0, 1]$", "the invariant $I$ is preserved by each move",
            "the minimum is attained at $x = y$")
_CASES = ("$n = 1$", "$n$ even", "$p = 2$", "a degenerate triangle", "$x < 0$", "the empty set")
# kind -> (fatal, template). Templates use words the issue extractor recognises.
_KINDS = {
    "gap": (True, "Step {s}: the claim that {obj} is unjustified; there is a gap in the argument here."),
    "case": (True, "Step {s}: the case {case} is missing, and the argument does not cover it."),
    "wrong": (True, "Step {s}: the inequality used is incorrect, since {obj} fails for {case}."),
    "circular": (True, "Step {s}: the argument is circular: it assumes that {obj}, which is what must be shown."),
    "cite": (True, "Step {s}: it cites a published result without proof, so the claim that {obj} is unproven."),
    "detail": (False, "Step {s}: a detail is omitted: why {obj} is not explained."),
    "arith": (False, "Step {s}: a computation is incorrect (a sign error), although the conclusion survives."),
    "notation": (False, "Step {s}: the notation is unclear, which is a minor issue: {obj} is used before it is defined."),
}
_FATAL_KINDS = [k for k, (f, _) in _KINDS.items() if f]
_MINOR_KINDS = [k for k, (f, _) in _KINDS.items() if not f]


def _n_steps(pid: str) -> int:
    return 4 + int(_u("steps", pid) * 6)  # 4..9 steps


def _defect(pid: str, step: int, kind: str) -> Defect:
    fatal, template = _KINDS[kind]
    obj = _OBJECTS[int(_u("obj", pid, step) * len(_OBJECTS))]
    case = _CASES[int(_u("case", pid, step) * len(_CASES))]
    return Defect(f"S{step}-{kind}", step, kind, fatal, template.format(s=step, obj=obj, case=case))


def defect_from_key(pid: str, key: str) -> Defect | None:
    m = re.fullmatch(r"S(\d+)-(\w+)", key)
    return _defect(pid, int(m.group(1)), m.group(2)) if m and m.group(2) in _KINDS else None


def proof_defects(pid: str, q: float, config: SimConfig | None = None) -> list[Defect]:
    """The real defects of proof `pid` with quality q: none for a correct proof, 1-2 minor ones
    for a partial proof, 1-2 fatal (+ maybe a minor) for an incorrect one."""
    return list(_proof_defects(pid, round(q, 4), config or _DEFAULT))


@lru_cache(maxsize=100_000)
def _proof_defects(pid: str, q: float, c: SimConfig) -> tuple[Defect, ...]:
    grade = grade_of(q, c)
    rng = _rng("defects", pid, f"{q:.4f}")
    if grade == 1.0:
        n_fatal, n_minor = 0, 0
    elif grade == 0.5:
        n_fatal, n_minor = 0, 1 + (rng.random() < 0.4)
    else:
        n_fatal = 1 + (rng.random() < (c.partial_threshold - q) / c.partial_threshold)
        n_minor = int(rng.random() < 0.5)
    steps = list(range(1, _n_steps(pid) + 1))
    rng.shuffle(steps)
    kinds = [rng.choice(_FATAL_KINDS) for _ in range(n_fatal)] + [rng.choice(_MINOR_KINDS) for _ in range(n_minor)]
    return tuple(sorted((_defect(pid, s, k) for s, k in zip(steps, kinds)), key=lambda d: d.step))


def _hallucinated(pid: str, real: Sequence[Defect], rng: random.Random) -> Defect:
    """An issue the proof does not have (a step/kind pair outside its real defects)."""
    taken = {d.key for d in real}
    for _ in range(50):
        d = _defect(pid, rng.randint(1, _n_steps(pid)), rng.choice(list(_KINDS)))
        if d.key not in taken:
            return d
    return _defect(pid, _n_steps(pid) + 1, "gap")  # a step that does not exist: surely false


def accepting_mu(pid: str, config: SimConfig) -> float:
    """Per-sample mean score of a proof the verifier believes correct (false reject: regimes.py)."""
    r = config.verifier_false_reject
    if r <= 0:
        return config.calibration.correct_mu
    return 1.0 - min(0.5, -r * math.log(_u("verifier-reject", pid)))


@lru_cache(maxsize=200_000)
def _verifier_mean(pid: str, q: float, config: SimConfig) -> float:
    c, cal = config, config.calibration
    if q >= c.correct_threshold:
        return accepting_mu(pid, c)
    r = min(max(q / c.correct_threshold, 1e-6), 1 - 1e-6)
    rho = c.fool_quality_coupling
    z = rho * _N01.inv_cdf(r) + math.sqrt(1 - rho * rho) * _N01.inv_cdf(_u("verifier-bias", pid))
    u = _N01.cdf(z)
    if u > 1 - cal.fool_prob:
        return accepting_mu(pid, c)  # this proof fools the verifier consistently
    return float(betaincinv(cal.beta_a, cal.beta_b, u / (1 - cal.fool_prob)))


def verifier_mean(pid: str, q: float, config: SimConfig | None = None) -> float:
    """Per-proof mean verifier score (the per-proof bias): calibrated, see calibration.py."""
    return _verifier_mean(pid, round(q, 4), config or _DEFAULT)


# ------------------------------------------------------------------------------ problems

_BANDS = {"easy": (0.0, 0.35), "medium": (0.35, 0.65), "hard": (0.65, 1.0)}
MIXES = {  # named mixes of difficulty bands (guesses shaped like the benchmarks' spread)
    "default": {"easy": 0.4, "medium": 0.3, "hard": 0.3},
    "basic": {"easy": 0.7, "medium": 0.3},  # IMO-ProofBench Basic-like
    "advanced": {"easy": 0.1, "medium": 0.4, "hard": 0.5},  # Advanced / IMO-like
    "hard": {"hard": 1.0},
}


def make_problems(count: int, seed: int = 0, mix: dict[str, float] | str | None = None,
                  beta: tuple[float, float] | None = None) -> list[str]:
    """`count` simulated problem statements of mixed difficulty, each with a hidden tag.

    `mix` maps band names (easy, medium, hard) to weights, or names one of MIXES; `beta`
    = (a, b) instead draws each difficulty from Beta(a, b) (the regimes, regimes.py)."""
    weights = MIXES[mix] if isinstance(mix, str) else (mix or MIXES["default"])
    bad = set(weights) - set(_BANDS)
    if bad:
        raise ValueError(f"unknown difficulty bands {sorted(bad)}; use {sorted(_BANDS)}")
    total = sum(weights.values())
    names = list(weights)
    problems = []
    for i in range(count):
        rng = _rng("problem", seed, i)
        x, acc, band = rng.random() * total, 0.0, names[-1]
        for name in names:
            acc += weights[name]
            if x < acc:
                band = name
                break
        lo, hi = _BANDS[band]
        d = lo + (hi - lo) * rng.random()
        if beta is not None:
            d = rng.betavariate(*beta)
            band = next(name for name, (lo, hi) in _BANDS.items() if d < hi or name == "hard")
        obj = _OBJECTS[rng.randrange(len(_OBJECTS))]
        problems.append(f"<!-- sim:problem id=s{seed}-{i:04d} d={d:.3f} -->\n"
                        f"Problem s{seed}-{i:04d} ({band}). Let $n \\ge 2$ be an integer and suppose "
                        f"that {obj}. Prove that {_OBJECTS[(rng.randrange(len(_OBJECTS)))]}.")
    return problems


# ------------------------------------------------------------------------------ the model


def _content(message: dict[str, Any]) -> str:
    c = message.get("content", "")
    if isinstance(c, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return "" if c is None else str(c)


class SimModel:
    """The simulated model. `respond` answers one request with n samples."""

    def __init__(self, config: SimConfig | None = None, seed: int = 0):
        self.config = config or SimConfig()
        self.seed = seed

    # ---- prompt side

    @staticmethod
    def prompt_text(messages: Sequence[dict[str, Any]]) -> str:
        return "".join(f"<|{m.get('role', 'user')}|>{_content(m)}\n" for m in messages)

    def prompt_tokens(self, messages: Sequence[dict[str, Any]]) -> int:
        return count_tokens(self.prompt_text(messages), self.config.chars_per_token)

    def prompt_blocks(self, messages: Sequence[dict[str, Any]], block_chars: int = 256) -> list[tuple[bytes, int]]:
        """The prompt as prefix-cache blocks: (chained hash, tokens) per block of text.

        Block i's hash covers the whole prefix up to its end, so equal hashes mean equal
        prefixes; a marker's pad counts in the block where the marker starts."""
        text = self.prompt_text(messages)
        pads: dict[int, int] = {}
        for m in markers(text):
            pads[m["_start"] // block_chars] = pads.get(m["_start"] // block_chars, 0) + int(m.get("pad", "0") or 0)
        blocks, h = [], hashlib.sha256()
        for i in range(0, len(text), block_chars):
            chunk = text[i:i + block_chars]
            h.update(chunk.encode())
            blocks.append((h.copy().digest(), math.ceil(len(chunk) / self.config.chars_per_token)
                           + pads.get(i // block_chars, 0)))
        return blocks

    def role_of(self, messages: Sequence[dict[str, Any]]) -> str:
        text = self.prompt_text(messages)
        c = self.config
        forced = [m["_value"] for m in markers(text, "role") if m["_value"] in ROLES]
        if forced:
            return forced[-1]
        step_role = detect_step_role(messages)  # a step prompt quotes proof text: checked first
        if step_role:
            return step_role
        role = detect_role(messages, {"refine": c.refine_markers, "meta_verify": c.meta_markers,
                                      "generate": c.generate_markers, "verify": c.verify_markers})
        if role in ("refine", "meta_verify"):
            return role
        if markers(text, "proof"):
            return "verify"
        return role or "generate"

    def request_key(self, messages: Sequence[dict[str, Any]]) -> str:
        return _hex("request", self.seed, self.prompt_text(messages), n=24)

    # ---- answers

    def respond(self, messages: Sequence[dict[str, Any]], n: int = 1, max_tokens: int | None = None,
                first_sample: int = 0) -> list[SimOutput]:
        """n samples, numbered first_sample .. first_sample + n - 1. Sample k is the same whether
        asked alone or in a group, and whatever max_tokens is (which only cuts it)."""
        text = self.prompt_text(messages)
        role = self.role_of(messages)
        key = self.request_key(messages)
        return [self._one(role, text, f"{key}:{first_sample + i}", max_tokens) for i in range(n)]

    def _one(self, role: str, prompt: str, key: str, max_tokens: int | None) -> SimOutput:
        c = self.config
        rng = _rng("sample", key)
        if role in ("generate", "refine"):
            answer, reasoning_tokens = self._generate(role, prompt, key, rng)
        elif role == "verify":
            answer, reasoning_tokens = self._verify(prompt, rng)
        elif role in ("step_verify", "continue_step"):
            answer, reasoning_tokens = self._step(role, prompt, key, rng)
        else:
            answer, reasoning_tokens = self._meta_verify(prompt, rng)
        answer_tokens = count_tokens(answer, c.chars_per_token)
        total = reasoning_tokens + answer_tokens
        thinking = f"[sim] {role} reasoning: {reasoning_tokens} tokens elided."
        finish = "stop"
        if max_tokens is not None and total > max_tokens:
            finish, total = "length", max(0, max_tokens)
            if max_tokens <= reasoning_tokens:  # cut off while still thinking: no answer at all
                answer, thinking = "", thinking + " (cut off)"
            else:
                keep = (max_tokens - reasoning_tokens) / answer_tokens
                answer = answer[:min(len(answer) - 1, int(len(answer) * keep))]
        if c.reasoning == "none":
            return SimOutput(answer, None, finish, total)
        if c.reasoning == "inline":
            closed = answer or finish == "stop"
            return SimOutput(f"<think>\n{thinking}\n" + (f"</think>\n\n{answer}" if closed else ""),
                             None, finish, total)
        return SimOutput(answer, thinking, finish, total)

    # ---- generator and refinement

    def _generate(self, role: str, prompt: str, key: str, rng: random.Random) -> tuple[str, int]:
        c = self.config
        problems = markers(prompt, "problem")
        if problems:
            prob_id, d = problems[0].get("id", "x"), float(problems[0].get("d", 0.5))
        else:  # a problem of our own users: difficulty from its text
            prob_id, d = "x" + _hex("problem", prompt, n=8), 0.2 + 0.6 * _u("difficulty", prompt)
        q = None
        if role == "refine":
            q = self._refined_quality(prompt, rng)
        if q is None:
            z = rng.gauss(c.gen_logit_intercept - c.gen_logit_slope * d, c.gen_logit_sd)
            q = 1 / (1 + math.exp(-z))
        q = min(max(q, 0.0), 1.0)
        pid = _hex("proof", key)
        real = proof_defects(pid, round(q, 4), c)
        steps = _n_steps(pid)
        body = [f"We prove the statement of problem {prob_id} in {steps} steps."]
        for s in range(1, steps):
            body.append(f"**Step {s}.** We show that {_OBJECTS[int(_u('obj', pid, s) * len(_OBJECTS))]}.")
        body.append(f"**Step {steps}.** Combining the previous steps, the claim follows. $\\blacksquare$")
        body_text = "\n\n".join(body)
        proof_tokens = _lognormal(rng, c.calibration.proof_tokens_median, c.calibration.proof_tokens_sigma)
        pad = max(0, proof_tokens - math.ceil(len(body_text) / c.chars_per_token))
        marker = f"<!-- sim:proof id={pid} p={prob_id} d={d:.3f} q={q:.4f} pad={pad} -->"

        # self evaluation: correlated with quality but over-optimistic
        perceived = q + c.self_optimism + rng.gauss(0.0, c.self_noise)
        self_score = grade_of(perceived, c)
        claims: list[Defect] = []
        if self_score < 1:
            claims = [d_ for d_ in real if rng.random() < c.self_find_prob] or [_hallucinated(pid, real, rng)]
        eval_body = self._analysis_body(claims, accept=self_score == 1, own=True)
        eval_tokens = _lognormal(rng, c.self_eval_median, c.self_eval_sigma)
        eval_pad = max(0, eval_tokens - math.ceil(len(eval_body) / c.chars_per_token))
        eval_marker = (f"<!-- sim:analysis proof={pid} by=self score={_fmt(self_score)} "
                       f"claims={','.join(d_.key for d_ in claims)} pad={eval_pad} -->")
        text = (f"## Solution\n\n{marker}\n{body_text}\n\n## Self Evaluation\n\n"
                f"Here is my evaluation of the solution: {eval_marker}\n{eval_body}\n\n"
                f"Based on my evaluation, the final overall score should be: \\boxed{{{_fmt(self_score)}}}")
        reasoning_tokens = _lognormal(rng, c.gen_reasoning_median, c.gen_reasoning_sigma)
        return text, reasoning_tokens

    def _refined_quality(self, prompt: str, rng: random.Random) -> float | None:
        """New quality from the candidates and their analyses (None: no sim candidate found)."""
        c = self.config
        found_proofs = {m["id"]: m for m in markers(prompt, "proof") if "id" in m and "q" in m}
        cands = {pid: float(m["q"]) for pid, m in found_proofs.items()}
        if not cands:
            return None
        base = max(cands, key=cands.get)  # the model builds on the best candidate
        q = cands[base]
        drag = (1 - float(found_proofs[base].get("d", 0) or 0)) ** c.refine_gain_difficulty
        real = {d.key for d in proof_defects(base, round(q, 4), c)}
        claimed = [k for m in markers(prompt, "analysis") if m.get("proof") == base
                   for k in (m.get("claims") or "").split(",") if k]
        found = len(real & set(claimed)) / len(real) if real else 0.0
        halluc = sum(k not in real for k in claimed) / len(claimed) if claimed else 0.0
        p_up = min(0.95, max(0.05, c.refine_p0 + c.refine_p_found * found - c.refine_p_halluc * halluc))
        if rng.random() < p_up:
            gain = min(1.0, c.refine_gain_base + c.refine_gain_found * found) * rng.betavariate(2, 2) * drag
            return q + (1 - q) * gain
        return q - q * rng.betavariate(1.5, 8)

    @staticmethod
    def _analysis_body(claims: Sequence[Defect], accept: bool, own: bool = False) -> str:
        if accept or not claims:
            who = "my proof" if own else "the proof"
            return (f"I checked the key steps of {who} one by one. Every step I checked is correct and "
                    f"justified, and I found no errors or gaps.")
        lines = ["I checked the key steps; the following problems remain:"]
        lines += [f"- {d.text}" for d in claims]
        return "\n".join(lines)

    # ---- verifier

    def _verify(self, prompt: str, rng: random.Random) -> tuple[str, int]:
        c = self.config
        proofs = markers(prompt, "proof")
        assembled = assembled_quality(prompt)
        if proofs and "id" in proofs[0] and "q" in proofs[0]:
            pid, q = proofs[0]["id"], float(proofs[0]["q"])
        elif assembled is not None:  # a proof written step by step (sim/steps.py)
            pid, q = assembled
        else:  # a proof that is not ours: quality from its text
            pid, q = "x" + _hex("foreign-proof", prompt), _u("foreign-quality", prompt)
        real = proof_defects(pid, round(q, 4), c)
        mu = verifier_mean(pid, q, c)
        score = ((rng.random() < mu) + (rng.random() < mu)) / 2
        claims: list[Defect] = []
        if score < 1:
            fatal = [d for d in real if d.fatal]
            pool = (fatal if score == 0 and fatal else real)
            for _ in range(1 + (rng.random() < 0.5 and c.verifier_max_claims > 1)):
                if pool and rng.random() < c.verifier_real_issue_prob:
                    d = rng.choice(pool)
                else:
                    d = _hallucinated(pid, real, rng)
                if d.key not in {x.key for x in claims}:
                    claims.append(d)
        body = self._analysis_body(claims, accept=score == 1)
        tokens = _lognormal(rng, c.verify_answer_median, c.verify_answer_sigma)
        pad = max(0, tokens - math.ceil(len(body) / c.chars_per_token))
        marker = (f"<!-- sim:analysis proof={pid} by=verifier score={_fmt(score)} "
                  f"claims={','.join(d.key for d in claims)} pad={pad} -->")
        text = (f"Here is my evaluation of the solution: {marker}\n{body}\n\n"
                f"Based on my evaluation, the final overall score should be: \\boxed{{{_fmt(score)}}}")
        return text, _lognormal(rng, c.verify_reasoning_median, c.verify_reasoning_sigma)

    # ---- step roles

    def _step(self, role: str, prompt: str, key: str, rng: random.Random) -> tuple[str, int]:
        """A next step (continue_step) or one step-verifier judgement (step_verify)."""
        c = self.config
        if role == "continue_step":
            problems = markers(prompt, "problem")
            d = float(problems[0].get("d", 0.5)) if problems else 0.2 + 0.6 * _u("difficulty", prompt.split("## Proof So Far")[0])
            text, _ = next_step(prompt, key, c.steps, p_correct(d, c))
            return text, _lognormal(rng, c.steps.reasoning_tokens, c.gen_reasoning_sigma)
        score = step_score(prompt, rng, c.steps)
        if score is None:  # a step that is not ours: a verdict from its text
            score = (0.0, 0.5, 1.0)[int(_u("foreign-step", prompt, key) * 3)]
        body = "The step's claim follows from the earlier steps." if score == 1 else \
            "The step's claim is not justified by the earlier steps: there is a gap here."
        text = (f"Here is my evaluation of the step: <!-- sim:stepcheck id={_hex('stepcheck', key)} -->\n{body}\n\n"
                f"{STEP_FINAL_PHRASE} \\boxed{{{_fmt(score)}}}")
        return text, _lognormal(rng, c.verify_reasoning_median / 4, c.verify_reasoning_sigma)

    # ---- meta-verifier

    def _meta_verify(self, prompt: str, rng: random.Random) -> tuple[str, int]:
        c = self.config
        proofs = [m for m in markers(prompt, "proof") if "id" in m and "q" in m]
        analyses = [m for m in markers(prompt, "analysis") if m.get("by") != "self"] or markers(prompt, "analysis")
        if proofs:
            pid, q = proofs[0]["id"], float(proofs[0]["q"])
        else:
            pid, q = "x" + _hex("foreign-proof", prompt), _u("foreign-quality", prompt)
        grade = grade_of(q, c)
        real = {d.key for d in proof_defects(pid, round(q, 4), c)}
        mine = [a for a in analyses if a.get("proof") == pid] or analyses
        if mine:
            a = mine[-1]
            claims = [k for k in (a.get("claims") or "").split(",") if k]
            try:
                a_score = float(a.get("score", "nan"))
            except ValueError:
                a_score = float("nan")
            false = [k for k in claims if k not in real]
            if not claims:
                rating = 0.5 if (grade < 1 and a_score == 1 and rng.random() < c.meta_catch_missed) else 1.0
                finding = "the evaluation claims no defect"
            elif len(false) == len(claims):
                rating, finding = 0.0, "every defect the evaluation claims is unreasonable"
            elif false:
                rating, finding = 0.5, "some of the claimed defects are unreasonable"
            else:
                rating, finding = 1.0, "every claimed defect is real"
        else:  # an analysis that is not ours: judge its score against the true grade
            scores = re.findall(r"final overall score should be:\s*\\boxed\{([^}]*)\}", prompt)
            try:
                a_score = float(scores[-1]) if scores else float("nan")
            except ValueError:
                a_score = float("nan")
            rating = 1.0 if a_score == grade else 0.0 if a_score < grade else 0.5
            finding = "the evaluation's score " + ("matches" if rating == 1 else "does not match") + " the proof"
        if rng.random() < c.meta_noise:
            rating = rng.choice([r for r in (0.0, 0.5, 1.0) if r != rating])
        body = (f"<!-- sim:meta proof={pid} -->\nStep restatement: the quoted steps appear in the proof. "
                f"Defect analysis: {finding}. Expression analysis: the statements are clear. "
                f"Score analysis: checked against the findings.")
        tokens = _lognormal(rng, c.meta_answer_median, c.meta_answer_sigma)
        pad = max(0, tokens - math.ceil(len(body) / c.chars_per_token))
        body = body.replace("<!-- sim:meta", f"<!-- sim:meta pad={pad}", 1)
        text = (f'Here is my analysis of the "solution evaluation": {body}\n\n'
                f'Based on my analysis, I will rate the "solution evaluation" as: \\boxed{{{_fmt(rating)}}}')
        return text, _lognormal(rng, c.meta_reasoning_median, c.meta_reasoning_sigma)


_DEFAULT = SimConfig()

"""The paper's rewards, recomputed from their formulas on every score combination, on format
failures, on failed judges, on hand-set alpha/beta, with property tests, and on the released
DeepSeekMath-V2 proofs (../shared/data/dsm2)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofloop.train.rewards import (ALPHA, BETA, Reward, generator_reward, meta_verifier_reward, score_reward,
                                     verifier_reward)
from support.outputs import analysis, box, rating

SCORES = (0.0, 0.5, 1.0)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsm2" / "outputs"


def generator_output(self_score: float) -> str:
    return ("## Solution\n\nLet $n = 2k$. Then $n^2 = 4k^2$ is even.\n\n## Self Evaluation\n\n"
            "Here is my evaluation of the solution: every step is justified.\n\n"
            f"Based on my evaluation, the final overall score should be: \\boxed{{{box(self_score)}}}")


# ---- R_score and the verifier / meta-verifier form -------------------------------------------


@pytest.mark.parametrize("predicted,target", list(itertools.product(SCORES, SCORES)))
def test_score_reward_is_one_minus_the_distance(predicted, target):
    assert score_reward(predicted, target) == 1.0 - abs(predicted - target)


@pytest.mark.parametrize("bad", [(-0.1, 0.5), (0.5, 1.5)])
def test_score_reward_refuses_scores_outside_the_unit_interval(bad):
    with pytest.raises(ValueError):
        score_reward(*bad)


@pytest.mark.parametrize("reward,text", [(verifier_reward, analysis), (meta_verifier_reward, rating)])
@pytest.mark.parametrize("predicted,target,meta", list(itertools.product(SCORES, SCORES, (None, *SCORES))))
def test_verifier_and_meta_verifier_rewards_on_every_combination(reward, text, predicted, target, meta):
    r = reward(text(predicted), target, meta=meta)
    expected = (1.0 - abs(predicted - target)) * (1.0 if meta is None else meta)
    assert r.total == pytest.approx(expected) and r.reason is None
    assert r.components == {"format": 1.0, "score": 1.0 - abs(predicted - target),
                            **({} if meta is None else {"meta": meta})}


@pytest.mark.parametrize("output,finish,status", [
    ("Here is my evaluation of the solution: fine.", None, "no_final_phrase"),
    ("Here is my evaluation of the solution: fine.\n\nBased on my evaluation, the final overall score should be: 1",
     None, "no_boxed_score"),
    ("Here is my evaluation of the solution: fine.\n\nBased on my evaluation, the final overall score should be: "
     "\\boxed{0.7}", None, "invalid_score"),
    (analysis(1.0), "length", "truncated"),
    ("", None, "empty"),
])
def test_a_broken_verifier_output_scores_zero_with_its_reason(output, finish, status):
    r = verifier_reward(output, 1.0, meta=1.0, finish_reason=finish)
    assert (r.total, r.components) == (0.0, {"format": 0.0})
    assert r.reason.startswith(status + ":")


def test_a_meta_rating_in_verifier_words_is_a_format_failure():
    assert meta_verifier_reward(analysis(1.0), 1.0).total == 0.0  # the meta-verifier has its own phrases


@pytest.mark.parametrize("reward,text", [(verifier_reward, analysis), (meta_verifier_reward, rating)])
def test_a_failed_meta_judge_gives_no_reward_not_zero(reward, text):
    r = reward(text(0.0), 0.0, meta=None, needs_meta=True)
    assert r.total is None and "failed" in r.reason
    assert r.components == {"format": 1.0, "score": 1.0}  # what was known is still shown


@pytest.mark.parametrize("target", [0.25, 0.75, -1.0, 2.0])
def test_targets_are_the_rubric_scores(target):
    with pytest.raises(ValueError):
        verifier_reward(analysis(1.0), target)


def test_a_meta_rating_outside_the_unit_interval_is_a_bug_not_a_reward():
    with pytest.raises(ValueError):
        verifier_reward(analysis(1.0), 1.0, meta=1.5)


# ---- the generator ---------------------------------------------------------------------------


@pytest.mark.parametrize("self_score,proof_score,meta", list(itertools.product(SCORES, (0.0, 0.25, 0.5, 0.75, 1.0), SCORES)))
def test_generator_reward_on_every_combination(self_score, proof_score, meta):
    r = generator_reward(generator_output(self_score), proof_score, meta)
    r_z = (1.0 - abs(self_score - proof_score)) * meta
    assert r.total == pytest.approx(ALPHA * proof_score + BETA * r_z)
    assert r.components == {"format": 1.0, "proof": proof_score, "self_score": self_score,
                            "self_evaluation": pytest.approx(r_z)}


def test_generator_weights_are_the_papers_and_can_be_set():
    assert (ALPHA, BETA) == (0.76, 0.24)
    out = generator_output(1.0)
    assert generator_reward(out, 0.5, 1.0, alpha=1.0, beta=0.0).total == 0.5
    assert generator_reward(out, 0.5, 1.0, alpha=0.0, beta=1.0).total == 0.5  # 1 - |1 - 0.5|
    with pytest.raises(ValueError):
        generator_reward(out, 0.5, 1.0, alpha=-0.1)


@pytest.mark.parametrize("output,status", [
    ("Let $n = 2k$; then $n^2$ is even.", "no_solution"),
    ("## Solution\n\nLet $n = 2k$; then $n^2$ is even.", "no_self_evaluation"),
    ("## Solution\n\nx\n\n## Self Evaluation\n\nHere is my evaluation of the solution: fine.", "no_final_phrase"),
])
def test_a_generator_output_without_its_contract_scores_zero(output, status):
    r = generator_reward(output, 1.0, 1.0)
    assert (r.total, r.components) == (0.0, {"format": 0.0}) and r.reason.startswith(status)


@pytest.mark.parametrize("proof_score,meta", [(None, 1.0), (1.0, None), (None, None)])
def test_a_failed_judge_gives_the_generator_no_reward(proof_score, meta):
    r = generator_reward(generator_output(1.0), proof_score, meta)
    assert r.total is None and r.components == {"format": 1.0} and "failed" in r.reason


# ---- properties ------------------------------------------------------------------------------

unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
score = st.sampled_from(SCORES)


@given(self_score=score, proof_score=unit, meta=unit)
def test_generator_reward_stays_in_the_unit_interval_and_honesty_pays(self_score, proof_score, meta):
    r = generator_reward(generator_output(self_score), proof_score, meta)
    assert 0.0 <= r.total <= ALPHA + BETA + 1e-12
    # for a given proof score, the most honest self score earns at least as much as any other
    honest = min(SCORES, key=lambda s: abs(s - proof_score))
    assert generator_reward(generator_output(honest), proof_score, meta).total >= r.total - 1e-12


@given(predicted=score, target=score, meta=unit)
def test_meta_rating_scales_the_verifier_reward(predicted, target, meta):
    with_meta = verifier_reward(analysis(predicted), target, meta=meta)
    plain = verifier_reward(analysis(predicted), target)
    assert with_meta.total == pytest.approx(plain.total * meta)
    assert isinstance(with_meta, Reward) and 0.0 <= with_meta.total <= 1.0


# ---- real outputs ----------------------------------------------------------------------------


def _released_proofs() -> list[str]:
    if not DATA.is_dir():
        pytest.skip(f"DeepSeekMath-V2 outputs not found at {DATA}")
    proofs = []
    for path in sorted(DATA.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            proof = (row.get("model_prediction") or {}).get("proof") if isinstance(row.get("model_prediction"), dict) \
                else row.get("proof")
            if isinstance(proof, str) and proof.strip():
                proofs.append(proof)
    return proofs


def test_released_final_proofs_carry_no_self_evaluation_so_earn_no_generator_format():
    """The released outputs are bare final proofs (the self evaluation was stripped), so as
    generator outputs they break the contract: a format reward of 0 with the reason, never a
    crash and never a score."""
    proofs = _released_proofs()
    assert len(proofs) == 84
    rewards = [generator_reward(p, 1.0, 1.0) for p in proofs]
    assert all(r.total == 0.0 and r.components == {"format": 0.0} for r in rewards)
    assert {r.reason.split(":")[0] for r in rewards} <= {"no_solution", "no_self_evaluation"}

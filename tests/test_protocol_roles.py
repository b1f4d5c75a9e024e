"""User-supplied proofs (user_proof), role detection (detect_role) and what our wording promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofloop.protocol import (EVAL_START, FINAL_SCORE_PHRASE, ROLE_MARKERS, ParseStatus, Templates, detect_role,
                                generation_messages, meta_verification_messages, parse_proof,
                                proof_for_verification, refinement_messages, user_proof,
                                verification_messages)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dsm2" / "outputs"
SELF_EVAL = f"## Self Evaluation\n\n{EVAL_START} fine.\n\n{FINAL_SCORE_PHRASE} \\boxed{{0.5}}"

# ---------------------------------------------------------------- user_proof


@pytest.mark.parametrize("text, status, solution, self_score", [
    ("Let $n$ be even. Then $n = 2k$.", ParseStatus.OK, "Let $n$ be even. Then $n = 2k$.", None),
    ("  \n\nFirst line.\n\nSecond line.\n", ParseStatus.OK, "First line.\n\nSecond line.", None),
    ("We use \\boxed{3} as the answer.\nHence 3.", ParseStatus.OK, "We use \\boxed{3} as the answer.\nHence 3.", None),
    ("## Solution\n\nBody.", ParseStatus.OK, "Body.", None),
    ("**Solution.**\nBody.", ParseStatus.OK, "Body.", None),
    ("<think>plan</think>\nBody.", ParseStatus.OK, "Body.", None),
    (f"## Solution\nBody.\n\n{SELF_EVAL}", ParseStatus.OK, "Body.", 0.5),
    (f"Body without header.\n\n{SELF_EVAL}", ParseStatus.OK, "Body without header.", 0.5),
    ("Body.\n## Self Evaluation\nI think it is right.", ParseStatus.NO_FINAL_PHRASE, "Body.", None),
    ("## Solution\n\n## Self Evaluation\nx", ParseStatus.NO_SOLUTION, None, None),
    ("", ParseStatus.EMPTY, None, None),
    ("  \n ", ParseStatus.EMPTY, None, None),
    ("<think>only reasoning</think>", ParseStatus.EMPTY, None, None),
])
def test_user_proof(text, status, solution, self_score):
    p = user_proof(text)
    assert (p.status, p.solution, p.self_score) == (status, solution, self_score)
    assert (p.cause is None) == (status is ParseStatus.OK)


def test_user_proof_differs_from_the_generator_contract():
    text = "Let $x > 0$. By AM-GM, $x + 1/x \\ge 2$."
    assert parse_proof(text).status is ParseStatus.NO_SOLUTION  # a generator must use the header
    assert user_proof(text).status is ParseStatus.OK  # a person need not


def test_user_proof_of_real_bare_proofs():
    if not DATA.is_dir():
        pytest.skip(f"DeepSeekMath-V2 outputs not found at {DATA}")
    proofs = [json.loads(line)["model_prediction"]["proof"]
              for f in sorted(DATA.glob("*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()
              if line.strip()]
    assert len(proofs) == 84
    for proof in proofs:
        p = user_proof(proof)
        assert p.status is ParseStatus.OK and p.solution == proof_for_verification(proof) and p.solution


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("ab #*\n<>/:Solutin") + ["## Solution", "## Self Evaluation", "</think>",
                                                              "<think>", "\n## Solution\n", SELF_EVAL]),
                max_size=25).map("".join))
def test_user_proof_shows_what_the_verifier_sees(text):
    p = user_proof(text)
    assert p.solution == (proof_for_verification(text) or None)
    if p.status is ParseStatus.OK:
        assert p.solution
    assert p.status in (ParseStatus.OK, ParseStatus.EMPTY, ParseStatus.NO_SOLUTION) or p.self_evaluation is not None


# ---------------------------------------------------------------- detect_role

PROBLEM, PROOF, ANALYSIS = "Show that $1 < 2$.", "Since $2 - 1 = 1 > 0$.", "Step 1 is fine."


def default_prompts() -> dict[str, list]:
    return {"generate": generation_messages(PROBLEM), "verify": verification_messages(PROBLEM, PROOF),
            "meta_verify": meta_verification_messages(PROBLEM, PROOF, ANALYSIS),
            "refine": refinement_messages(PROBLEM, [(PROOF, [ANALYSIS])])}


def test_detect_role_on_our_prompts():
    for role, msgs in default_prompts().items():
        assert detect_role(msgs) == role


def test_detect_role_reads_content_parts_and_custom_markers():
    parts = [{"role": "user", "content": [{"type": "text", "text": "## Solution"}, {"type": "text", "text": "x"}]}]
    assert detect_role(parts) == "verify"
    assert detect_role([{"role": "system", "content": None}, {"role": "user", "content": "hello"}]) is None
    assert detect_role([{"role": "user", "content": "Improve these"}], {"refine": ("Improve",)}) == "refine"
    assert list(ROLE_MARKERS) == ["refine", "meta_verify", "generate", "verify"]  # the order decides


def test_a_proof_cannot_change_the_role_of_a_verification():
    # the verifier is shown the solution section only, so the self evaluation header is gone
    output = f"## Solution\n\n{PROOF}\n\n{SELF_EVAL}"
    assert detect_role(verification_messages(PROBLEM, proof_for_verification(output))) == "verify"


# ---------------------------------------------------------------- what the wording promises


def test_the_verifier_is_shown_the_solution():
    t = Templates.default()
    assert "## Solution\n\n{{proof}}" in t.verify and "## Solution\n\n{{proof}}" in t.meta_verify
    assert "Proof to grade" not in t.verify and "## Self Evaluation" not in t.verify
    text = verification_messages(PROBLEM, PROOF)[0]["content"]
    assert text.rstrip().endswith(f"## Solution\n\n{PROOF}")


@pytest.mark.parametrize("role, states_answer", [
    ("generate", "state your final answer explicitly and then prove that it is correct"),
    ("verify", "the solution must state that answer and must also prove rigorously that it is correct"),
    ("meta_verify", "the solution must state it and prove it"),
])
def test_answers_must_be_stated_and_proven(role, states_answer):
    text = " ".join(getattr(Templates.default(), role).split())
    assert states_answer in text
    assert "a correct answer without a valid proof, or a proof" in text and "can never score 1" in text
    if role != "meta_verify":
        assert all(w in text for w in ('"determine"', '"find all"', '"compute"'))


@pytest.mark.parametrize("role", ["generate", "verify", "meta_verify"])
def test_citing_a_paper_never_replaces_a_proof(role):
    text = " ".join(getattr(Templates.default(), role).split())
    assert "from a paper" in text and "never" in text
    if role != "meta_verify":
        assert '"well known"' in text  # named as no justification, not as an escape


def test_meta_verifier_scope_rules():
    text = " ".join(Templates.default().meta_verify.split())
    assert "outside your scope" in text and "even when that praise is mistaken" in text
    assert "finds no error or defect at all counts as reasonable" in text
    assert '"not rigorously shown"' in text
    for check in ("Step restatement", "Defect analysis, the most important check", "Expression analysis",
                  "Score analysis"):
        assert check in text

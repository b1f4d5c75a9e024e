"""The step-level protocol: step verifier and next-step parsing (tables and hypothesis), the
two templates, and role detection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofloop.errors import UserInputError
from proofloop.protocol import detect_role, generation_messages, verification_messages
from proofloop.protocol.stepwise import (COMPLETE_LINE, NEXT_STEP_HEADER, NO_STEPS,
                                         STEP_EVAL_START, STEP_FINAL_PHRASE, StepTemplates, continuation_messages,
                                         detect_step_role, evidence_section, parse_next_step,
                                         parse_step_verification, step_verification_messages)
from proofloop.protocol.types import ParseStatus


def verdict(score: str, body: str = "The step holds.") -> str:
    return f"{STEP_EVAL_START} {body}\n\n{STEP_FINAL_PHRASE} \\boxed{{{score}}}"


@pytest.mark.parametrize("text, status, score", [
    (verdict("1"), ParseStatus.OK, 1.0),
    (verdict("0.5"), ParseStatus.OK, 0.5),
    (verdict("\\frac{1}{2}"), ParseStatus.OK, 0.5),
    (verdict("0"), ParseStatus.OK, 0.0),
    (verdict("0.7"), ParseStatus.INVALID_SCORE, None),
    (verdict("x"), ParseStatus.INVALID_SCORE, None),
    (f"{STEP_EVAL_START} fine.", ParseStatus.NO_FINAL_PHRASE, None),
    (f"{STEP_FINAL_PHRASE} nothing boxed", ParseStatus.NO_BOXED_SCORE, None),
    ("", ParseStatus.EMPTY, None),
    ("<think>only thinking", ParseStatus.EMPTY, None),
    # the whole-proof phrase is not the step phrase: never read as a step score
    ("Based on my evaluation, the final overall score should be: \\boxed{1}", ParseStatus.NO_FINAL_PHRASE, None),
    # a quoted verdict earlier, the model's own at the end
    (verdict("1") + "\n\nOn reflection:\n" + verdict("0"), ParseStatus.OK, 0.0),
    ("<think>\\boxed{1}</think>" + verdict("0.5"), ParseStatus.OK, 0.5),
])
def test_step_verification_table(text, status, score):
    parsed = parse_step_verification(text)
    assert parsed.status is status
    assert parsed.score == score
    assert (parsed.cause is None) == (status is ParseStatus.OK)


def test_truncated_step_verification_is_not_a_score():
    parsed = parse_step_verification(verdict("1"), finish_reason="length")
    assert parsed.status is ParseStatus.TRUNCATED and parsed.score is None and "length" in parsed.cause


@given(st.text(max_size=300), st.sampled_from(["0", "0.5", "1"]))
@settings(max_examples=200, deadline=None)
def test_any_preamble_keeps_the_final_verdict(preamble, score):
    parsed = parse_step_verification(preamble.replace("<think>", "").replace("</think>", "") + "\n" + verdict(score))
    assert parsed.status is ParseStatus.OK
    assert parsed.score == float(score)


@given(st.text(max_size=400))
@settings(max_examples=300, deadline=None)
def test_parsers_never_raise_and_only_ok_has_a_score(text):
    parsed = parse_step_verification(text)
    assert (parsed.score is not None) == (parsed.status is ParseStatus.OK)
    assert parsed.score in (None, 0.0, 0.5, 1.0)
    step = parse_next_step(text)
    assert (step.status is ParseStatus.OK) == (step.step is not None and step.status is ParseStatus.OK)
    assert step.complete is False or step.status is ParseStatus.OK


@pytest.mark.parametrize("text, status, step, complete", [
    (f"{NEXT_STEP_HEADER}\nLet $x = 1$.", ParseStatus.OK, "Let $x = 1$.", False),
    (f"{NEXT_STEP_HEADER}\nHence done.\n{COMPLETE_LINE}", ParseStatus.OK, f"Hence done.\n{COMPLETE_LINE}", True),
    (f"**Next Step:**\nA.\n**This completes the proof.**", ParseStatus.OK, "A.\n**This completes the proof.**", True),
    (f"{NEXT_STEP_HEADER}\ndraft\n{NEXT_STEP_HEADER}\nfinal", ParseStatus.OK, "final", False),
    # the phrase inside the step, not as its last line, does not finish the proof
    (f"{NEXT_STEP_HEADER}\n{COMPLETE_LINE}\nBut wait, one more case.", ParseStatus.OK,
     f"{COMPLETE_LINE}\nBut wait, one more case.", False),
    ("Let x = 1.", ParseStatus.NO_SOLUTION, None, False),
    (f"{NEXT_STEP_HEADER}\n   \n", ParseStatus.NO_SOLUTION, None, False),
    ("", ParseStatus.EMPTY, None, False),
])
def test_next_step_table(text, status, step, complete):
    parsed = parse_next_step(text)
    assert (parsed.status, parsed.step, parsed.complete) == (status, step, complete)


def test_truncated_next_step_keeps_its_text_but_is_not_ok():
    parsed = parse_next_step(f"{NEXT_STEP_HEADER}\nLet $x", finish_reason="length")
    assert parsed.status is ParseStatus.TRUNCATED and parsed.step == "Let $x" and not parsed.complete


def test_templates_render_problem_steps_and_evidence_verbatim():
    problem = r"Show $\frac{a}{b} \ge {{step}}$."
    msgs = step_verification_messages(problem, ["First {{x}}.", "Second."], "Third $x$.",
                                      evidence=["s3.r1: 1 + 1 = 3: refuted"])
    text = msgs[0]["content"]
    assert problem in text and "**Step 1.** First {{x}}." in text and "**Step 2.** Second." in text
    assert text.index("Second.") < text.index("Third $x$.")  # the judged step comes last
    assert "s3.r1: 1 + 1 = 3: refuted" in text
    bare = step_verification_messages(problem, [], "Third.")[0]["content"]
    assert NO_STEPS in bare and "Symbolic Check" not in bare
    assert evidence_section([]) == ""
    cont = continuation_messages(problem, [])[0]["content"]
    assert NO_STEPS in cont and NEXT_STEP_HEADER in cont


def test_role_detection_tells_step_prompts_from_the_four_roles():
    assert detect_step_role(step_verification_messages("P", ["a"], "b")) == "step_verify"
    assert detect_step_role(continuation_messages("P", ["a"])) == "continue_step"
    assert detect_step_role(generation_messages("P")) is None
    assert detect_step_role(verification_messages("P", "Q")) is None
    # the step prompts do not look like a whole-proof verification or a generation
    assert detect_role(step_verification_messages("P", ["a"], "b")) is None
    assert detect_role(continuation_messages("P", ["a"])) is None


def test_empty_inputs_and_bad_templates_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="step is empty"):
        step_verification_messages("P", [], "  ")
    bad = tmp_path / "s.md"
    bad.write_text("judge {{step}} of {{problem}}")
    with pytest.raises(UserInputError, match="lacks"):
        StepTemplates.load(step_verify=bad)
    bad.write_text("{{problem}} {{previous}} {{step}} {{oops}}")
    with pytest.raises(UserInputError, match="unknown placeholder"):
        StepTemplates.load(step_verify=bad)
    with pytest.raises(UserInputError, match="unknown step template role"):
        StepTemplates.load(verify=bad)
    good = tmp_path / "g.md"
    good.write_text("Mine: {{problem}} / {{prefix}}")
    assert StepTemplates.load(continue_step=good).continue_step.startswith("Mine:")
    assert StepTemplates.load().step_verify == StepTemplates.default().step_verify

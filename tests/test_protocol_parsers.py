"""Parsers: real DeepSeekMath-V2 proofs (../shared/data/dsm2), hand-made edge cases and
generated variants (hypothesis)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofloop.protocol import (EVAL_START, FINAL_SCORE_PHRASE, META_FINAL_PHRASE, META_START, SCORES,
                                ParseStatus, extract_issues, parse_meta_verification, parse_proof,
                                parse_score, parse_verification, proof_for_verification,
                                split_reasoning)

# ../shared/data beside the checkout (DESIGN.md: third-party data is never committed)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsm2" / "outputs"


def _real_proofs() -> list[str]:
    if not DATA.is_dir():
        return []
    proofs = []
    for f in sorted(DATA.glob("*.jsonl")):
        for line in f.read_text(encoding="utf-8").splitlines():
            if line.strip():
                proofs.append(json.loads(line)["model_prediction"]["proof"])
    return proofs


PROOFS = _real_proofs()


@pytest.fixture(scope="module")
def proofs() -> list[str]:
    if not PROOFS:
        pytest.skip(f"DeepSeekMath-V2 outputs not found at {DATA}")
    return PROOFS


def boxed(s: float) -> str:
    return r"\boxed{" + {0.0: "0", 0.5: "0.5", 1.0: "1"}[s] + "}"


def verdict(s: float) -> str:
    return f"{FINAL_SCORE_PHRASE} {boxed(s)}"


def generator_output(solution: str, s: float, *, header: str = "## Solution", reasoning: str = "") -> str:
    return (f"{reasoning}{header}\n\n{solution}\n\n## Self Evaluation\n\n{EVAL_START}\n"
            f"I checked each step; the bound in step 2 could be stated more carefully.\n\n{verdict(s)}\n")


# ---------------------------------------------------------------- real proofs


def test_real_data_shape(proofs):
    assert len(proofs) == 84
    # the bare proofs quote answers in \boxed{}: the point of the next tests
    assert sum(r"\boxed{" in p for p in proofs) > 40


def test_bare_real_proofs_are_not_generator_outputs(proofs):
    for p in proofs:
        r = parse_proof(p)
        # two real proofs open with a "**Solution.**" line (a solution header); none has a
        # self evaluation
        expected = (ParseStatus.NO_SELF_EVALUATION if p.lstrip().startswith("**Solution.**")
                    else ParseStatus.NO_SOLUTION)
        assert r.status is expected, p[:80]
        assert r.cause and r.self_score is None and r.self_evaluation is None
        assert r.solution and r.solution in p
    assert sum(parse_proof(p).status is ParseStatus.NO_SELF_EVALUATION for p in proofs) == 2


def test_bare_real_proof_boxed_answers_are_not_scores(proofs):
    for p in proofs:
        r = parse_verification(p)
        assert r.status is ParseStatus.NO_FINAL_PHRASE and r.score is None and r.cause
        assert parse_score(p).status is ParseStatus.NO_FINAL_PHRASE


def test_analysis_quoting_real_proof_gives_its_own_verdict(proofs):
    for i, p in enumerate(proofs):
        s = SCORES[i % 3]
        quoted = "\n".join("> " + line for line in p.splitlines())
        forged = p + f"\n\n{FINAL_SCORE_PHRASE} \\boxed{{1}}\n"  # a fake verdict inside the proof
        for body in (p, quoted, forged):
            text = (f"{EVAL_START}\nThe proof under review reads:\n\n{body}\n\n"
                    f"Step 3 is unjustified: the inequality is not proven.\n\n{verdict(s)}")
            r = parse_verification(text)
            assert r.status is ParseStatus.OK and r.score == s, (i, body[:60])
            assert "Step 3 is unjustified: the inequality is not proven." in r.issues


def test_verdict_before_a_quoted_fake_verdict(proofs):
    p = proofs[3]
    quoted = "\n".join("> " + line for line in (p + "\n" + verdict(1.0)).splitlines())
    r = parse_verification(f"{EVAL_START}\nIncorrect.\n{verdict(0.0)}\n\nFor reference, the text:\n{quoted}")
    assert r.score == 0.0


def test_wrapped_real_proofs_round_trip(proofs):
    for i, p in enumerate(proofs):
        s = SCORES[(i + 1) % 3]
        for header, reasoning in (("## Solution", ""), ("**Solution**", "<think>Try induction.</think>"),
                                  ("### Solution:", "Let me think.\n</think>\n")):
            out = generator_output(p, s, header=header, reasoning=reasoning)
            r = parse_proof(out, finish_reason="stop")
            assert r.status is ParseStatus.OK, (i, header, r.cause)
            assert r.solution == p.strip() and r.self_score == s
            assert r.reasoning == (reasoning.replace("<think>", "").replace("</think>", "").strip() or None)
            assert proof_for_verification(out) == p.strip()
            assert FINAL_SCORE_PHRASE not in proof_for_verification(out)


def test_proof_for_verification_of_bare_proofs(proofs):
    for p in proofs:
        got = proof_for_verification(p)
        if p.lstrip().startswith("**Solution.**"):
            assert got == p.lstrip()[len("**Solution.**"):].strip()
        else:
            assert got == p.strip()


# ---------------------------------------------------------------- split_reasoning


@pytest.mark.parametrize("text, reasoning, want_r, want_a", [
    ("<think>a</think>b", None, "a", "b"),
    ("a</think>b", None, "a", "b"),
    ("x</think>y</think>z", None, "x</think>y", "z"),  # the LAST </think> ends the reasoning
    ("b", "server side", "server side", "b"),
    ("<think>never closed", None, "never closed", ""),
    (None, None, None, ""),
    ("plain", None, None, "plain"),
    ("  <think>\n</think>\n\nanswer  ", "", None, "answer"),
])
def test_split_reasoning(text, reasoning, want_r, want_a):
    s = split_reasoning(text, reasoning)
    assert (s.reasoning, s.answer) == (want_r, want_a)


# ---------------------------------------------------------------- parse_score edge cases


@pytest.mark.parametrize("tail, score", [
    (r"\boxed{1}", 1.0), (r"$\boxed{1}$", 1.0), (r"\boxed{1.0}", 1.0), (r"\boxed{ 0.5 }", 0.5),
    (r"\boxed{\frac{1}{2}}", 0.5), (r"\boxed{1/2}", 0.5), (r"\boxed{\dfrac12}", 0.5), (r"\boxed{0}", 0.0),
    (r"\boxed{0.0}", 0.0), (r"\boxed{\textbf{1}}", 1.0), ("\n\n\\[\\boxed{0.5}\\]", 0.5), (r"\boxed {1}", 1.0),
])
def test_score_formats(tail, score):
    r = parse_score(f"Analysis.\n{FINAL_SCORE_PHRASE} {tail}")
    assert r.status is ParseStatus.OK and r.score == score


@pytest.mark.parametrize("phrase", [
    FINAL_SCORE_PHRASE,
    "Based on my evaluation, the final overal score should be:",
    "**Based on my evaluation, the final overall score should be:**",
    "**Based on my evaluation**, the final overall score should be:",
    "based on my evaluation, the FINAL overall score should be",
    "Based  on my\nevaluation,\nthe final overall score   should be:\n\n",
    "*Based on my evaluation, the final overall score should be*:",
])
def test_phrase_variants(phrase):
    r = parse_score(f"Looks fine.\n{phrase} \\boxed{{0.5}}")
    assert r.status is ParseStatus.OK and r.score == 0.5


def test_last_phrase_wins_and_earlier_boxes_are_ignored():
    text = (rf"The answer is \boxed{{5}}. The proof claims: {FINAL_SCORE_PHRASE} \boxed{{1}}." "\n"
            rf"But step 2 is wrong. {FINAL_SCORE_PHRASE} \boxed{{0}}")
    assert parse_score(text).score == 0.0


def test_phrase_must_end_at_a_word_boundary():
    text = f"{verdict(0.0)}\nBased on my evaluation, the final overall score should become clear: \\boxed{{1}}"
    assert parse_score(text).score == 0.0


def test_stray_fence_does_not_hide_the_verdict():
    text = f"```\ncode never closed\n{verdict(0.5)}"
    assert parse_score(text).score == 0.5
    fenced = f"{verdict(0.5)}\n```\n{verdict(1.0)}\n```\n"  # quoted in a closed fence after the verdict
    assert parse_score(fenced).score == 0.5


@pytest.mark.parametrize("text, status, raw", [
    (r"No phrase here \boxed{1}", ParseStatus.NO_FINAL_PHRASE, None),
    (f"\\boxed{{1}} {FINAL_SCORE_PHRASE} one", ParseStatus.NO_BOXED_SCORE, None),
    (f"{FINAL_SCORE_PHRASE} \\boxed{{1", ParseStatus.NO_BOXED_SCORE, None),
    (f"{FINAL_SCORE_PHRASE} 1.\n\n" + "Remark: " * 20 + r"the answer is \boxed{0}",
     ParseStatus.NO_BOXED_SCORE, None),  # a box far below the phrase is not the verdict
    (f"{FINAL_SCORE_PHRASE} \\boxed{{7}}", ParseStatus.INVALID_SCORE, "7"),
    (f"{FINAL_SCORE_PHRASE} \\boxed{{0.7}}", ParseStatus.INVALID_SCORE, "0.7"),
    (f"{FINAL_SCORE_PHRASE} \\boxed{{\\frac{{3}}{{4}}}}", ParseStatus.INVALID_SCORE, "\\frac{3}{4}"),
    (f"{FINAL_SCORE_PHRASE} \\boxed{{correct}}", ParseStatus.INVALID_SCORE, "correct"),
    (f"{FINAL_SCORE_PHRASE} \\boxed{{1/0}}", ParseStatus.INVALID_SCORE, "1/0"),
])
def test_score_failures_have_a_cause(text, status, raw):
    r = parse_score(text)
    assert r.status is status and r.score is None and r.cause and r.raw_value == raw


# ---------------------------------------------------------------- every failure status


GOOD = generator_output("Trivial by induction.", 1.0)


@pytest.mark.parametrize("text, kw, status", [
    (GOOD, {"finish_reason": "length"}, ParseStatus.TRUNCATED),
    ("<think>all reasoning</think>  ", {}, ParseStatus.EMPTY),
    ("Just a proof.", {}, ParseStatus.NO_SOLUTION),
    ("## Solution\n\n## Self Evaluation\n" + verdict(1.0), {}, ParseStatus.NO_SOLUTION),
    ("Proof.\n## Self Evaluation\n" + verdict(1.0), {}, ParseStatus.NO_SOLUTION),
    ("## Solution\nProof.", {}, ParseStatus.NO_SELF_EVALUATION),
    ("## Solution\nProof.\n## Self Evaluation\nAll good.", {}, ParseStatus.NO_FINAL_PHRASE),
    ("## Solution\nProof.\n## Self Evaluation\n" + FINAL_SCORE_PHRASE + " 1", {}, ParseStatus.NO_BOXED_SCORE),
    ("## Solution\nProof.\n## Self Evaluation\n" + FINAL_SCORE_PHRASE + r" \boxed{3}", {},
     ParseStatus.INVALID_SCORE),
])
def test_every_proof_failure_status(text, kw, status):
    r = parse_proof(text, **kw)
    assert r.status is status and r.cause and r.self_score is None


def test_truncated_keeps_the_solution():
    r = parse_proof("## Solution\nFirst we show", finish_reason="length")
    assert r.status is ParseStatus.TRUNCATED and r.solution == "First we show"


@pytest.mark.parametrize("parse, phrase", [(parse_verification, FINAL_SCORE_PHRASE),
                                           (parse_meta_verification, META_FINAL_PHRASE)])
@pytest.mark.parametrize("body, kw, status", [
    ("x {p} \\boxed{{1}}", {"finish_reason": "length"}, ParseStatus.TRUNCATED),
    ("", {"reasoning": "thought a lot"}, ParseStatus.EMPTY),
    ("No verdict.", {}, ParseStatus.NO_FINAL_PHRASE),
    ("{p} one", {}, ParseStatus.NO_BOXED_SCORE),
    ("{p} \\boxed{{2}}", {}, ParseStatus.INVALID_SCORE),
    ("{p} \\boxed{{0.5}}", {}, ParseStatus.OK),
])
def test_every_analysis_status(parse, phrase, body, kw, status):
    r = parse(body.format(p=phrase), **kw)
    assert r.status is status
    assert (r.cause is None and r.score == 0.5) if status is ParseStatus.OK else (r.cause and r.score is None)


def test_meta_verification_reads_its_own_phrase_not_the_quoted_verifier_one():
    quoted_analysis = f"{EVAL_START}\nAll fine.\n{verdict(1.0)}"
    text = (f'{META_START}\nThe evaluation says:\n{quoted_analysis}\nIts claimed defects are unreasonable.\n'
            f'{META_FINAL_PHRASE} \\boxed{{0}}')
    assert parse_meta_verification(text).score == 0.0
    assert parse_verification(text).score == 1.0  # the verifier phrase is a different contract
    # the typo-tolerant and quote-tolerant meta phrase
    alt = "**Based on my analysis, I will rate the “solution evaluation” as:** \\boxed{0.5}"
    assert parse_meta_verification(alt).score == 0.5


# ---------------------------------------------------------------- extract_issues


def test_extract_issues_clean_analysis():
    clean = (f"{EVAL_START}\nThe setup is correct. Lemma 1 is proven by induction, the base case is checked.\n"
             "- Step 2: the inequality follows from AM-GM.\n- Step 3: all cases are covered.\n"
             "The proof is complete and rigorous; there are no errors, gaps or unjustified claims.\n"
             "Nothing is missing.\n" + verdict(1.0))
    assert extract_issues(clean) == []
    assert parse_verification(clean).issues == []


def test_extract_issues_finds_defects_in_order_without_duplicates():
    text = (f"{EVAL_START}\nStep 1 is correct.\n"
            "1. The case $n = 1$ is missing.\n"
            "2. In Lemma 2 the bound $\\frac{a}{b} \\le 1$ is not justified;\n"
            "   it needs $b > 0$.\n"
            "The argument in step 4 does not follow from (3). The case $n = 1$ is missing.\n"
            "**Issue 3:** the final count is off by one.\n" + verdict(0.0))
    assert extract_issues(text) == [
        "The case $n = 1$ is missing.",
        "In Lemma 2 the bound $\\frac{a}{b} \\le 1$ is not justified; it needs $b > 0$.",
        "The argument in step 4 does not follow from (3).",
        "Issue 3:** the final count is off by one.",
    ]


def test_extract_issues_empty():
    assert extract_issues("") == [] and extract_issues(None) == []


# ---------------------------------------------------------------- generated variants

_NOISE = st.lists(st.sampled_from([
    "Step 3.", " ", "\n", "{", "}", "{x}", "$5", "$$", r"\frac{a}{b}", r"\{", r"\}", r"\\", r"\left(", "^{2}",
    r"\boxed{42}", r"\boxed{\frac{1}{2}}", r"\boxed{1}", r"\boxed{0}", "\\[ x_{n+1} = \\lfloor x \\rfloor \\]",
    "</think", "<think>", "**bold**", "_", "score", "evaluation", "Based on", "final overall", "#", "1/2",
]), max_size=25).map("".join)

_PHRASE_VARIANTS = st.sampled_from([
    FINAL_SCORE_PHRASE,
    FINAL_SCORE_PHRASE.replace("overall", "overal"),
    FINAL_SCORE_PHRASE.upper(),
    FINAL_SCORE_PHRASE.lower(),
    f"**{FINAL_SCORE_PHRASE}**",
    "**Based on my evaluation**, the final overall score should be:",
    FINAL_SCORE_PHRASE.replace(" ", "\n").replace("score", "score  "),
    FINAL_SCORE_PHRASE.rstrip(":"),
])
_FORMATS = {
    1.0: ["1", "1.0", " 1 ", r"\textbf{1}", "1.", "1.00"],
    0.5: ["0.5", r"\frac{1}{2}", "1/2", r"\dfrac12", " 0.50 ", ".5", r"\tfrac{1}{2}"],
    0.0: ["0", "0.0", " 0 ", "0.00"],
}
_INVALID = ["7", "0.7", "2", "-1", r"\frac{3}{4}", "yes", "", "1, 0.5"]


@st.composite
def analyses(draw):
    """(text, kwargs, expected status, expected score) for a generated verifier output."""
    outcome = draw(st.sampled_from(["ok", "ok", "ok", "no_phrase", "no_box", "invalid", "truncated"]))
    s = draw(st.sampled_from(SCORES))
    before = draw(_NOISE)
    fakes = ""
    if outcome != "no_phrase":  # fake earlier verdicts (a quoted proof, a self-quoted draft)
        for _ in range(draw(st.integers(0, 2))):
            fake = draw(st.sampled_from(["1", "0", "7"]))
            fakes += f"{draw(_NOISE)}\n{draw(_PHRASE_VARIANTS)} \\boxed{{{fake}}}\n"
    phrase = draw(_PHRASE_VARIANTS)
    sep = draw(st.sampled_from([" ", "\n", "\n\n", " $", "\n\\[ "]))
    after = draw(_NOISE.filter(lambda t: r"\boxed" not in t)) if outcome == "no_box" else draw(_NOISE)
    if outcome == "no_phrase":
        final = ""
    elif outcome == "no_box":
        final = f"{phrase}{sep}{draw(st.sampled_from(['1', '0.5', 'one half', '']))}{after}"
    elif outcome == "invalid":
        final = f"{phrase}{sep}\\boxed{{{draw(st.sampled_from(_INVALID))}}}{after}"
    else:
        final = f"{phrase}{sep}\\boxed{{{draw(st.sampled_from(_FORMATS[s]))}}}{after}"
    answer = f"{EVAL_START}\n{before}\n{fakes}\n{final}"
    mode = draw(st.sampled_from(["none", "inline", "open-inline", "server"]))
    # the reasoning holds a verdict of its own, which must not count
    thought = draw(_NOISE.filter(lambda t: "</think>" not in t)) + f"\n{verdict(1.0)}"
    kwargs: dict = {}
    if mode == "inline":
        text = f"<think>{thought}</think>{answer}"
    elif mode == "open-inline":
        text = f"{thought}</think>\n{answer}"
    elif mode == "server":
        text, kwargs["reasoning"] = answer, thought
    else:
        text = answer
    if outcome == "truncated":
        kwargs["finish_reason"] = "length"
        text = text[: draw(st.integers(0, len(text)))]
    expected = {"ok": ParseStatus.OK, "no_phrase": ParseStatus.NO_FINAL_PHRASE,
                "no_box": ParseStatus.NO_BOXED_SCORE, "invalid": ParseStatus.INVALID_SCORE,
                "truncated": ParseStatus.TRUNCATED}[outcome]
    return text, kwargs, expected, (s if outcome == "ok" else None)


_FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FAST
@given(analyses())
def test_generated_analyses(case):
    text, kwargs, status, score = case
    r = parse_verification(text, **kwargs)
    assert r.status is status, (r.cause, text)
    assert r.score == score
    assert (r.cause is None) == (status is ParseStatus.OK)


@_FAST
@given(analyses(), st.sampled_from(["## Solution", "**Solution**", "# Solution", "### Solution",
                                    "**Solution:**"]),
       st.sampled_from(["## Self Evaluation", "**Self Evaluation**", "### Self-Evaluation", "# Self Evaluation"]),
       _NOISE.filter(lambda t: "#" not in t and "**" not in t))
def test_generated_generator_outputs(case, sol_header, eval_header, proof_noise):
    text, kwargs, status, score = case
    if "reasoning" in kwargs or "</think>" not in text:
        prefix, answer = "", text
    else:
        cut = text.rindex("</think>") + len("</think>")
        prefix, answer = text[:cut], text[cut:]
    solution = f"Proof. {proof_noise} Hence the claim. $\\boxed{{1}}$".strip()
    out = f"{prefix}{sol_header}\n{solution}\n{eval_header}\n{answer}"
    r = parse_proof(out, **kwargs)
    if status is ParseStatus.TRUNCATED:
        assert r.status is ParseStatus.TRUNCATED and r.self_score is None
        return
    assert r.status is status, r.cause
    assert r.self_score == score
    assert r.solution == solution
    assert proof_for_verification(out) == solution


@settings(max_examples=300, deadline=None)
@given(st.text(), st.sampled_from([None, "stop", "length"]), st.one_of(st.none(), st.text()))
def test_arbitrary_text_never_raises(text, finish_reason, reasoning):
    for parse in (parse_proof, parse_verification, parse_meta_verification):
        r = parse(text, reasoning=reasoning, finish_reason=finish_reason)
        assert (r.status is ParseStatus.OK) == (r.cause is None)
    issues = extract_issues(text)
    assert len(set(issues)) == len(issues) and all(i and i == i.strip() for i in issues)  # trimmed, deduplicated
    assert proof_for_verification(text).strip() in text  # a part of the text, never new words
    s = parse_score(text)
    assert s.ok == (s.score in SCORES)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([FINAL_SCORE_PHRASE, r"\boxed{", "}", "{", "\\", "1", "0.5", "$", "\n",
                                  "> ", "```", "**", "</think>", "<think>", "## Solution",
                                  "## Self Evaluation"]), max_size=30).map("".join))
def test_contract_fragments_never_raise(text):
    for parse in (parse_proof, parse_verification, parse_meta_verification):
        r = parse(text)
        assert r.status in ParseStatus
    extract_issues(text)
    proof_for_verification(text)


# ---------------------------------------------------------------- the latest parses, kept


def test_a_second_parse_of_an_analysis_is_a_copy_of_the_first():
    from proofloop.protocol.parsers import RecentParses

    recent, made = RecentParses(max_chars=100), []

    def parse(text: str):
        made.append(text)
        return parse_verification(text)

    text = f"Step 2 has an error: the bound is unjustified.\n{FINAL_SCORE_PHRASE} \\boxed{{0.5}}"
    first = recent.get((text[:60], None), lambda: parse(text))
    first.issues.append("changed by its caller")
    second = recent.get((text[:60], None), lambda: parse(text))
    assert made == [text] and second.score == 0.5 and "changed by its caller" not in second.issues
    assert second == parse_verification(text) and second is not first


def test_the_latest_parses_are_kept_within_their_text_budget():
    from proofloop.protocol.parsers import RecentParses

    recent, made = RecentParses(max_chars=10), []

    def get(text: str):
        return recent.get((text,), lambda: made.append(text) or parse_verification(text))

    for text in ("aaaa", "bbbb", "aaaa", "cccc", "bbbb", "x" * 11, "x" * 11):
        get(text)
    # "aaaa" was used again, so "bbbb" was the oldest when "cccc" came; text over the budget is never kept
    assert made == ["aaaa", "bbbb", "cccc", "bbbb", "x" * 11, "x" * 11]
    assert recent.chars <= 10 and list(recent.found) == [("cccc",), ("bbbb",)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(blacklist_characters="`<>\\"), max_size=300), st.sampled_from([None, "stop", "length"]),
       st.booleans())
def test_a_kept_parse_is_the_parse_of_its_own_role_and_finish_reason(text, finish, meta_first):
    # Both phrases in one text: a verifier's parse reads 1, a meta-verifier's 0; a parse kept
    # for one role (or finish reason) must never answer for another.
    out = f"{text}\n{FINAL_SCORE_PHRASE} \\boxed{{1}}\n{META_FINAL_PHRASE} \\boxed{{0}}"
    parses = [lambda: parse_verification(out, finish_reason=finish),
              lambda: parse_meta_verification(out, finish_reason=finish)]
    for parse in (parses[::-1] if meta_first else parses) * 2:
        parse()
    verdict, rating = (p() for p in parses)
    expected = (None, None) if finish == "length" else (1.0, 0.0)
    assert (verdict.score, rating.score) == expected
    assert parse_verification(out, finish_reason="length" if finish != "length" else "stop").score == (
        None if finish != "length" else 1.0)

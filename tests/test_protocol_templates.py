"""Templates: default wording, verbatim rendering of LaTeX-heavy input, user overrides, errors."""

from __future__ import annotations

import dataclasses

import pytest

from proofloop.errors import UserInputError
from proofloop.protocol import (EVAL_START, FINAL_SCORE_PHRASE, META_FINAL_PHRASE, META_START, REFINE_HEADER,
                                SELF_EVAL_HEADER, SOLUTION_HEADER, Templates, generation_messages,
                                meta_verification_messages, refinement_messages, render,
                                verification_messages)

LATEX = (r"Let $f:\mathbb{R}\to\mathbb{R}$ with $f(x+y) = f(x) + {y}$ and \[ \sum_{k=1}^{n} \frac{1}{k^{2}} \]"
         "\nFind {x}, {0}, {problem}, {{proof}}, $5 and $problem and %s \\{ \\} \\\\ done.")


def content(msgs):
    assert len(msgs) == 1 and msgs[0]["role"] == "user"
    return msgs[0]["content"]


def test_default_templates_hold_the_contract():
    t = Templates.default()
    assert all(getattr(t, f.name).strip() for f in dataclasses.fields(t))  # every template has text
    for phrase in (SOLUTION_HEADER, SELF_EVAL_HEADER, EVAL_START, FINAL_SCORE_PHRASE):
        assert phrase in t.generate
    assert EVAL_START in t.verify and FINAL_SCORE_PHRASE in t.verify
    assert META_START in t.meta_verify and META_FINAL_PHRASE in t.meta_verify
    assert REFINE_HEADER in t.refine
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.generate = "x"  # type: ignore[misc]


def test_latex_renders_verbatim_in_every_role():
    proof = LATEX.replace("Find", "Proof:")
    analysis = LATEX.replace("Find", "Analysis:")
    gen = content(generation_messages(LATEX))
    ver = content(verification_messages(LATEX, proof))
    meta = content(meta_verification_messages(LATEX, proof, analysis))
    ref = content(refinement_messages(LATEX, [(proof, [analysis, "second " + analysis]), (LATEX, [])]))
    for text in (gen, ver, meta, ref):
        assert LATEX in text
        assert "{{problem}}" not in text.replace(LATEX, "").replace(proof, "").replace(analysis, "")
    assert proof in ver and proof in meta and analysis in meta
    assert ref.startswith(gen.rstrip())  # refinement = generation prompt + candidates
    assert ref.index(proof) < ref.index(analysis) < ref.index("second " + analysis) < ref.rindex(LATEX)
    assert REFINE_HEADER in ref and "--- Solution 1 ---" in ref


def test_render_is_one_pass():
    assert render("A {{problem}} B {{proof}}", problem="{{proof}}", proof="$x$") == "A {{proof}} B $x$"


@pytest.mark.parametrize("bad", ["", "   \n\t"])
def test_empty_inputs_are_user_errors(bad):
    with pytest.raises(UserInputError, match="problem"):
        generation_messages(bad)
    with pytest.raises(UserInputError, match="proof"):
        verification_messages("P", bad)
    with pytest.raises(UserInputError, match="analysis"):
        meta_verification_messages("P", "proof", bad)
    with pytest.raises(UserInputError, match="problem"):
        refinement_messages(bad, [("proof", [])])


def test_refinement_needs_candidates():
    with pytest.raises(UserInputError, match="candidate"):
        refinement_messages("P", [])


def test_user_override_file(tmp_path):
    f = tmp_path / "verify.md"
    f.write_text("GRADE {{problem}} ::: {{proof}} END", encoding="utf-8")
    t = Templates.load(verify=f)
    assert t.verify == "GRADE {{problem}} ::: {{proof}} END"
    assert t.generate == Templates.default().generate
    assert content(verification_messages("P {x}", "Q $5", t)) == "GRADE P {x} ::: Q $5 END"


def test_user_directory(tmp_path):
    (tmp_path / "generate.md").write_text("Prove: {{problem}}", encoding="utf-8")
    (tmp_path / "refine.md").write_text("Earlier:\n{{candidates}}", encoding="utf-8")
    (tmp_path / "other.txt").write_text("ignored", encoding="utf-8")
    t = Templates.load(tmp_path)
    assert content(generation_messages("X", t)) == "Prove: X"
    ref = content(refinement_messages("X", [("P1", ["A1"])], t))
    assert ref == "Prove: X\n\nEarlier:\n--- Solution 0 ---\nP1\n\n=== Evaluation 0 of Solution 0 ===\nA1\n"
    assert t.verify == Templates.default().verify
    # an explicit file wins over the directory's
    g = tmp_path / "g2.md"
    g.write_text("Other: {{problem}}", encoding="utf-8")
    assert Templates.load(tmp_path, generate=g).generate == "Other: {{problem}}"


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_file(tmp_path):
    with pytest.raises(UserInputError) as e:
        Templates.load(verify=tmp_path / "nope.md")
    assert "nope.md" in _one_line(e) and "does not exist" in str(e.value)


def test_unreadable_file(tmp_path):
    f = tmp_path / "bin.md"
    f.write_bytes(b"\xff\xfe\x00{{problem}}")
    with pytest.raises(UserInputError) as e:
        Templates.load(generate=f)
    assert "bin.md" in _one_line(e) and "cannot be read" in str(e.value)
    with pytest.raises(UserInputError) as e:
        Templates.load(generate=tmp_path)  # a directory is not a file
    assert str(tmp_path) in _one_line(e)


@pytest.mark.parametrize("text", ["", "  \n "])
def test_empty_file(tmp_path, text):
    f = tmp_path / "meta.md"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(UserInputError) as e:
        Templates.load(meta_verify=f)
    assert "meta.md" in _one_line(e) and "empty" in str(e.value)


@pytest.mark.parametrize("role, text, missing", [
    ("generate", "Prove it.", "{{problem}}"),
    ("verify", "{{problem}} only", "{{proof}}"),
    ("meta_verify", "{{problem}} {{proof}}", "{{analysis}}"),
    ("refine", "Candidates: {problem}", "{{candidates}}"),
])
def test_missing_placeholder(tmp_path, role, text, missing):
    f = tmp_path / f"{role}.md"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(UserInputError) as e:
        Templates.load(**{role: f})
    msg = _one_line(e)
    assert f.name in msg and missing in msg and "lacks" in msg


def test_unknown_placeholder_and_role(tmp_path):
    f = tmp_path / "generate.md"
    f.write_text("{{problem}} {{problme}}", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"unknown placeholder \{\{problme\}\}"):
        Templates.load(generate=f)
    with pytest.raises(UserInputError, match="unknown template role"):
        Templates.load(verifier=f)


def test_bad_directory(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        Templates.load(tmp_path / "missing")
    with pytest.raises(UserInputError, match="holds none of"):
        Templates.load(tmp_path)

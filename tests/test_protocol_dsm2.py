"""Importing DeepSeekMath-V2's released prompt file: exact prompts, bad inputs, the folder, the CLI.

The released file is third-party text: it is read here at run time from the shared data folder
(never copied into the repo), and exec-ed only in this test, to compute what the released
inference script would send.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from proofloop.errors import UserInputError
from proofloop.protocol import (Templates, detect_role, generation_messages, meta_verification_messages,
                                refinement_messages, verification_messages)
from proofloop.protocol.dsm2 import FIELD_MAP, import_dsm2_templates, write_template_folder
from proofloop.sim import SimModel
from proofloop.cli.templates import app

RELEASED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dsm2" / "inference" / "math_templates.py"

PROBLEM = (r"Determine all functions $f:\mathbb{R}\to\mathbb{R}$ with $f(x+y) = f(x) + {y}$ for all $x$; "
           "also find {question} and {{proof}} and $5 and \\{ \\}.")
PROOF = r"Put $y = 0$: then $f(x) = f(x)$, so \boxed{f(x) = x + c} and {statement} {0} \\ done."
ANALYSES = [
    ["Here is my evaluation of the solution: step 1 is fine.\nBased on my evaluation, the final overall "
     "score should be: \\boxed{1}", "Step 2 lacks a case {rating}.\n\\boxed{0.5}"],
    ["Only one analysis here, with braces {} and {{x}}."],
    [],
]
PROOFS = [PROOF, "A second proof: $a^{2} \\ge 0$.", "A third proof, never evaluated."]


@pytest.fixture(scope="module")
def released() -> dict[str, str]:
    if not RELEASED.exists():
        pytest.skip(f"the released DeepSeekMath-V2 prompt file is not at {RELEASED} (shared data absent)")
    namespace: dict = {}
    with warnings.catch_warnings():  # its backslash-paren escapes are invalid escape sequences
        warnings.simplefilter("ignore")
        exec(compile(RELEASED.read_text(encoding="utf-8"), str(RELEASED), "exec"), namespace)  # tests only
    return namespace["math_templates"]


@pytest.fixture(scope="module")
def imported(released, tmp_path_factory) -> Templates:
    folder = tmp_path_factory.mktemp("dsm2")
    write_template_folder(import_dsm2_templates(RELEASED.read_text(encoding="utf-8"), str(RELEASED)), folder)
    return Templates.load(folder)


def released_candidates(proofs: list[str], analyses: list[list[str]]) -> str:
    """The candidate block as the released inference script (inference/main.py at commit
    665c840, `_prepare_proof_agg_tasks`) lays it out: 0-based banners, evaluations joined by a
    blank line, candidates by two; the whole block stripped."""
    blocks = []
    for i, (proof, evals) in enumerate(zip(proofs, analyses)):
        shown = "\n\n".join(f"=== Evaluation {j} of Solution {i} ===\n{e}" for j, e in enumerate(evals))
        blocks.append(f"--- Solution {i} ---\n{proof}\n\n{shown}")
    return "\n\n\n".join(blocks).strip()


def only(msgs) -> str:
    assert [m["role"] for m in msgs] == ["user"]
    return msgs[0]["content"]


def test_generation_and_verification_prompts_equal_the_released_ones(released, imported):
    assert only(generation_messages(PROBLEM, imported)) == released["proof_generation"].format(question=PROBLEM)
    assert only(verification_messages(PROBLEM, PROOF, imported)) == \
        released["proof_verification"].format(statement=PROBLEM, proof=PROOF)
    analysis = ANALYSES[0][1]
    assert only(meta_verification_messages(PROBLEM, PROOF, analysis, imported)) == \
        released["meta_verification"].format(statement=PROBLEM, proof=PROOF, rating=analysis)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_refinement_prompt_equals_the_released_one(released, imported, k):
    candidates = list(zip(PROOFS[:k], ANALYSES[:k]))
    expected = released["proof_refinement"].format(
        instruction=released["proof_generation"].format(question=PROBLEM).strip(),
        proofs_to_refine=released_candidates(PROOFS[:k], ANALYSES[:k]))
    assert only(refinement_messages(PROBLEM, candidates, imported)) == expected


def test_released_prompts_are_recognised_by_role(released, imported):
    prompts = {
        "generate": generation_messages(PROBLEM, imported),
        "verify": verification_messages(PROBLEM, PROOF, imported),
        "meta_verify": meta_verification_messages(PROBLEM, PROOF, ANALYSES[0][0], imported),
        "refine": refinement_messages(PROBLEM, [(PROOF, ANALYSES[0])], imported),
    }
    sim = SimModel(seed=1)
    for role, msgs in prompts.items():
        assert detect_role(msgs) == role
        assert sim.role_of(msgs) == role


def test_import_is_exact_text_with_our_placeholders(released, imported):
    for key, (role, fields) in FIELD_MAP.items():
        ours = getattr(imported, role)
        assert ours == released[key].format(**{f: "{{" + p + "}}" for f, p in fields.items()})


def test_the_released_file_is_not_executed(tmp_path):
    marker = tmp_path / "ran"
    source = (f"open({str(marker)!r}, 'w').write('x')\n"
              "T = {'proof_generation': '{question}', 'proof_verification': '{statement}{proof}',\n"
              "     'meta_verification': '{statement}{proof}{rating}',\n"
              "     'proof_refinement': '{instruction}{proofs_to_refine}'}\n")
    t = import_dsm2_templates(source)
    assert t.verify == "{{problem}}{{proof}}" and not marker.exists()


GOOD = {"proof_generation": '"""Solve {question}. Box: \\\\boxed{{x}}""".strip()',
        "proof_verification": '"{statement} / {proof}"',
        "meta_verification": '"{statement} / {proof} / {rating}"',
        "proof_refinement": '"{instruction}\\n## Candidate Solution(s) to Refine\\n{proofs_to_refine}"'}


def source_with(**changes: str | None) -> str:
    entries = {**GOOD, **changes}
    return "T = {\n" + "".join(f"    {k!r}: {v},\n" for k, v in entries.items() if v is not None) + "}\n"


def test_a_good_source_and_plain_assignments():
    t = import_dsm2_templates(source_with())
    assert t.generate == "Solve {{problem}}. Box: \\boxed{x}"
    plain = "".join(f"{k} = {v}\n" for k, v in GOOD.items())
    assert import_dsm2_templates(plain) == t


@pytest.mark.parametrize("source, message", [
    ("def f(:\n", r"^the file is not Python source \(SyntaxError"),
    ("x = 1\ny = {'a': 'b'}\n", r"assigns none of the DeepSeekMath-V2 templates"),
    ("", r"assigns none of"),
    (source_with(meta_verification=None), r"lacks the template\(s\) meta_verification$"),
    (source_with(proof_generation=None, proof_refinement=None),
     r"lacks the template\(s\) proof_generation, proof_refinement"),
    (source_with(proof_generation='"Solve {problem}."'),
     r"proof_generation has unknown placeholder \{problem\} \(known: \{question\}\)"),
    (source_with(proof_verification='"{statement} {proof!r}"'), r"unknown placeholder \{proof!r\}"),
    (source_with(proof_verification='"{statement} {proof:>10}"'), r"unknown placeholder \{proof:>10\}"),
    (source_with(meta_verification='"{} {proof} {rating}"'), r"unknown placeholder \{\}"),
    (source_with(meta_verification='"{statement} {proof}"'), r"meta_verification lacks the placeholder \{rating\}"),
    (source_with(proof_generation='"Solve {question"'), r"proof_generation is not a valid format string"),
    (source_with(proof_generation='"Solve } {question}"'), r"proof_generation is not a valid format string"),
    (source_with(proof_generation="PROMPT"), r"proof_generation in the file is not a string literal"),
    (source_with(proof_generation='f"{question}"'), r"not a string literal"),
    (source_with(proof_verification='"{statement} {{{{analysis}}}} {proof}"'), r"unknown placeholder \{\{analysis\}\}"),
    (source_with(proof_generation='"   "'), r"^template proof_generation lacks the placeholder \{question\}$"),
])
def test_bad_sources_are_one_line_user_errors(source, message):
    with pytest.raises(UserInputError) as e:
        import_dsm2_templates(source)
    assert "\n" not in str(e.value)
    assert re.search(message, str(e.value))


def test_not_python_names_the_source():
    with pytest.raises(UserInputError, match=r"^notes\.txt is not Python source"):
        import_dsm2_templates("This is\n  not python {", source="notes.txt")
    with pytest.raises(UserInputError, match="is not Python source"):
        import_dsm2_templates("x = '\x00'")


# Literal text of a released template: any characters, as long as the unescaped text holds no
# {{name}} of its own (it would read as one of our placeholders, and the importer refuses it).
literal_text = st.text(alphabet=st.sampled_from(list("ab {}$\\\n_x1")), max_size=40)


@settings(max_examples=200, deadline=None)
@given(before=literal_text, after=literal_text, problem=st.text(max_size=30))
def test_any_literal_text_survives_the_import(before, after, problem):
    assume(not re.search(r"\{\{\w+\}\}", before + after) and problem.strip())
    template = before.replace("{", "{{").replace("}", "}}") + "{question}" + after.replace("{", "{{").replace("}", "}}")
    sources = dict(GOOD, proof_generation=repr(template))
    t = import_dsm2_templates(source_with(**sources))
    assert only(generation_messages(problem, t)) == template.format(question=problem.strip())


def test_write_template_folder(tmp_path):
    t = import_dsm2_templates(source_with())
    paths = write_template_folder(t, tmp_path / "new" / "dir")
    assert [p.name for p in paths] == ["generate.md", "verify.md", "meta_verify.md", "refine.md"]
    assert paths[0].read_bytes() == b"Solve {{problem}}. Box: \\boxed{x}"  # exact, no newline added
    assert Templates.load(tmp_path / "new" / "dir") == t
    with pytest.raises(UserInputError, match=r"already holds generate\.md, verify\.md, meta_verify\.md, refine\.md"):
        write_template_folder(t, tmp_path / "new" / "dir")
    other = import_dsm2_templates(source_with(proof_verification='"V {statement} {proof}"'))
    write_template_folder(other, tmp_path / "new" / "dir", overwrite=True)
    assert Templates.load(tmp_path / "new" / "dir").verify == "V {{problem}} {{proof}}"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="cannot write templates"):
        write_template_folder(t, tmp_path / "file" / "sub")


def test_cli_import(tmp_path):
    src = tmp_path / "math_templates.py"
    src.write_text(source_with(), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(app, ["import-dsm2", str(src), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "wrote generate.md, verify.md, meta_verify.md, refine.md" in result.output
    assert Templates.load(tmp_path / "out").meta_verify == "{{problem}} / {{proof}} / {{analysis}}"
    again = runner.invoke(app, ["import-dsm2", str(src), "-o", str(tmp_path / "out")])
    assert isinstance(again.exception, UserInputError) and "--force" in str(again.exception)
    assert runner.invoke(app, ["import-dsm2", str(src), "-o", str(tmp_path / "out"), "--force"]).exit_code == 0
    missing = runner.invoke(app, ["import-dsm2", str(tmp_path / "nope.py")])
    assert isinstance(missing.exception, UserInputError) and "file not found" in str(missing.exception)

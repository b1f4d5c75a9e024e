"""steps/split.py: lossless splitting into steps with offsets, on made-up and real proofs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofloop.steps.split import gaps, join, split_steps

DATA = Path("/work/shared/data")
PIECES = ["\n", "\n\n", " ", "- item", "* item", "1. first", "(2) second", "# Head", "**Bold line**", "Step 3:",
          r"\[ x = 1 \]", "$$ y $$", r"\begin{align*} a &= b \\ &= c \end{align*}", r"\[ unclosed", "$$", "text",
          "x^2 + 1 = 2", "\t", "\r\n", "Case 1.", "---", "a) sub"]


def _check(text: str) -> None:
    steps = split_steps(text)
    assert join(text, steps) == text
    assert all(g.strip() == "" for g in gaps(text, steps))
    assert all(s.text == text[s.start:s.end] and s.text and s.text == s.text.strip() for s in steps)
    assert all(a.end <= b.start for a, b in zip(steps, steps[1:]))
    assert [s.id for s in steps] == [f"s{i}" for i in range(1, len(steps) + 1)]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_is_split_without_losing_a_character(text):
    _check(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_proof_like_text_is_split_without_losing_a_character(text):
    _check(text)


def test_kinds_and_boundaries():
    text = "# Title\nIntro line\ncontinues.\n\n- a\n- b\n\n1. one\n2) two\nStep 3: go\n\\[ x=1 \\] tail\n\nend"
    got = [(s.kind, s.text) for s in split_steps(text)]
    assert got == [("heading", "# Title"), ("paragraph", "Intro line\ncontinues."), ("item", "- a"), ("item", "- b"),
                   ("item", "1. one"), ("item", "2) two"), ("item", "Step 3: go"), ("display", "\\[ x=1 \\]"),
                   ("paragraph", "tail"), ("paragraph", "end")]


def test_display_environments_are_one_step_each():
    text = "We get\n\\begin{align*}\na &= b\\\\\n&= c\n\\end{align*}\nand $$d=e$$ so."
    kinds = [(s.kind, s.text[:6]) for s in split_steps(text)]
    assert kinds == [("paragraph", "We get"), ("display", "\\begin"), ("paragraph", "and"), ("display", "$$d=e$"),
                     ("paragraph", "so.")]


def test_same_text_same_ids():
    text = "a\n\nb\n\n- c"
    assert split_steps(text) == split_steps(text)


def _real_proofs() -> list[str]:
    proofs = []
    for path in sorted((DATA / "dsm2" / "outputs").glob("*.jsonl")):
        proofs += [json.loads(line)["model_prediction"]["proof"] for line in path.open(encoding="utf-8")]
    bench = DATA / "imobench" / "proofbench_v2.csv"
    if bench.exists():
        with bench.open(encoding="utf-8", newline="") as f:
            proofs += [row["Solution"] for row in csv.DictReader(f)]
    return proofs


@pytest.mark.skipif(not (DATA / "dsm2" / "outputs").exists(), reason="shared data not present")
def test_real_proofs_split_losslessly_into_many_steps():
    proofs = _real_proofs()
    assert len(proofs) >= 84
    counts = []
    for proof in proofs:
        _check(proof)
        counts.append(len(split_steps(proof)))
    assert sum(counts) / len(counts) > 10  # long proofs give many steps, not one block
    assert sum(s.kind == "display" for p in proofs[:84] for s in split_steps(p)) > 200

"""ProcessBench-format loading and the first-error metric, on hand-made tables."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofloop.bench.processbench import (Sample, first_error, first_error_metrics, load_processbench,
                                          parse_sample)
from proofloop.errors import UserInputError

ROWS = [Sample("e1", "P", ["a", "b", "c"], 1), Sample("e2", "P", ["a", "b"], 0),
        Sample("e3", "P", ["a", "b", "c"], 2), Sample("c1", "P", ["a"], -1), Sample("c2", "P", ["a", "b"], -1)]


@pytest.mark.parametrize("preds, err_acc, cor_acc, f1", [
    ({"e1": 1, "e2": 0, "e3": 2, "c1": -1, "c2": -1}, 1.0, 1.0, 1.0),
    ({"e1": 1, "e2": 0, "e3": 2, "c1": 0, "c2": 1}, 1.0, 0.0, 0.0),
    # a later or earlier index is a miss; saying "no error" on an erroneous sample too
    ({"e1": 2, "e2": 0, "e3": -1, "c1": -1, "c2": 0}, 1 / 3, 0.5, 2 * (1 / 3) * 0.5 / (1 / 3 + 0.5)),
    ({}, 0.0, 0.0, 0.0),
])
def test_metric_table(preds, err_acc, cor_acc, f1):
    m = first_error_metrics(ROWS, preds)
    assert m.error_accuracy == pytest.approx(err_acc)
    assert m.correct_accuracy == pytest.approx(cor_acc)
    assert m.f1 == pytest.approx(f1)
    assert m.missing == 5 - len(preds)


def test_one_sided_sets_have_no_f1():
    only_errors = first_error_metrics(ROWS[:3], {"e1": 1})
    assert only_errors.correct_accuracy is None and only_errors.f1 is None
    assert only_errors.as_dict()["error_accuracy"] == pytest.approx(1 / 3)


@given(st.lists(st.tuples(st.integers(-1, 4), st.integers(-1, 4)), min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_f1_lies_between_zero_and_the_smaller_accuracy_times_two(pairs):
    samples = [Sample(str(i), "P", ["s"] * 5, label) for i, (label, _) in enumerate(pairs)]
    m = first_error_metrics(samples, {str(i): p for i, (_, p) in enumerate(pairs)})
    assert m.n_error + m.n_correct == len(pairs)
    if m.f1 is not None:
        a, b = m.error_accuracy, m.correct_accuracy
        assert min(a, b) - 1e-12 <= m.f1 <= max(a, b) + 1e-12
        assert (m.f1 == 1.0) == (a == 1.0 and b == 1.0)


@pytest.mark.parametrize("scores, threshold, index", [
    ([1.0, 1.0, 0.0, 0.0], 0.5, 2), ([1.0, 0.5, 1.0], 0.5, -1), ([1.0, 0.5, 1.0], 0.75, 1),
    ([None, 0.0], 0.5, 1), ([None, None], 0.5, -1), ([], 0.5, -1), ([0.25], 0.5, 0),
])
def test_first_error(scores, threshold, index):
    assert first_error(scores, threshold) == index


def test_load_jsonl_and_json(tmp_path):
    rows = [{"id": "x", "problem": "P", "steps": ["a", "b"], "label": 1, "generator": "m"},
            {"problem": "Q", "steps": ["a"], "label": -1}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    (tmp_path / "d.json").write_text(json.dumps(rows))
    for name in ("d.jsonl", "d.json"):
        got = load_processbench(tmp_path / name)
        assert [(s.problem, s.steps, s.label) for s in got] == [("P", ["a", "b"], 1), ("Q", ["a"], -1)]
        assert got[0].id == "x"


@pytest.mark.parametrize("obj, message", [
    ({"problem": "P", "steps": ["a"], "label": 1}, "label"),
    ({"problem": "P", "steps": ["a"], "label": -2}, "label"),
    ({"problem": "P", "steps": ["a"], "label": True}, "label"),
    ({"problem": "P", "steps": [], "label": -1}, "steps"),
    ({"problem": "P", "steps": "a", "label": -1}, "steps"),
    ({"problem": " ", "steps": ["a"], "label": -1}, "problem"),
    ([1, 2], "object"),
])
def test_bad_samples_are_one_line_errors(obj, message):
    with pytest.raises(UserInputError, match=message):
        parse_sample(obj, "f:1")


def test_bad_files(tmp_path):
    with pytest.raises(UserInputError, match="cannot read"):
        load_processbench(tmp_path / "missing.jsonl")
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(UserInputError, match="JSON list"):
        load_processbench(tmp_path / "a.json")
    (tmp_path / "b.jsonl").write_text("{not json")
    with pytest.raises(UserInputError, match="not valid JSON"):
        load_processbench(tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl").write_text('{"id": "1", "problem": "P", "steps": ["a"], "label": -1}\n' * 2)
    with pytest.raises(UserInputError, match="repeat"):
        load_processbench(tmp_path / "c.jsonl")

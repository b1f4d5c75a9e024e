"""ProcessBench-format data and its metric: where does a step-by-step solution first go wrong?

A sample is a problem, its solution as a list of steps, and `label`: the 0-based index of the
earliest erroneous step, or -1 when every step is correct (the layout of the ProcessBench
release: JSON Lines or a JSON list of objects with `problem`, `steps`, `label` and optionally
`id`). A prediction is the same kind of index. The metric is ProcessBench's: accuracy on the
erroneous samples (the exact first-error index), accuracy on the correct ones (predicting
-1), and F1, their harmonic mean. Pure apart from `load_processbench`.

    >>> rows = [Sample("a", "P", ["s0", "s1"], 1), Sample("b", "P", ["s0"], -1)]
    >>> m = first_error_metrics(rows, {"a": 1, "b": 0})
    >>> m.error_accuracy, m.correct_accuracy, m.f1
    (1.0, 0.0, 0.0)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from proofloop.errors import UserInputError

__all__ = ["Sample", "FirstErrorMetrics", "load_processbench", "parse_sample", "first_error_metrics",
           "first_error"]


@dataclass(frozen=True)
class Sample:
    id: str
    problem: str
    steps: list[str]
    label: int  # index of the first wrong step, -1: none


@dataclass(frozen=True)
class FirstErrorMetrics:
    """Counts and accuracies; an accuracy is None when its group is empty, and so is F1."""

    n_error: int
    n_correct: int
    hits_error: int
    hits_correct: int
    missing: int  # samples without a prediction (counted as wrong)

    @property
    def error_accuracy(self) -> float | None:
        return self.hits_error / self.n_error if self.n_error else None

    @property
    def correct_accuracy(self) -> float | None:
        return self.hits_correct / self.n_correct if self.n_correct else None

    @property
    def f1(self) -> float | None:
        a, b = self.error_accuracy, self.correct_accuracy
        if a is None or b is None:
            return None
        return 0.0 if a + b == 0 else 2 * a * b / (a + b)

    def as_dict(self) -> dict[str, Any]:
        return {"n_error": self.n_error, "n_correct": self.n_correct, "error_accuracy": self.error_accuracy,
                "correct_accuracy": self.correct_accuracy, "f1": self.f1, "missing": self.missing}


def parse_sample(obj: Any, where: str) -> Sample:
    """One object as a Sample; UserInputError naming `where` when it is not one."""
    if not isinstance(obj, dict):
        raise UserInputError(f"{where}: expected an object with problem, steps and label")
    problem, steps, label = obj.get("problem"), obj.get("steps"), obj.get("label")
    if not isinstance(problem, str) or not problem.strip():
        raise UserInputError(f"{where}: 'problem' must be a non-empty string")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise UserInputError(f"{where}: 'steps' must be a non-empty list of strings")
    if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(steps):
        raise UserInputError(f"{where}: 'label' must be -1 or a step index below {len(steps)}, got {label!r}")
    return Sample(str(obj.get("id", where)), problem, steps, label)


def load_processbench(path: str | Path) -> list[Sample]:
    """The samples of a ProcessBench-format file (.jsonl: one object a line; else a JSON list)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"cannot read {p}: {e}") from None
    try:
        if p.suffix == ".jsonl":
            objs = [(f"{p.name}:{i}", json.loads(line)) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        else:
            data = json.loads(text)
            if not isinstance(data, list):
                raise UserInputError(f"{p}: expected a JSON list of samples")
            objs = [(f"{p.name}[{i}]", o) for i, o in enumerate(data)]
    except json.JSONDecodeError as e:
        raise UserInputError(f"{p}: not valid JSON ({e})") from None
    samples = [parse_sample(o, where) for where, o in objs]
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise UserInputError(f"{p}: sample ids repeat")
    return samples


def first_error_metrics(samples: Iterable[Sample], predictions: Mapping[str, int]) -> FirstErrorMetrics:
    """ProcessBench's accuracies and F1 of `predictions` (sample id -> predicted index, -1 for
    none); a sample without a prediction counts as a miss."""
    n_err = n_cor = hit_err = hit_cor = missing = 0
    for s in samples:
        pred = predictions.get(s.id)
        missing += pred is None
        if s.label == -1:
            n_cor += 1
            hit_cor += pred == -1
        else:
            n_err += 1
            hit_err += pred == s.label
    return FirstErrorMetrics(n_err, n_cor, hit_err, hit_cor, missing)


def first_error(step_scores: Iterable[float | None], threshold: float = 0.5) -> int:
    """The index of the first step whose score is below `threshold`, -1 when none is; a step
    without a score (every judgement failed) is not called wrong."""
    for i, score in enumerate(step_scores):
        if score is not None and score < threshold:
            return i
    return -1

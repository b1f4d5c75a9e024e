"""The `law` pack: a fact pattern and a question; the answer is a reasoned legal analysis
(rule, application to the facts, conclusion), scored 1 / 0.5 / 0 with four issue classes.

Data: two LegalBench rule-application tasks (hearsay, 95 test items; personal jurisdiction,
50), read at run time from the folder the user names (`--data-dir`): either the folder that
holds `legalbench/` or `legalbench/` itself. Nothing of the data is part of this package.

Each item gives two candidate analyses for verifier agreement: one concluding the gold
answer (label 1) and one concluding the opposite (label 0). Both state the rule in our own
words and apply it in one sentence, so what separates them is whether the conclusion fits
the facts, which is what the verifier is asked to judge.

    >>> rows = pack.load("hearsay", "../shared/data")     # doctest: +SKIP
    >>> len(rows), rows[0]["human_grade"] + rows[1]["human_grade"]   # doctest: +SKIP
    (190, 1.0)
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from proofloop.errors import UserInputError
from proofloop.packs.base import IssueClass, Pack, Rubric, packaged_templates
from proofloop.packs.metrics import agreement

RUBRIC = Rubric(
    levels={1.0: "the right rule, every element applied correctly to the facts, a conclusion that follows",
            0.5: "the right rule and conclusion, with an element treated thinly or a minor misstatement",
            0.0: "a wrong or misapplied rule, a deciding element missing, or an unsupported conclusion"},
    issues=(IssueClass("wrong-rule", "the stated rule does not govern the question, or is stated wrongly"),
            IssueClass("misapplied-rule", "the rule is right but an element is applied wrongly to the facts"),
            IssueClass("unsupported-conclusion", "the conclusion does not follow from the application"),
            IssueClass("missing-element", "an element the rule requires is never addressed")))


# Per task: the question asked, and the rule as we state it (our wording).
TASKS: dict[str, dict[str, str]] = {
    "hearsay": {
        "question": "Is the evidence described above hearsay? Answer Yes or No, with your analysis.",
        "rule": "Hearsay is a statement (an oral or written assertion, or conduct the person intended as an "
                "assertion) made other than while testifying at the current trial, and offered in evidence to "
                "prove the truth of the matter it asserts.",
    },
    "personal_jurisdiction": {
        "question": "Does the court where the plaintiff sued have personal jurisdiction over the defendant? "
                    "Answer Yes or No, with your analysis.",
        "rule": "A court has personal jurisdiction over a defendant who is domiciled in its state, or who has "
                "contacts with the state that are purposeful and sufficient, where the claim arises out of or "
                "relates to those contacts.",
    },
}
APPLICATION = {"Yes": "On the facts stated, every element of the rule is satisfied.",
               "No": "On the facts stated, at least one element of the rule is not satisfied."}


def task_file(data_dir: Path, task: str) -> Path:
    """test.tsv of `task`, under data_dir/legalbench/ or data_dir/ itself."""
    for folder in (data_dir / "legalbench" / task, data_dir / task):
        if (folder / "test.tsv").is_file():
            return folder / "test.tsv"
    raise UserInputError(f"no LegalBench {task}/test.tsv under {data_dir} (nor under {data_dir / 'legalbench'})")


def read_task(data_dir: Path, task: str) -> list[dict[str, str]]:
    """The test items of one task: label (Yes/No), text, slice."""
    path = task_file(data_dir, task)
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for i, row in enumerate(rows, 1):
        if (row.get("label") or "").strip() not in APPLICATION or not (row.get("text") or "").strip():
            raise UserInputError(f"{path}: row {i} lacks a Yes/No label or a text")
    return rows


def problem_text(task: str, facts: str) -> str:
    return f"{facts.strip()}\n\n{TASKS[task]['question']}"


def candidate(task: str, conclusion: str) -> str:
    """A short analysis reaching `conclusion` ("Yes" or "No")."""
    return (f"Rule: {TASKS[task]['rule']}\n\nApplication: {APPLICATION[conclusion]}\n\n"
            f"Conclusion: {conclusion}.")


def load_task(task: str, data_dir: Path | None) -> list[dict[str, Any]]:
    """Rows for `bench pack`: per item a right and a wrong analysis, labelled 1 and 0."""
    if data_dir is None:
        raise UserInputError("the law pack reads LegalBench from a folder: pass --data-dir")
    out = []
    for i, row in enumerate(read_task(data_dir, task)):
        gold = row["label"].strip()
        for conclusion in ("Yes", "No"):
            out.append({"id": f"{task}-{i}-{conclusion.lower()}", "problem_id": f"{task}-{i}",
                        "statement": problem_text(task, row["text"]), "proof": candidate(task, conclusion),
                        "human_grade": 1.0 if conclusion == gold else 0.0, "max_points": 1.0,
                        "set": task, "category": (row.get("slice") or "").strip() or None, "gold": gold})
    return out


pack = Pack(name="law", description="legal analysis of a fact pattern: rule, application, conclusion",
            rubric=RUBRIC, templates=packaged_templates("law"),
            loaders={task: (lambda folder, limit, task=task: load_task(task, folder)) for task in TASKS},
            metrics=agreement)

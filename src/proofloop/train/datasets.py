"""Training sets for the three roles, from what proofloop already makes: the verifier set
(problem, proof, score) from `proofloop label` output, the meta-verifier set (problem, proof,
analysis, quality rating) and generator prompts; as rows in TRL's conversational layout and
in the layout verl's RL trainer reads from parquet.

An example is the prompt a role is trained on (the same messages the role is asked in at
inference, so a trained model sees its own protocol) and the target its reward is computed
against (train/rewards.py).

    >>> rows = [{"id": "p1", "problem": "Prove that 1 + 1 = 2.", "proof": "By definition.",
    ...          "status": "labelled", "score": 1.0},
    ...         {"id": "p2", "problem": "Prove it.", "proof": "No.", "status": "discarded", "score": None}]
    >>> [e.id for e in verifier_examples(rows)]        # only labelled proofs carry a target
    ['p1']
    >>> trl = trl_row(verifier_examples(rows)[0])
    >>> trl["prompt"][0]["role"], trl["target"], trl["task"]
    ('user', 1.0, 'verifier')
    >>> verl = verl_row(verifier_examples(rows)[0], data_source="proofloop/labels")
    >>> verl["reward_model"], verl["extra_info"]["id"]
    ({'style': 'model', 'ground_truth': 1.0}, 'p1')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from proofloop.errors import UserInputError
from proofloop.protocol import (Templates, generation_messages, meta_verification_messages,
                                proof_for_verification, verification_messages)
from proofloop.protocol.types import SCORES, Message

TASKS = ("verifier", "meta-verifier", "generator")


@dataclass(frozen=True)
class Example:
    """One training example: the role's prompt and, for the verifier and meta-verifier, the
    score its output is rewarded against (the generator's reward comes from the judges)."""

    id: str
    task: str
    prompt: list[Message]
    target: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _target(row: Mapping[str, Any], key: str, where: str) -> float:
    value = row.get(key)
    if value is None or float(value) not in SCORES:
        raise UserInputError(f"{where}: {key} must be 0, 0.5 or 1, got {value!r}")
    return float(value)


def verifier_examples(rows: Iterable[Mapping[str, Any]], templates: Templates | None = None) -> list[Example]:
    """Verifier examples from `proofloop label` rows: every labelled proof, its label the target
    (discarded, human and error rows carry no label and are left out)."""
    out = []
    for i, row in enumerate(rows, 1):
        if row.get("status") != "labelled":
            continue
        where = f"row {i} ({row.get('id')})"
        prompt = verification_messages(row["problem"], proof_for_verification(row["proof"]), templates)
        out.append(Example(str(row.get("id") or i), "verifier", prompt, _target(row, "score", where),
                           {"problem": row["problem"]}))
    return out


def meta_verifier_examples(rows: Iterable[Mapping[str, Any]], templates: Templates | None = None) -> list[Example]:
    """Meta-verifier examples from rows with problem, proof, analysis and an expert `rating` of
    the analysis (0, 0.5 or 1)."""
    out = []
    for i, row in enumerate(rows, 1):
        where = f"row {i} ({row.get('id')})"
        for key in ("problem", "proof", "analysis"):
            if not str(row.get(key) or "").strip():
                raise UserInputError(f"{where}: no {key}")
        prompt = meta_verification_messages(row["problem"], proof_for_verification(row["proof"]), row["analysis"],
                                            templates)
        out.append(Example(str(row.get("id") or i), "meta-verifier", prompt, _target(row, "rating", where),
                           {"problem": row["problem"]}))
    return out


def generator_examples(problems: Iterable[Mapping[str, Any]], templates: Templates | None = None) -> list[Example]:
    """Generator prompts: one per problem (`problem` or `statement`); its reward is judged."""
    out = []
    for i, row in enumerate(problems, 1):
        problem = row.get("problem") or row.get("statement")
        if not str(problem or "").strip():
            raise UserInputError(f"row {i} ({row.get('id')}): no problem")
        out.append(Example(str(row.get("id") or i), "generator", generation_messages(problem, templates), None,
                           {"problem": problem}))
    return out


def trl_row(example: Example) -> dict[str, Any]:
    """TRL's conversational layout: `prompt` is the message list; the other columns reach the
    reward functions as keyword arguments."""
    return {"id": example.id, "task": example.task, "prompt": example.prompt, "target": example.target,
            **example.extra}


def verl_row(example: Example, *, data_source: str) -> dict[str, Any]:
    """verl's RL dataset layout: the chat prompt, and what its reward function receives
    (`reward_model.ground_truth`, `extra_info`). The style is "model": a verifier judges."""
    return {"data_source": data_source, "prompt": example.prompt, "ability": "math",
            "reward_model": {"style": "model", "ground_truth": example.target},
            "extra_info": {"id": example.id, "task": example.task, **example.extra}}

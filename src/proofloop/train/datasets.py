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

The sets of a whole source (train/sources.py reads the store, label output, Hugging Face
datasets and files into proof rows): `verifier_set`, `meta_verifier_set`, `generator_set`;
`write_dataset` writes them as JSONL, parquet or a `save_to_disk` folder, in TRL's layout or
verl's (parquet only: verl's RL dataset reads parquet).

A meta-verifier target drawn from a label run is the rating a strict majority of the m ratings
asked for an analysis gave (failed ratings count as asked, not as votes). With no majority the
analysis is left out: a split vote is no reliable target.

    >>> a = {"id": "a1", "status": "ok", "score": 0.5, "text": "Here is my evaluation ...",
    ...      "meta": [{"status": "ok", "rating": 1.0}, {"status": "ok", "rating": 1.0},
    ...               {"status": "ok", "rating": 0.0}]}
    >>> [(e.id, e.target) for e in meta_verifier_set([{**rows[0], "analyses": [a], "m": 3}])]
    [('a1', 1.0)]
    >>> majority_rating([1.0, None, 0.0], m=3) is None      # one each and a failure: no majority
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proofloop.errors import UserInputError
from proofloop.extras import require
from proofloop.protocol import (Templates, generation_messages, meta_verification_messages,
                                proof_for_verification, verification_messages)
from proofloop.protocol.types import SCORES, Message

TASKS = ("verifier", "meta-verifier", "generator")
FORMATS = ("trl", "verl")


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
        proof = proof_for_verification(row["proof"])
        prompt = verification_messages(row["problem"], proof, templates)
        # The proof travels too: a reward with meta-verification rates the analysis of it.
        out.append(Example(str(row.get("id") or i), "verifier", prompt, _target(row, "score", where),
                           {"problem": row["problem"], "proof": proof}))
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


# ---------------------------------------------------------------------------- whole sources


def verifier_set(rows: Sequence[Mapping[str, Any]], templates: Templates | None = None, *,
                 origin: str = "the source") -> list[Example]:
    """The verifier set of proof rows: their labelled proofs (a file needs problem, proof and a
    `score` per row, or `proofloop label` output)."""
    for i, row in enumerate(rows, 1):
        if row.get("status") == "labelled" and not str(row.get("proof") or "").strip():
            raise UserInputError(f"{origin}: row {i} ({row.get('id')}) has no proof column "
                                 "(expected proof, solution or model_prediction.proof)")
    examples = verifier_examples(rows, templates)
    if not examples:
        raise UserInputError(f"{origin}: no labelled proofs (needs `proofloop label` output, a label run, "
                             "or rows with problem, proof and score)")
    return examples


def majority_rating(ratings: Sequence[float | None], m: int | None = None) -> float | None:
    """The rating a strict majority of the m asked gave (None entries: failed ratings)."""
    asked = max(m or 0, len(ratings))
    for rating in SCORES:
        if 2 * sum(1 for r in ratings if r == rating) > asked:
            return rating
    return None


def _rated_analyses(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A proof row's meta-verified analyses as meta-verifier rows with their majority rating."""
    out = []
    for a in row.get("analyses") or ():
        ratings = [r["rating"] if r.get("status") == "ok" else None for r in a.get("meta") or ()]
        rating = majority_rating(ratings, row.get("m")) if a.get("status") == "ok" and ratings else None
        if rating is not None and str(a.get("text") or "").strip():
            out.append({"id": a["id"], "problem": row["problem"], "proof": row["proof"], "analysis": a["text"],
                        "rating": rating})
    return out


def meta_verifier_set(rows: Sequence[Mapping[str, Any]], templates: Templates | None = None, *,
                      origin: str = "the source") -> list[Example]:
    """The meta-verifier set: rows with an expert `rating` of their `analysis` as they are, or
    the meta-verified analyses of label output / a run, rated by majority (module docstring)."""
    if rows and "rating" in rows[0]:
        if "analysis" not in rows[0]:
            raise UserInputError(f"{origin}: rows with a rating need an analysis column")
        return meta_verifier_examples(rows, templates)
    examples = meta_verifier_examples([a for row in rows for a in _rated_analyses(row)], templates)
    if not examples:
        raise UserInputError(f"{origin}: no rated analyses (needs rows with problem, proof, analysis and "
                             "rating, or label output whose analyses were meta-verified)")
    return examples


def generator_set(rows: Sequence[Mapping[str, Any]], templates: Templates | None = None) -> list[Example]:
    """Generator prompts: each distinct problem once, in first-seen order."""
    seen: dict[str, Mapping[str, Any]] = {}
    for row in rows:
        seen.setdefault(str(row.get("problem") or row.get("statement") or ""), row)
    return generator_examples(list(seen.values()), templates)


def dataset_rows(examples: Sequence[Example], fmt: str = "trl", *, data_source: str = "proofloop") -> list[dict]:
    """Rows in TRL's layout (trl_row) or verl's (verl_row, with its row index in extra_info)."""
    if fmt not in FORMATS:
        raise UserInputError(f"unknown format {fmt!r}: use {' or '.join(FORMATS)}")
    if fmt == "trl":
        return [trl_row(e) for e in examples]
    rows = [verl_row(e, data_source=data_source) for e in examples]
    for i, row in enumerate(rows):
        row["extra_info"]["index"] = i
    return rows


def write_dataset(examples: Sequence[Example], out: str | Path, fmt: str = "trl", *,
                  data_source: str = "proofloop") -> Path:
    """Write examples to `out`: .jsonl, .parquet, or else a `save_to_disk` folder."""
    if not examples:
        raise UserInputError("no examples to write")
    return write_rows(dataset_rows(examples, fmt, data_source=data_source), out, verl=fmt == "verl")


def write_rows(rows: Sequence[Mapping[str, Any]], out: str | Path, *, verl: bool = False) -> Path:
    """Rows as .jsonl, .parquet or a `save_to_disk` folder (any other name); verl: parquet only."""
    path = Path(out)
    suffix = path.suffix.lower()
    if verl and suffix != ".parquet":
        raise UserInputError(f"{path}: verl reads parquet; name the output *.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".jsonl":
        tmp = path.with_name(path.name + ".tmp")  # whole or not at all
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        tmp.replace(path)
    elif suffix == ".parquet":
        pq = require("pyarrow.parquet", "train", "writing a parquet dataset")
        pq.write_table(arrow_table(rows), path)
    elif suffix:
        raise UserInputError(f"{path}: unknown output type {suffix!r} (use .jsonl, .parquet, or a folder name)")
    else:
        datasets = require("datasets", "train", "writing a Hugging Face dataset")
        datasets.Dataset.from_list([dict(r) for r in rows]).save_to_disk(str(path))
    return path


def arrow_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    """An arrow table of rows; score columns that are all None (generator rows) are float64,
    not arrow's null type, so a file keeps one schema whichever task it holds."""
    pa = require("pyarrow", "train", "writing a parquet dataset")
    table = pa.Table.from_pylist([dict(r) for r in rows])
    if "target" in table.column_names and pa.types.is_null(table.schema.field("target").type):
        table = table.set_column(table.column_names.index("target"), "target", table["target"].cast(pa.float64()))
    if "reward_model" in table.column_names:
        reward = pa.struct([("style", pa.string()), ("ground_truth", pa.float64())])
        table = table.set_column(table.column_names.index("reward_model"), "reward_model",
                                 table["reward_model"].cast(reward))
    return table

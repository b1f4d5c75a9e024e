"""Where training sets come from, read into one row layout: the run store (a finished `label`,
`prove` or `bench` run), `proofloop label` output (JSONL / parquet), a Hugging Face dataset
(a `save_to_disk` folder, or `hf:NAME[:SPLIT]` from the hub, loaded only when named) and
plain files (JSONL / JSON / CSV / parquet).

A *proof row* is what every source becomes (a `proofloop label` output row is already one):

    {"id", "problem", "proof",            # proof: the text as written (a generator output keeps
                                          #   its self evaluation; the verifier is shown only
                                          #   the solution, protocol.proof_for_verification)
     "status", "score",                   # "labelled" and the label, or another status, None
     "analyses": [{"id", "status", "score", "text", "meta": [{"id", "status", "rating"}]}],
     "m": meta ratings asked per issue-reporting analysis (None: unknown)}

plus any other columns a file had (`analysis`, `rating` for a meta-verifier file). Columns
named otherwise are found under their usual aliases: problem = question / statement, proof =
solution / model_prediction.proof (the released DeepSeekMath-V2 outputs).

In the store, a `label` run's labels are not stored as such: they are decided again from its
stored analyses and ratings by the run's own rule (label.decide), which is what wrote them.
Proofs of other runs carry their analyses and ratings but no label (status "unlabelled").

    >>> import tempfile, pathlib, json
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "released.jsonl"
    >>> _ = path.write_text(json.dumps({"question": "Prove P.", "model_prediction": {"proof": "Q."}}) + "\\n")
    >>> [(r["problem"], r["proof"], r["status"]) for r in read_source(path)]
    [('Prove P.', 'Q.', 'unlabelled')]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from proofloop.errors import UserInputError
from proofloop.extras import require
from proofloop.label import LabelRule, Vote, decide
from proofloop.rows import read_rows
from proofloop.store import RunStatus, Store

ALIASES = {"problem": ("problem", "question", "statement"),
           "proof": ("proof", "solution", "model_prediction.proof")}
HUB_PREFIX = "hf:"
STORE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def read_source(src: str | os.PathLike[str] | None, *, run: str | None = None,
                db: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Proof rows of a source. `run`: a run of the store `db` (or `src` when it is a store
    file; default Store.default_path()); else `src` is a file, a dataset folder or hf:NAME."""
    if run is not None:
        if src is not None and str(src).endswith(STORE_SUFFIXES):
            db = src
        elif src is not None:
            raise UserInputError(f"--run reads the run store: --from must be a store file (.db), not {src}")
        with Store(db or Store.default_path()) as store:
            return store_rows(store, run)
    if src is None:
        raise UserInputError("no source: give --from FILE|DIR|hf:NAME, or --run RUN")
    text = str(src)
    if text.startswith(HUB_PREFIX):
        rows, origin = hub_rows(text[len(HUB_PREFIX):]), text
    elif Path(text).is_dir():
        rows, origin = disk_rows(Path(text)), text
    elif text.endswith(STORE_SUFFIXES):
        raise UserInputError(f"{text} is a run store: name the run with --run RUN")
    elif not Path(text).is_file():
        raise UserInputError(f"source not found: {text} (a file, a save_to_disk folder, or hf:NAME)")
    else:
        rows, origin = read_rows(text), text
    return normalise(rows, origin)


def disk_rows(path: Path) -> list[dict[str, Any]]:
    """A dataset saved with `save_to_disk` (a Dataset, or a DatasetDict's "train" split)."""
    datasets = require("datasets", "train", "reading a Hugging Face dataset")
    try:
        data = datasets.load_from_disk(str(path))
    except FileNotFoundError as e:
        raise UserInputError(f"{path}: not a dataset saved with save_to_disk ({e})") from e
    return _split_rows(data, "train", str(path))


def hub_rows(spec: str) -> list[dict[str, Any]]:
    """hf:NAME or hf:NAME:SPLIT (default train), loaded with datasets.load_dataset."""
    name, _, split = spec.partition(":")
    if not name:
        raise UserInputError("hf: needs a dataset name, e.g. hf:owner/name:train")
    datasets = require("datasets", "train", "loading a Hugging Face dataset")
    return _split_rows(datasets.load_dataset(name, split=split or "train"), split or "train", f"hf:{spec}")


def _split_rows(data: Any, split: str, origin: str) -> list[dict[str, Any]]:
    if isinstance(data, dict):  # a DatasetDict: one of its splits
        splits = list(data)
        if split not in splits and len(splits) != 1:
            raise UserInputError(f"{origin}: no split {split!r} (splits: {', '.join(splits)})")
        data = data[split if split in splits else splits[0]]
    return [dict(row) for row in data]


def _lookup(row: Mapping[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def normalise(rows: Sequence[Mapping[str, Any]], origin: str) -> list[dict[str, Any]]:
    """Rows of a file or dataset as proof rows: aliases resolved, defaults filled."""
    if not rows:
        raise UserInputError(f"{origin}: no rows")
    out = []
    for i, row in enumerate(rows, 1):
        new = dict(row)
        for name, aliases in ALIASES.items():
            if new.get(name) is None:
                new[name] = next((v for a in aliases if (v := _lookup(row, a)) is not None), None)
        if not str(new["problem"] or "").strip():
            raise UserInputError(f"{origin}: row {i} has no problem (columns: {', '.join(sorted(row))}; "
                                 f"expected one of {', '.join(ALIASES['problem'])})")
        provenance = row.get("provenance") if isinstance(row.get("provenance"), Mapping) else {}
        new.setdefault("id", str(i))
        new["id"] = str(new["id"])
        new.setdefault("status", "labelled" if new.get("score") is not None else "unlabelled")
        new.setdefault("score", None)
        new.setdefault("analyses", [])
        new.setdefault("m", provenance.get("m"))
        out.append(new)
    return out


def label_rule(config: Mapping[str, Any]) -> LabelRule | None:
    """The rule a stored label run decided with (None: the run is not a label run)."""
    if not isinstance(config.get("rule"), Mapping):
        return None
    return LabelRule(**{"lowest": "valid", **config["rule"]})  # runs stored before `lowest` existed


def store_rows(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Proof rows of a finished run: each proof with its analyses and their ratings; a label
    run's proofs with the label its rule decides from them."""
    run = store.get_run(run_id)
    if run is None:
        raise UserInputError(f"no run {run_id!r} in {store.where}")
    if run.status is not RunStatus.FINISHED:
        raise UserInputError(f"run {run_id} is {run.status.value}: finish it first (proofloop resume {run_id})")
    problems = {p.id: p.text for p in store.problems(run_id)}
    ratings: dict[str, list[dict[str, Any]]] = {}
    for m in store.meta_verifications(run_id):
        ratings.setdefault(m.verification_id, []).append({"id": m.id, "status": m.status, "rating": m.rating})
    analyses: dict[str, list[dict[str, Any]]] = {}
    for v in store.verifications(run_id):
        analyses.setdefault(v.proof_id, []).append({"id": v.id, "status": v.status, "score": v.score,
                                                    "text": v.analysis, "meta": ratings.get(v.id, [])})
    rule = label_rule(run.config)
    rows = []
    for p in sorted(store.proofs(run_id), key=lambda p: p.meta.get("index", 0)):
        mine = analyses.get(p.id, [])
        status, score = "unlabelled", None
        if rule is not None:
            decision = decide(votes(mine), rule)
            status, score = decision.status.value, decision.score
        rows.append({"id": p.id, "problem": problems[p.problem_id], "proof": p.raw, "status": status,
                     "score": score, "analyses": mine, "m": rule.m if rule else None, "run_id": run_id})
    if not rows:
        raise UserInputError(f"run {run_id} has no proofs")
    return rows


def votes(analyses: Sequence[Mapping[str, Any]]) -> list[Vote]:
    """Analyses of a proof row as the label rule's votes (anything not parsed OK fails)."""
    return [Vote(a["score"] if a["status"] == "ok" else None,
                 tuple(r["rating"] if r["status"] == "ok" else None for r in a.get("meta") or ()))
            for a in analyses]

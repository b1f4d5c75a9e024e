"""Benchmark problems and expert-graded proofs, read from files the user points at.

Nothing here is committed or downloaded: every loader takes a data directory (by default
$PROOFLOOP_DATA_DIR, else ../shared/data relative to the working directory) laid out as
`imobench/proofbench_v2.csv`, `dsm2/inputs/*.json` and `dsm2/outputs/*.jsonl`.

Each dataset's grade scale is written down once in GRADE_SCALES and turned into a number in
[0, 1] once, by `normalise_grade`; everything downstream works on the normalised value.

    >>> from proofloop.bench.datasets import load_dataset, normalise_grade
    >>> normalise_grade(18, 21)                                        # a CMO grade
    0.8571428571428571
    >>> problems = load_dataset("imo2025", "../shared/data")           # doctest: +SKIP
    >>> problems[0].id, problems[0].max_points                         # doctest: +SKIP
    ('IMO2025-1', 7.0)
    >>> proofs = load_dataset("dsm2-outputs", "../shared/data")        # doctest: +SKIP
    >>> len(proofs), proofs[0].set_name, proofs[0].human_normalised    # doctest: +SKIP
    (84, 'CMO2024', 1.0)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, computed_field, model_validator

from proofloop.errors import UserInputError
from proofloop.extras import require
from proofloop.rows import read_rows

# Maximum points per problem for every dataset we know. IMO-ProofBench and the IMO use 0-7,
# the Chinese MO 0-21 and the Putnam 0-10 (the scales of the experts' grades in dsm2/outputs).
GRADE_SCALES: dict[str, float] = {
    "IMO-ProofBench-Basic": 7.0,
    "IMO-ProofBench-Advanced": 7.0,
    "IMO2025": 7.0,
    "CMO2024": 21.0,
    "CMO2025": 21.0,
    "Putnam2024": 10.0,
}

# The set names of the released DeepSeekMath-V2 outputs (dsm2/outputs/<name>.jsonl).
DSM2_OUTPUT_SETS = ("IMO-ProofBench-Basic", "IMO-ProofBench-Advanced", "IMO2025", "CMO2024", "Putnam2024")
DSM2_CONTESTS = ("IMO2025", "CMO2024", "CMO2025", "Putnam2024")

PROOFBENCH_FILE = Path("imobench") / "proofbench_v2.csv"


def normalise_grade(grade: float, max_points: float) -> float:
    """The one place a grade on a dataset's scale becomes a number in [0, 1]."""
    if not max_points > 0:
        raise ValueError(f"max_points must be positive, got {max_points}")
    if not (0 <= grade <= max_points):
        raise ValueError(f"grade {grade} is outside the scale 0..{max_points:g}")
    return grade / max_points


def grade_scale(set_name: str) -> float:
    """Maximum points of a known dataset or contest; UserInputError for an unknown one."""
    try:
        return GRADE_SCALES[set_name]
    except KeyError:
        raise UserInputError(
            f"no grade scale known for {set_name!r}; known: {', '.join(GRADE_SCALES)}"
        ) from None


class Problem(BaseModel):
    """One benchmark problem. Optional fields are None when the source has no such column."""

    id: str
    statement: str
    reference_solution: str | None = None
    grading_guidelines: str | None = None
    category: str | None = None
    level: str | None = None
    source: str | None = None
    short_answer: str | None = None
    max_points: float = 7.0
    meta: dict[str, Any] = Field(default_factory=dict)


class GradedProof(BaseModel):
    """A proof with an expert's grade on its dataset's scale (and the automatic rating, if any)."""

    problem_id: str
    statement: str
    proof: str
    human_grade: float
    max_points: float
    auto_rating: float | None = None  # e.g. the mean of 64 verifier scores, in [0, 1]
    set_name: str
    category: str | None = None
    level: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_ranges(self) -> GradedProof:
        normalise_grade(self.human_grade, self.max_points)  # raises on an out-of-scale grade
        if self.auto_rating is not None and not (0.0 <= self.auto_rating <= 1.0):
            raise ValueError(f"automatic rating {self.auto_rating} is outside [0, 1]")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def human_normalised(self) -> float:
        return normalise_grade(self.human_grade, self.max_points)


# --------------------------------------------------------------------------- file reading


def default_data_dir() -> Path:
    env = os.environ.get("PROOFLOOP_DATA_DIR")
    return Path(env) if env else Path.cwd() / ".." / "shared" / "data"


def _resolve(data_dir: str | os.PathLike[str] | None) -> Path:
    return Path(data_dir) if data_dir is not None else default_data_dir()


def _text(value: Any) -> str | None:
    """Blank cells, NaN and the string 'null' (dsm2 inputs use it for 'no answer') become None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    s = str(value)
    return None if not s.strip() or s.strip() == "null" else s


# --------------------------------------------------------------------------- built-in datasets


def load_proofbench(data_dir: str | os.PathLike[str] | None = None, subset: str | None = None) -> list[Problem]:
    """IMO-ProofBench problems; subset 'basic', 'advanced' or None for all 60."""
    if subset not in (None, "basic", "advanced"):
        raise UserInputError(f"unknown IMO-ProofBench subset {subset!r}: use 'basic' or 'advanced'")
    path = _resolve(data_dir) / PROOFBENCH_FILE
    problems = []
    for row in read_rows(path):
        pid = _text(row.get("Problem ID"))
        if pid is None or _text(row.get("Problem")) is None:
            raise UserInputError(f"{path}: a row lacks 'Problem ID' or 'Problem'")
        if subset is not None and not pid.lower().startswith(f"pb-{subset}-"):
            continue
        problems.append(
            Problem(
                id=pid,
                statement=row["Problem"],
                reference_solution=_text(row.get("Solution")),
                grading_guidelines=_text(row.get("Grading guidelines")),
                category=_text(row.get("Category")),
                level=_text(row.get("Level")),
                source=_text(row.get("Source")),
                short_answer=_text(row.get("Short Answer")),
                max_points=GRADE_SCALES["IMO-ProofBench-Basic"],
                meta={"set": "IMO-ProofBench-" + ("Basic" if "basic" in pid.lower() else "Advanced")},
            )
        )
    return problems


def load_contest(contest: str, data_dir: str | os.PathLike[str] | None = None) -> list[Problem]:
    """A contest from dsm2/inputs/<contest>.json (IMO2025, CMO2024, CMO2025, Putnam2024)."""
    if contest not in DSM2_CONTESTS:
        raise UserInputError(f"unknown contest {contest!r}; known: {', '.join(DSM2_CONTESTS)}")
    path = _resolve(data_dir) / "dsm2" / "inputs" / f"{contest}.json"
    problems = []
    for row in read_rows(path):
        try:
            problems.append(
                Problem(
                    id=str(row["problem_idx"]),
                    statement=row["question"],
                    short_answer=_text(row.get("answer")),
                    source=contest,
                    max_points=grade_scale(contest),
                    meta={"index": row.get("id"), "contest": row.get("contest", contest)},
                )
            )
        except (KeyError, ValidationError) as e:
            raise UserInputError(f"{path}: malformed row {row.get('problem_idx', '?')}: {e}") from e
    return problems


def load_dsm2_outputs(
    data_dir: str | os.PathLike[str] | None = None, sets: Iterable[str] | None = None
) -> list[GradedProof]:
    """The released DeepSeekMath-V2 final proofs with expert grades (84 over five sets)."""
    chosen = list(sets) if sets is not None else list(DSM2_OUTPUT_SETS)
    unknown = [s for s in chosen if s not in DSM2_OUTPUT_SETS]
    if unknown:
        raise UserInputError(f"unknown dsm2 output set(s) {unknown}; known: {', '.join(DSM2_OUTPUT_SETS)}")
    base = _resolve(data_dir) / "dsm2" / "outputs"
    proofs = []
    for set_name in chosen:
        path = base / f"{set_name}.jsonl"
        for lineno, row in enumerate(read_rows(path), 1):
            try:
                pred = row["model_prediction"]
                extra = {k: row[k] for k in ("solution", "grading guidelines", "source") if k in row}
                proofs.append(
                    GradedProof(
                        problem_id=str(row["problem_idx"]),
                        statement=row["question"],
                        proof=pred["proof"],
                        human_grade=float(pred["human_rating"]),
                        max_points=grade_scale(set_name),
                        auto_rating=pred.get("average_automatic_rating"),
                        set_name=set_name,
                        category=_text(row.get("type")),
                        level=_text(row.get("level")),
                        meta=extra,
                    )
                )
            except (KeyError, TypeError, ValueError) as e:  # ValidationError is a ValueError
                why = e.errors()[0]["msg"] if isinstance(e, ValidationError) else repr(e)
                raise UserInputError(f"{path}:{lineno}: malformed graded proof: {why}") from e
    return proofs


# --------------------------------------------------------------------------- generic loaders

_PROBLEM_FIELDS = ("id", "statement", "reference_solution", "grading_guidelines", "category",
                   "level", "source", "short_answer", "max_points")
# Used only when the caller maps nothing to the field and the file has no column of that name.
_ALIASES = {"statement": ("question", "problem")}


def parse_field_mapping(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """['statement=question', 'id=problem_idx'] (CLI --field options) -> {'statement': 'question', ...}."""
    if items is None:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else (_split_pair(s) for s in items)
    mapping = {}
    for target, column in pairs:
        if target not in _PROBLEM_FIELDS:
            raise UserInputError(f"unknown problem field {target!r} in mapping; fields: {', '.join(_PROBLEM_FIELDS)}")
        mapping[target] = column
    return mapping


def _split_pair(item: str) -> tuple[str, str]:
    target, sep, column = item.partition("=")
    if not sep or not target.strip() or not column.strip():
        raise UserInputError(f"bad field mapping {item!r}: expected FIELD=COLUMN, e.g. statement=question")
    return target.strip(), column.strip()


def rows_to_problems(
    rows: Sequence[Mapping[str, Any]],
    fields: Iterable[str] | Mapping[str, str] | None = None,
    *,
    max_points: float = 7.0,
    origin: str = "rows",
) -> list[Problem]:
    """Map arbitrary rows onto Problems. Columns not mapped to a field are kept in `meta`.

    Without an `id` column or mapping, the 1-based row number is the id.
    """
    mapping = parse_field_mapping(fields)
    columns = set(rows[0]) if rows else set()
    for target in _PROBLEM_FIELDS:
        if target in mapping or target in columns:
            mapping.setdefault(target, target)
        else:
            for alias in _ALIASES.get(target, ()):
                if alias in columns:
                    mapping[target] = alias
                    break
    if "statement" not in mapping:
        raise UserInputError(
            f"{origin}: no problem statement column; map one with --field statement=COLUMN "
            f"(columns: {', '.join(sorted(columns)) or 'none'})"
        )
    used = set(mapping.values())
    problems = []
    for i, row in enumerate(rows, 1):
        missing = [c for c in mapping.values() if c not in row]
        if missing:
            raise UserInputError(f"{origin}: row {i} lacks column(s) {missing}")
        values: dict[str, Any] = {t: _text(row[c]) for t, c in mapping.items()}
        if values["statement"] is None:
            raise UserInputError(f"{origin}: row {i} has an empty statement")
        values["id"] = values.get("id") or str(i)
        try:
            values["max_points"] = float(values["max_points"]) if values.get("max_points") else max_points
        except ValueError:
            raise UserInputError(f"{origin}: row {i}: max_points {values['max_points']!r} is not a number") from None
        values["meta"] = {k: v for k, v in row.items() if k not in used}
        problems.append(Problem(**values))
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        dup = sorted({x for x in ids if ids.count(x) > 1})[:5]
        raise UserInputError(f"{origin}: duplicate problem ids {dup}; map a unique column with --field id=COLUMN")
    return problems


def load_table(
    path: str | os.PathLike[str],
    fields: Iterable[str] | Mapping[str, str] | None = None,
    *,
    max_points: float = 7.0,
) -> list[Problem]:
    """Problems from any JSONL/JSON/CSV/parquet file, e.g. fields=['statement=question', 'id=problem_idx']."""
    return rows_to_problems(read_rows(path), fields, max_points=max_points, origin=str(path))


def load_hf_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    revision: str | None = None,
    split: str = "train",
    fields: Iterable[str] | Mapping[str, str] | None = None,
    max_points: float = 7.0,
) -> list[Problem]:
    """Problems from a Hugging Face dataset: a directory written by `save_to_disk` (offline), or a
    Hub name, which needs a pinned `revision` (commit hash or tag) so results are reproducible."""
    hf = require("datasets", "bench", "loading a Hugging Face dataset")
    local = Path(name_or_path)
    if local.is_dir():
        try:
            ds = hf.load_from_disk(str(local))
        except (FileNotFoundError, ValueError) as e:
            raise UserInputError(f"{local}: not a saved Hugging Face dataset ({e})") from e
        if isinstance(ds, hf.DatasetDict):
            if split not in ds:
                raise UserInputError(f"{local}: no split {split!r}; splits: {', '.join(ds)}")
            ds = ds[split]
    else:
        if not revision:
            raise UserInputError(f"Hugging Face dataset {name_or_path!r} needs a pinned revision (--revision COMMIT)")
        ds = hf.load_dataset(str(name_or_path), revision=revision, split=split)
    return rows_to_problems(ds.to_list(), fields, max_points=max_points, origin=str(name_or_path))


# --------------------------------------------------------------------------- registry

DATASETS: dict[str, str] = {
    "proofbench": "IMO-ProofBench Basic + Advanced (60 problems, 0-7)",
    "proofbench-basic": "IMO-ProofBench Basic (30 problems, 0-7)",
    "proofbench-advanced": "IMO-ProofBench Advanced (30 problems, 0-7)",
    "imo2025": "IMO 2025 (6 problems, 0-7)",
    "cmo2024": "CMO 2024 (6 problems, 0-21)",
    "cmo2025": "CMO 2025 (6 problems, 0-21)",
    "putnam2024": "Putnam 2024 (12 problems, 0-10)",
    "dsm2-outputs": "DeepSeekMath-V2 final proofs with expert grades (84 graded proofs)",
}


def load_dataset(
    name_or_path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None, **options: Any
) -> list[Problem] | list[GradedProof]:
    """Load a dataset by registry name (see DATASETS), 'hf:NAME' (needs revision=), or a path:
    a JSONL/JSON/CSV/parquet file (options: fields, max_points) or a saved HF dataset directory.

    Returns Problems, except 'dsm2-outputs' (option sets=[...]) which returns GradedProofs.
    """
    name = str(name_or_path)
    key = name.lower()
    if key in DATASETS:
        allowed = {"sets"} if key == "dsm2-outputs" else set()
        extra = set(options) - allowed
        if extra:
            raise UserInputError(f"dataset {key!r} takes no option(s) {sorted(extra)}")
        if key == "dsm2-outputs":
            return load_dsm2_outputs(data_dir, **options)
        if key.startswith("proofbench"):
            return load_proofbench(data_dir, key.partition("-")[2] or None)
        contest = {c.lower(): c for c in DSM2_CONTESTS}[key]
        return load_contest(contest, data_dir)
    path = Path(name)
    hf_name = name[3:] if name.startswith("hf:") else (path if path.is_dir() else None)
    allowed = {"revision", "split", "fields", "max_points"} if hf_name is not None else {"fields", "max_points"}
    extra = set(options) - allowed
    if extra and (hf_name is not None or path.is_file()):
        raise UserInputError(f"{name}: unexpected option(s) {sorted(extra)}; allowed: {sorted(allowed)}")
    if hf_name is not None:
        return load_hf_dataset(hf_name, **options)
    if path.is_file():
        return load_table(path, **options)
    raise UserInputError(
        f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}, hf:NAME, or a path to a .jsonl/.csv/.parquet file"
    )

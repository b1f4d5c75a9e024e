"""Benchmark loaders: the shared data files (skipped when ../shared/data is absent) and the
generic JSONL/CSV/parquet/Hugging Face loaders on files written here."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from proofloop.bench.datasets import (
    DATASETS,
    GRADE_SCALES,
    GradedProof,
    Problem,
    default_data_dir,
    load_dataset,
    load_dsm2_outputs,
    load_hf_dataset,
    load_table,
    normalise_grade,
    parse_field_mapping,
)
from proofloop.errors import UserInputError

DATA = Path(os.environ.get("PROOFLOOP_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(not (DATA / "dsm2").is_dir(), reason=f"shared data not found at {DATA}")


# --------------------------------------------------------------------------- scales


def test_grade_scales_and_normalisation():
    assert GRADE_SCALES["IMO2025"] == 7 and GRADE_SCALES["CMO2024"] == 21 and GRADE_SCALES["Putnam2024"] == 10
    assert normalise_grade(7, 7) == 1.0
    assert normalise_grade(0, 21) == 0.0
    assert normalise_grade(8, 10) == 0.8
    for grade, top in ((8, 7), (-1, 7), (11, 10)):
        with pytest.raises(ValueError, match="outside the scale"):
            normalise_grade(grade, top)
    with pytest.raises(ValueError):
        normalise_grade(1, 0)


def test_graded_proof_validates_and_normalises_once():
    g = GradedProof(problem_id="x", statement="s", proof="p", human_grade=18, max_points=21, set_name="CMO2024")
    assert g.human_normalised == pytest.approx(6 / 7)
    assert g.model_dump()["human_normalised"] == pytest.approx(6 / 7)  # serialised with the record
    with pytest.raises(ValidationError):
        GradedProof(problem_id="x", statement="s", proof="p", human_grade=9, max_points=7, set_name="IMO2025")
    with pytest.raises(ValidationError):
        GradedProof(problem_id="x", statement="s", proof="p", human_grade=7, max_points=7, set_name="IMO2025",
                    auto_rating=1.5)


# --------------------------------------------------------------------------- shared data


@needs_data
def test_proofbench_subsets():
    basic = load_dataset("proofbench-basic", DATA)
    advanced = load_dataset("proofbench-advanced", DATA)
    both = load_dataset("proofbench", DATA)
    assert len(basic) == 30 and len(advanced) == 30 and len(both) == 60
    assert [p.id for p in basic][:2] == ["PB-Basic-001", "PB-Basic-002"]
    assert all(p.id.startswith("PB-Advanced-") for p in advanced)
    p = basic[0]
    assert p.max_points == 7 and p.category == "Algebra" and p.level == "IMO-easy"
    assert p.reference_solution and p.grading_guidelines and "(Partial)" in p.grading_guidelines
    assert p.source == "(Modified) IMO 2019, P1" and p.short_answer.startswith("$f(x) = 0$")
    assert basic[1].short_answer is None  # a blank cell is no answer, not " "
    assert {p.category for p in both} == {"Algebra", "Combinatorics", "Number theory", "Geometry"}
    assert {p.level for p in both} == {"pre-IMO", "IMO-easy", "IMO-medium", "IMO-hard"}


@needs_data
@pytest.mark.parametrize(("name", "count", "top", "first"), [
    ("imo2025", 6, 7, "IMO2025-1"), ("cmo2024", 6, 21, "CMO2024-1"),
    ("cmo2025", 6, 21, "CMO2025-1"), ("putnam2024", 12, 10, "Putnam2024-A1"),
])
def test_contests(name, count, top, first):
    problems = load_dataset(name, DATA)
    assert len(problems) == count and problems[0].id == first
    assert all(isinstance(p, Problem) and p.max_points == top and p.statement for p in problems)
    assert len({p.id for p in problems}) == count
    if name == "cmo2024":  # the file says "null" where a problem has no short answer
        assert [p.short_answer is None for p in problems] == [True, True, True, False, True, False]
    if name == "imo2025":
        assert problems[0].short_answer == "k = 0, 1, 3 for all n"
        assert problems[0].meta["index"] == 1


@needs_data
def test_dsm2_outputs():
    proofs = load_dataset("dsm2-outputs", DATA)
    assert len(proofs) == 84 and all(isinstance(p, GradedProof) for p in proofs)
    counts = {}
    for p in proofs:
        counts[p.set_name] = counts.get(p.set_name, 0) + 1
        assert 0 <= p.human_normalised <= 1 and p.proof
        assert (p.auto_rating * 128).is_integer()  # a mean of 64 scores in {0, 0.5, 1}
    assert counts == {"IMO-ProofBench-Basic": 30, "IMO-ProofBench-Advanced": 30, "IMO2025": 6,
                      "CMO2024": 6, "Putnam2024": 12}
    by_id = {p.problem_id: p for p in proofs}
    assert by_id["IMO2025-6"].auto_rating == 1.0 and by_id["IMO2025-6"].human_grade == 0
    assert by_id["CMO2024-6"].max_points == 21 and by_id["CMO2024-6"].human_normalised == pytest.approx(9 / 21)
    assert by_id["Putnam2024-B5"].human_normalised == pytest.approx(0.8)
    assert by_id["PB-Advanced-001"].category == "Algebra" and by_id["PB-Advanced-001"].level == "IMO-easy"
    assert "grading guidelines" in by_id["PB-Advanced-001"].meta
    only = load_dsm2_outputs(DATA, sets=["IMO2025"])
    assert [p.set_name for p in only] == ["IMO2025"] * 6
    with pytest.raises(UserInputError, match="unknown dsm2 output set"):
        load_dsm2_outputs(DATA, sets=["CMO2025"])  # inputs only: no released outputs


@needs_data
def test_generic_loader_on_real_inputs():
    problems = load_dataset(DATA / "dsm2" / "inputs" / "IMO2025.json",
                            fields=["statement=question", "id=problem_idx", "short_answer=answer"])
    assert [p.id for p in problems][:2] == ["IMO2025-1", "IMO2025-2"]
    assert problems[0].meta["contest"] == "IMO2025" and problems[0].meta["id"] == 1  # unmapped columns kept


# --------------------------------------------------------------------------- registry and data dir


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PROOFLOOP_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("PROOFLOOP_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert default_data_dir().resolve() == (tmp_path.parent / "shared" / "data").resolve()


def test_default_data_dir_is_used(monkeypatch, tmp_path):
    inputs = tmp_path / "dsm2" / "inputs"
    inputs.mkdir(parents=True)
    (inputs / "IMO2025.json").write_text(json.dumps(
        [{"id": 1, "question": "Prove 1+1=2.", "answer": "null", "contest": "IMO2025", "problem_idx": "IMO2025-1"}]))
    monkeypatch.setenv("PROOFLOOP_DATA_DIR", str(tmp_path))
    [p] = load_dataset("IMO2025")
    assert p.id == "IMO2025-1" and p.short_answer is None and p.source == "IMO2025"


def test_missing_files_and_unknown_names(tmp_path):
    for name in DATASETS:
        with pytest.raises(UserInputError) as e:
            load_dataset(name, tmp_path)
        assert "not found" in str(e.value) and "\n" not in str(e.value) and str(tmp_path) in str(e.value)
    with pytest.raises(UserInputError, match="unknown dataset"):
        load_dataset("no-such-set", tmp_path)
    with pytest.raises(UserInputError, match="takes no option"):
        load_dataset("imo2025", tmp_path, sets=["x"])


# --------------------------------------------------------------------------- generic files

ROWS = [
    {"problem_idx": "A-1", "question": "Show that 2 is prime.", "answer": "yes", "topic": "NT"},
    {"problem_idx": "A-2", "question": "Show that 4 is not prime.", "answer": "", "topic": "NT"},
]
FIELDS = ["id=problem_idx", "statement=question", "short_answer=answer", "category=topic"]


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_generic_loader_formats(tmp_path, suffix):
    path = _write(tmp_path / f"p{suffix}", ROWS)
    problems = load_dataset(path, fields=FIELDS, max_points=10)
    assert [p.id for p in problems] == ["A-1", "A-2"]
    assert problems[0].statement == "Show that 2 is prime." and problems[0].category == "NT"
    assert problems[0].short_answer == "yes" and problems[1].short_answer is None
    assert problems[0].max_points == 10 and problems[0].meta == {}


def test_generic_loader_defaults_and_errors(tmp_path):
    plain = _write(tmp_path / "plain.jsonl", [{"question": "Q1", "extra": 1}, {"question": "Q2", "extra": 2}])
    problems = load_table(plain)  # 'question' is taken as the statement; ids are row numbers
    assert [(p.id, p.statement, p.meta) for p in problems] == [("1", "Q1", {"extra": 1}), ("2", "Q2", {"extra": 2})]
    assert parse_field_mapping(["statement = question"]) == {"statement": "question"}
    with pytest.raises(UserInputError, match="FIELD=COLUMN"):
        parse_field_mapping(["statement"])
    with pytest.raises(UserInputError, match="unknown problem field"):
        load_table(plain, ["answer=extra"])
    with pytest.raises(UserInputError, match="lacks column"):
        load_table(plain, ["statement=nope"])
    with pytest.raises(UserInputError, match="no problem statement column"):
        load_table(_write(tmp_path / "x.jsonl", [{"text": "Q"}]))
    with pytest.raises(UserInputError, match="duplicate problem ids"):
        load_table(_write(tmp_path / "d.jsonl", [{"id": 1, "q": "a"}, {"id": 1, "q": "b"}]), ["statement=q"])
    with pytest.raises(UserInputError, match="empty statement"):
        load_table(_write(tmp_path / "e.csv", [{"statement": " "}]))
    with pytest.raises(UserInputError, match="invalid JSON"):
        (tmp_path / "bad.jsonl").write_text('{"statement": "a"}\n{oops\n')
        load_table(tmp_path / "bad.jsonl")
    with pytest.raises(UserInputError, match="unsupported file type"):
        (tmp_path / "a.txt").write_text("x")
        load_table(tmp_path / "a.txt")
    with pytest.raises(UserInputError, match="not found"):
        load_table(tmp_path / "missing.csv")
    with pytest.raises(UserInputError, match="unexpected option"):
        load_dataset(plain, revision="abc")


# --------------------------------------------------------------------------- Hugging Face


def test_hf_loader_from_saved_dataset(tmp_path, monkeypatch):
    hf = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    saved = tmp_path / "ds"
    hf.Dataset.from_list(ROWS).save_to_disk(str(saved))
    problems = load_dataset(saved, fields=FIELDS)
    assert [p.id for p in problems] == ["A-1", "A-2"] and problems[1].short_answer is None

    splits = tmp_path / "dd"
    hf.DatasetDict({"test": hf.Dataset.from_list(ROWS[:1])}).save_to_disk(str(splits))
    assert [p.id for p in load_hf_dataset(splits, split="test", fields=FIELDS)] == ["A-1"]
    with pytest.raises(UserInputError, match="no split 'train'"):
        load_hf_dataset(splits, fields=FIELDS)


def test_hf_hub_name_needs_a_pinned_revision():
    pytest.importorskip("datasets")
    with pytest.raises(UserInputError, match="pinned revision"):
        load_dataset("hf:someone/some-proofs")

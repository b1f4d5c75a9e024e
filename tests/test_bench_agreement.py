"""Grader agreement reports: the published DeepSeekMath-V2 numbers (precision 0.91, recall 1.00
at threshold 0.75 over the 84 released proofs), per-set breakdowns, and --pred/--human files."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from proofloop.bench.agreement import (
    agreement_report,
    dsm2_agreement,
    file_agreement,
    format_agreement_table,
    join_scores,
    load_scores,
)
from proofloop.errors import UserInputError

DATA = Path(os.environ.get("PROOFLOOP_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_data = pytest.mark.skipif(not (DATA / "dsm2" / "outputs").is_dir(), reason=f"shared data not found at {DATA}")


@pytest.fixture(scope="module")
def dsm2_report():
    if not (DATA / "dsm2" / "outputs").is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    return dsm2_agreement(DATA, threshold=0.75, n_resamples=300, seed=0)


@needs_data
def test_dsm2_reproduces_the_published_precision_and_recall(dsm2_report):
    o = dsm2_report["overall"]
    assert dsm2_report["n"] == o["n"] == 84
    assert round(o["precision"], 2) == 0.91 and round(o["recall"], 2) == 1.00
    assert o["confusion"] == {"tp": 68, "fp": 7, "fn": 0, "tn": 9}
    assert o["precision"] == pytest.approx(68 / 75)
    # every disagreement is a false accept, IMO 2025 P6 among them (automatic 1.0, expert 0)
    assert dsm2_report["false_rejects"] == []
    fa = {x["id"]: x for x in dsm2_report["false_accepts"]}
    assert len(fa) == 7 and fa["IMO2025-6"]["pred"] == 1.0 and fa["IMO2025-6"]["human"] == 0.0
    assert fa["Putnam2024-B5"]["human"] == pytest.approx(0.8)  # 8/10 < 6/7: not accepted
    ci = o["ci"]["precision"]
    assert ci["low"] < o["precision"] < ci["high"] and ci["n_valid"] == 300
    assert ci["low"] > 0.75 and ci["high"] <= 1.0


@needs_data
def test_dsm2_per_set_numbers(dsm2_report):
    groups = dsm2_report["groups"]
    assert list(groups) == ["IMO-ProofBench-Basic", "IMO-ProofBench-Advanced", "IMO2025", "CMO2024", "Putnam2024"]
    got = {k: (g["n"], g["confusion"]["tp"], g["confusion"]["fp"], g["confusion"]["fn"], g["confusion"]["tn"])
           for k, g in groups.items()}
    assert got == {"IMO-ProofBench-Basic": (30, 30, 0, 0, 0), "IMO-ProofBench-Advanced": (30, 18, 4, 0, 8),
                   "IMO2025": (6, 5, 1, 0, 0), "CMO2024": (6, 4, 1, 0, 1), "Putnam2024": (12, 11, 1, 0, 0)}
    assert groups["IMO-ProofBench-Advanced"]["precision"] == pytest.approx(18 / 22)
    assert all(g["recall"] == 1.0 for g in groups.values())
    basic = groups["IMO-ProofBench-Basic"]  # everything accepted by both sides: kappa, r undefined
    assert basic["false_accept_rate"] is None and basic["pearson"] is None and basic["kappa_binary"] is None
    assert basic["ci"]["pearson"]["low"] is None and basic["notes"]
    json.dumps(dsm2_report, allow_nan=False)  # ready for --json


@needs_data
def test_dsm2_threshold_moves_the_tradeoff():
    strict = dsm2_agreement(DATA, threshold=1.0, n_resamples=50)["overall"]
    # every expert-accepted proof has a perfect automatic rating, so only false accepts drop out
    assert strict["confusion"] == {"tp": 68, "fp": 4, "fn": 0, "tn": 12}
    loose = dsm2_agreement(DATA, threshold=0.5, n_resamples=50)["overall"]
    assert loose["confusion"]["fp"] > 7 and loose["recall"] == 1.0


@needs_data
def test_format_table_of_dsm2(dsm2_report):
    text = format_agreement_table(dsm2_report)
    lines = text.splitlines()
    assert lines[0].startswith("Agreement: predicted >= 0.75 vs expert normalised >= 0.8571 (n=84")
    overall = next(line for line in lines if line.startswith("overall"))
    assert "0.91 [" in overall and "1.00 [1.00,1.00]" in overall
    assert any(line.startswith("IMO2025 ") for line in lines)
    assert "False accepts (7): " in text and "IMO2025-6 (pred 1.000, expert 0.000)" in text
    assert "IMO-ProofBench-Basic: pearson is undefined" in text


def test_agreement_report_synthetic():
    r = agreement_report([1.0, 0.9, 0.3, 1.0, 0.0], [1.0, 0.0, 0.0, 6 / 7, 1.0], ["a", "a", "b", "b", "b"],
                         ids=["p1", "p2", "p3", "p4", "p5"], n_resamples=100)
    assert r["overall"]["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
    assert [x["id"] for x in r["false_accepts"]] == ["p2"] and [x["id"] for x in r["false_rejects"]] == ["p5"]
    assert r["groups"]["a"]["n"] == 2 and r["groups"]["b"]["recall"] == 0.5
    assert r["rules"]["human_accept"].startswith("expert grade normalised to [0, 1] >= 0.8571 (6 of 7")
    assert r == agreement_report([1.0, 0.9, 0.3, 1.0, 0.0], [1.0, 0.0, 0.0, 6 / 7, 1.0],
                                 ["a", "a", "b", "b", "b"], ids=["p1", "p2", "p3", "p4", "p5"], n_resamples=100)
    no_groups = agreement_report([1.0], [1.0], n_resamples=20)
    assert no_groups["groups"] == {} and no_groups["false_accepts"] == []
    assert "overall" in format_agreement_table(no_groups)
    with pytest.raises(ValueError):
        agreement_report([1.0], [1.0, 0.0])
    with pytest.raises(UserInputError):
        agreement_report([], [])


# --------------------------------------------------------------------------- --pred / --human files


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def test_file_agreement_joins_on_id_and_reports_missing(tmp_path):
    pred = _jsonl(tmp_path / "pred.jsonl", [
        {"id": "a", "score": 1.0}, {"id": "b", "score": 0.9}, {"id": "c", "score": 0.2}, {"id": "x", "score": 1.0}])
    human = _csv(tmp_path / "human.csv", [
        {"id": "a", "grade": 7, "set": "s1"}, {"id": "b", "grade": 1, "set": "s1"},
        {"id": "c", "grade": 0, "set": "s2"}, {"id": "y", "grade": 6, "set": "s2"}])
    r = file_agreement(pred, human, 0.75, id_field="id", human_field="grade", human_max_points=7,
                       group_field="set", n_resamples=50)
    assert r["n"] == 3 and r["overall"]["confusion"] == {"tp": 1, "fp": 1, "fn": 0, "tn": 1}
    assert r["unmatched"] == {"missing_in_pred": ["y"], "missing_in_human": ["x"]}
    assert r["notes"] == ["1 id(s) have an expert grade but no prediction: y",
                          "1 id(s) have a prediction but no expert grade: x"]
    assert sorted(r["groups"]) == ["s1", "s2"]
    text = format_agreement_table(r)
    assert "no prediction: y" in text and "no expert grade: x" in text
    json.dumps(r, allow_nan=False)


def test_file_agreement_errors(tmp_path):
    pred = _jsonl(tmp_path / "pred.jsonl", [{"id": "a", "score": 1.0}])
    human7 = _jsonl(tmp_path / "h7.jsonl", [{"id": "a", "score": 7}])
    with pytest.raises(UserInputError, match="human-max-points"):
        file_agreement(pred, human7)  # grades on 0-7 but the scale was not given
    assert file_agreement(pred, human7, human_max_points=7, n_resamples=10)["overall"]["recall"] == 1.0
    with pytest.raises(UserInputError, match="no common ids"):
        file_agreement(pred, _jsonl(tmp_path / "h.jsonl", [{"id": "z", "score": 1}]))
    with pytest.raises(UserInputError, match=r"\[0, 1\]"):
        file_agreement(_jsonl(tmp_path / "p2.jsonl", [{"id": "a", "score": 3}]), human7, human_max_points=7)
    with pytest.raises(UserInputError, match="appears twice"):
        load_scores(_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "score": 1}, {"id": 1, "score": 0}]))
    with pytest.raises(UserInputError, match="no 'score' field"):
        load_scores(_jsonl(tmp_path / "nos.jsonl", [{"id": 1}]))
    with pytest.raises(UserInputError, match="not a number"):
        load_scores(_csv(tmp_path / "nan.csv", [{"id": 1, "score": "high"}]))
    with pytest.raises(UserInputError, match="not found"):
        file_agreement(tmp_path / "nope.jsonl", human7)


def test_join_scores_keeps_human_order():
    j = join_scores({"b": 0.5, "a": 1.0, "q": 0.0}, {"a": 1.0, "b": 0.0, "c": 1.0})
    assert j == {"ids": ["a", "b"], "pred": [1.0, 0.5], "human": [1.0, 0.0],
                 "missing_in_pred": ["c"], "missing_in_human": ["q"]}

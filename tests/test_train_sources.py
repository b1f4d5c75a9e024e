"""Training-set sources and writers: a real prove run and a label run over its proofs, made on
the simulator through the `proofloop` command, read from the store and from the label output
files; Hugging Face folders; the released DeepSeekMath-V2 outputs; the TRL and verl files
written and read back; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofloop.errors import UserInputError
from proofloop.protocol import generation_messages, meta_verification_messages, proof_for_verification
from proofloop.store import Store
from proofloop.train.datasets import (dataset_rows, generator_set, majority_rating, meta_verifier_set, trl_row,
                                      verifier_set, write_dataset)
from proofloop.train.sources import read_source
from tests.support.cli import cli_env, run_cli
from tests.support.train_runs import PROBLEM, shared_train_runs

datasets = pytest.importorskip("datasets")
DSM2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "dsm2" / "outputs"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_train_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def labels(runs):
    return [json.loads(line) for line in runs.labels_jsonl.read_text().splitlines()]


def test_label_output_jsonl_and_parquet_give_the_same_sets(runs, labels):
    from_jsonl, from_parquet = read_source(runs.labels_jsonl), read_source(runs.labels_parquet)
    labelled = [r for r in labels if r["status"] == "labelled"]
    assert {r["status"] for r in labels} > {"labelled"}, "the runs decide nothing else: the filter is untested"
    for rows in (from_jsonl, from_parquet):
        examples = verifier_set(rows, origin="labels")
        assert [(e.id, e.target) for e in examples] == [(r["id"], r["score"]) for r in labelled]
        assert examples[0].prompt[0]["content"].count(proof_for_verification(labelled[0]["proof"])) == 1
        assert all(r["m"] == 3 for r in rows)
    assert [(e.id, e.target) for e in meta_verifier_set(from_parquet)] == \
        [(e.id, e.target) for e in meta_verifier_set(from_jsonl)]


def test_a_label_run_read_from_the_store_decides_the_labels_its_output_file_holds(runs, labels):
    rows = read_source(runs.db, run=runs.label_run)
    assert [(r["id"], r["status"], r["score"]) for r in rows] == [(r["id"], r["status"], r["score"]) for r in labels]
    by_id = {r["id"]: r for r in labels}
    for row in rows:
        assert [(a["id"], a["score"], a["text"]) for a in row["analyses"]] == \
            [(a["id"], a["score"], a["text"]) for a in by_id[row["id"]]["analyses"]]
        assert [[m["rating"] for m in a["meta"]] for a in row["analyses"]] == \
            [[m["rating"] for m in a["meta"]] for a in by_id[row["id"]]["analyses"]]
    store_set = meta_verifier_set(rows)
    assert [(e.id, e.target) for e in store_set] == [(e.id, e.target) for e in meta_verifier_set(labels)]


def test_the_meta_verifier_target_is_the_strict_majority_of_the_ratings(labels):
    expected = []
    for row in labels:
        for a in row["analyses"]:
            ratings = [m["rating"] for m in a["meta"] if m["status"] == "ok"]
            counts = {r: ratings.count(r) for r in set(ratings)}
            top = [r for r, c in counts.items() if 2 * c > 3]
            if top:
                expected.append((a["id"], top[0], row, a))
    examples = meta_verifier_set(labels)
    assert [(e.id, e.target) for e in examples] == [(i, t) for i, t, _, _ in expected]
    assert len(expected) < sum(len(r["analyses"]) for r in labels)  # score-1 analyses have no ratings
    _, _, row, a = expected[0]
    assert examples[0].prompt == meta_verification_messages(row["problem"], proof_for_verification(row["proof"]),
                                                            a["text"])


@pytest.mark.parametrize("ratings, m, want", [
    ([1.0, 1.0, 0.0], 3, 1.0), ([0.5, 0.5, 1.0], 3, 0.5), ([0.0, 0.0], 3, 0.0), ([1.0, 0.0], 2, None),
    ([1.0, None, 0.0], 3, None), ([1.0, 1.0, None], 3, 1.0), ([1.0], 3, None), ([1.0], None, 1.0), ([], 3, None)])
def test_majority_rating_table(ratings, m, want):
    assert majority_rating(ratings, m) == want


@given(st.lists(st.sampled_from([0.0, 0.5, 1.0, None]), max_size=7), st.integers(0, 7))
def test_a_majority_rating_has_more_than_half_of_the_asked(ratings, m):
    got = majority_rating(ratings, m)
    asked = max(m, len(ratings))
    winners = [r for r in (0.0, 0.5, 1.0) if 2 * ratings.count(r) > asked]
    assert got == (winners[0] if winners else None)


def test_a_prove_run_gives_prompts_and_rated_analyses_but_no_labels(runs):
    rows = read_source(runs.db, run=runs.prove_run)
    assert len(rows) == 8 and {r["status"] for r in rows} == {"unlabelled"}
    assert all(len(r["analyses"]) == 4 for r in rows)
    with Store(runs.db) as store:
        assert [r["proof"] for r in rows] == [p.raw for p in store.proofs(runs.prove_run)]
    [prompt] = generator_set(rows)
    assert prompt.prompt == generation_messages(PROBLEM)
    assert meta_verifier_set(rows)  # pool meta=3 rated the issue-reporting analyses
    with pytest.raises(UserInputError, match="no labelled proofs"):
        verifier_set(rows, origin=f"run {runs.prove_run}")


def test_the_released_dsm2_outputs_are_read_through_their_aliases():
    path = DSM2 / "IMO2025.jsonl"
    if not path.is_file():
        pytest.skip("shared/data/dsm2 is not here")
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    rows = read_source(path)
    assert [(r["problem"], r["proof"]) for r in rows] == [(x["question"], x["model_prediction"]["proof"]) for x in raw]
    assert [e.prompt for e in generator_set(rows)] == [generation_messages(x["question"]) for x in raw]


def test_hugging_face_folders_and_plain_files(tmp_path):
    plain = [{"id": "a", "statement": "Prove P.", "solution": "Q.", "score": 0.5},
             {"id": "b", "statement": "Prove R.", "solution": "S.", "score": 1}]
    datasets.Dataset.from_list(plain).save_to_disk(str(tmp_path / "ds"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(plain)}).save_to_disk(str(tmp_path / "dd"))
    (tmp_path / "plain.csv").write_text("id,problem,proof,score\na,Prove P.,Q.,0.5\nb,Prove R.,S.,1\n")
    for src in (tmp_path / "ds", tmp_path / "dd", tmp_path / "plain.csv"):
        examples = verifier_set(read_source(src))
        assert [(e.id, e.target, e.extra["problem"]) for e in examples] == [("a", 0.5, "Prove P."),
                                                                            ("b", 1.0, "Prove R.")]


def test_trl_files_load_with_datasets_as_written(tmp_path, labels):
    examples = verifier_set(labels)
    want = [trl_row(e) for e in examples]
    write_dataset(examples, tmp_path / "v.jsonl")
    write_dataset(examples, tmp_path / "v.parquet")
    write_dataset(examples, tmp_path / "v")
    loaded = [datasets.load_dataset("json", data_files=str(tmp_path / "v.jsonl"), split="train"),
              datasets.load_dataset("parquet", data_files=str(tmp_path / "v.parquet"), split="train"),
              datasets.load_from_disk(str(tmp_path / "v"))]
    for data in loaded:
        assert [dict(r) for r in data] == want
    prompts = generator_set(labels)
    write_dataset(prompts, tmp_path / "g.parquet")
    assert pq.read_schema(tmp_path / "g.parquet").field("target").type == pa.float64()  # None, typed


VERL_SCHEMA = {
    "data_source": pa.string(),
    "prompt": pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())])),
    "ability": pa.string(),
    "reward_model": pa.struct([("style", pa.string()), ("ground_truth", pa.float64())]),
    "extra_info": pa.struct([("id", pa.string()), ("task", pa.string()), ("problem", pa.string()),
                             ("index", pa.int64())]),
}


@pytest.mark.parametrize("task", ["verifier", "meta-verifier", "generator"])
def test_the_verl_parquet_has_verl_columns_and_types(tmp_path, labels, task):
    build = {"verifier": verifier_set, "meta-verifier": meta_verifier_set, "generator": generator_set}[task]
    examples = build(labels)
    path = write_dataset(examples, tmp_path / "train.parquet", "verl", data_source="proofloop/test")
    schema = pq.read_schema(path)
    expected = dict(VERL_SCHEMA)
    if task == "verifier":  # the proof, for a reward with meta-verification of the analysis
        expected["extra_info"] = pa.struct([*VERL_SCHEMA["extra_info"], ("proof", pa.string())])
    assert schema.names == list(expected)
    for name, kind in expected.items():
        got = schema.field(name).type
        if pa.types.is_struct(kind) and pa.types.is_struct(got):  # compare fields by name: order is arrow's
            assert {f.name: f.type for f in got} == {f.name: f.type for f in kind}, name
        elif pa.types.is_list(kind):
            assert {f.name: f.type for f in got.value_type} == {f.name: f.type for f in kind.value_type}
        else:
            assert got == kind, name
    rows = pq.read_table(path).to_pylist()
    assert rows == dataset_rows(examples, "verl", data_source="proofloop/test")
    assert [r["extra_info"]["index"] for r in rows] == list(range(len(rows)))
    assert {r["reward_model"]["ground_truth"] for r in rows} == ({None} if task == "generator" else
                                                                 {e.target for e in examples})


@pytest.mark.parametrize("rows, message", [
    ([], "no rows"),
    ([{"id": "x", "proof": "Q", "score": 1}], "row 1 has no problem"),
    ([{"id": "x", "problem": "P", "score": 1}], "no proof column"),
    ([{"id": "x", "problem": "P", "proof": "Q"}], "no labelled proofs"),
    ([{"id": "x", "problem": "P", "proof": "Q", "score": 0.7}], "score must be 0, 0.5 or 1"),
])
def test_bad_verifier_files(tmp_path, rows, message):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserInputError, match=message):
        verifier_set(read_source(path), origin=str(path))


def test_bad_sources_and_outputs(tmp_path, runs, labels):
    with Store(runs.db) as store:
        busy = store.create_run("label", {"rule": {"m": 1, "k": 1}})
    with pytest.raises(UserInputError, match=f"run {busy} is running"):
        read_source(runs.db, run=busy)
    with pytest.raises(UserInputError, match="name the run with --run"):
        read_source(runs.db)
    with pytest.raises(UserInputError, match="needs a dataset name"):
        read_source("hf:")
    with pytest.raises(UserInputError, match="rows with a rating need an analysis"):
        meta_verifier_set([{"problem": "P", "proof": "Q", "rating": 1.0}])
    with pytest.raises(UserInputError, match="no rated analyses"):
        meta_verifier_set([{"problem": "P", "proof": "Q", "analyses": []}])
    examples = verifier_set(labels)
    for out, fmt, message in [(tmp_path / "v.jsonl", "verl", "verl reads parquet"),
                              (tmp_path / "v.txt", "trl", "unknown output type"),
                              (tmp_path / "v.jsonl", "csv", "unknown format")]:
        with pytest.raises(UserInputError, match=message):
            write_dataset(examples, out, fmt)


def test_the_data_command(tmp_path, runs):
    env = cli_env(runs.db)
    out = tmp_path / "meta.parquet"
    r = run_cli(["train", "data", "meta-verifier", "--run", runs.label_run, "-o", str(out), "--format", "verl",
                 "--json"], env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["examples"] == pq.read_metadata(out).num_rows == len(meta_verifier_set(read_source(runs.labels_jsonl)))
    for args, message in [(["verifier", "--run", runs.prove_run, "-o", str(tmp_path / "v.jsonl")], "no labelled proofs"),
                          (["critic", "--from", str(runs.labels_jsonl), "-o", str(tmp_path / "v.jsonl")], "unknown task"),
                          (["verifier", "--from", str(tmp_path / "missing.jsonl"), "-o", "v.jsonl"], "source not found"),
                          (["verifier", "-o", "v.jsonl"], "no source")]:
        r = run_cli(["train", "data", *args], env)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr

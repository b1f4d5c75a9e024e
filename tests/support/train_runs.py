"""Real runs for the training tests, made through the `proofloop` command on the simulator:
a pool `prove` run (proofs with self evaluations, analyses, meta-verifications) and a `label`
run over that run's proofs (so the labelled proofs are generator outputs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from proofloop.store import Store
from tests.support.cli import cli_env, run_json

PROBLEM = "Prove that the sum of two even integers is even."


@dataclass(frozen=True)
class TrainRuns:
    db: Path
    prove_run: str
    label_run: str
    labels_jsonl: Path
    labels_parquet: Path


_made: list[TrainRuns] = []


def shared_train_runs(tmp_path_factory) -> TrainRuns:
    """The runs, made once per test session (a few seconds of subprocesses) and only read after."""
    if not _made:
        _made.append(make_train_runs(tmp_path_factory.mktemp("train-runs")))
    return _made[0]


def make_train_runs(folder: Path) -> TrainRuns:
    db = folder / "runs.db"
    env = cli_env(db)
    problem = folder / "problem.md"
    problem.write_text(PROBLEM)
    prove = run_json(["prove", str(problem), "--provider", "sim", "--seed", "3", "--strategy", "pool",
                      "-o", "initial=8", "-o", "verifications=4", "-o", "rounds=0", "-o", "meta=3", "-o", "top_k=2"],
                     env)
    with Store(db) as store:
        proofs = [{"id": p.id[:12], "problem": PROBLEM, "proof": p.raw} for p in store.proofs(prove["run_id"])]
    inputs = folder / "proofs.jsonl"
    inputs.write_text("".join(json.dumps(p) + "\n" for p in proofs))
    labels, parquet = folder / "labels.jsonl", folder / "labels.parquet"
    label = run_json(["label", "--proofs", str(inputs), "-n", "4", "-m", "3", "-k", "2", "--provider", "sim",
                      "--seed", "0", "-o", str(labels), "--parquet", str(parquet)], env)
    run_id = json.loads(labels.read_text().splitlines()[0])["provenance"]["run_id"]
    assert label["statuses"]["labelled"] >= 1
    return TrainRuns(db, prove["run_id"], run_id, labels, parquet)

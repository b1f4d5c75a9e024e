"""Split runs in tests: what the work table holds, and a dataset of simulated problems."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from proofloop.store import Store
from proofloop.store.schema import WorkRow


def work_table(db: str, run: str) -> dict[str, tuple[str | None, str | None, int]]:
    """item -> (owner, done_by, times claimed), read straight from the work table."""
    with Store(db) as store, store.engine.connect() as conn:
        rows = conn.execute(select(WorkRow.item, WorkRow.owner, WorkRow.done_by, WorkRow.claims)
                            .where(WorkRow.run_id == run))
        return {item: (owner, done_by, n) for item, owner, done_by, n in rows}


def sim_problems_file(folder: Path, count: int) -> Path:
    """A JSONL dataset (id P0, P1, ...; statement) of `count` simulated problems."""
    out = subprocess.run([sys.executable, "-m", "proofloop.cli", "sim", "problems", str(count), "--json"],
                         capture_output=True, text=True, check=True).stdout
    path = folder / "problems.jsonl"
    path.write_text("".join(json.dumps({"id": f"P{i}", "statement": s}) + "\n" for i, s in enumerate(json.loads(out))))
    return path


def label_split_run(db: str, folder: Path, proofs: int) -> str:
    """A label run of `proofs` simulated proofs (ids q0, q1, ...; n 3, m 2, k 1, sim provider)
    stored with --split for workers; its output goes to folder/labels.jsonl. The run id."""
    src = folder / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"Prove that {i} + {i} is even.",
                                       "proof": f"{i} + {i} = 2 * {i}."}) + "\n" for i in range(proofs)))
    made = subprocess.run([sys.executable, "-m", "proofloop.cli", "label", "--proofs", str(src), "--provider", "sim",
                           "-n", "3", "-m", "2", "-k", "1", "-o", str(folder / "labels.jsonl"), "--split", "--db", db],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()

"""Rows of a data file: JSON Lines, a JSON list, CSV or parquet, read into dicts, with one-line
errors for what a user can fix (a missing file, bad JSON, an unknown file type).

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "proofs.jsonl"
    >>> _ = path.write_text('{"problem": "P", "proof": "Q"}\\n')
    >>> read_rows(path)
    [{'problem': 'P', 'proof': 'Q'}]
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from proofloop.errors import UserInputError
from proofloop.extras import require


def need_file(path: Path) -> Path:
    if not path.is_file():
        raise UserInputError(f"data file not found: {path} (pass --data-dir or set PROOFLOOP_DATA_DIR)")
    return path


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a .jsonl, .json (a list of objects), .csv or .parquet file, as dicts."""
    p = need_file(Path(path))
    suffix = p.suffix.lower()
    try:
        if suffix == ".jsonl":
            rows = []
            with p.open(encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as e:
                            raise UserInputError(f"{p}:{lineno}: invalid JSON ({e.msg})") from e
        elif suffix == ".json":
            rows = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise UserInputError(f"{p}: expected a JSON list of objects")
        elif suffix == ".csv":
            with p.open(encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh))
        elif suffix == ".parquet":
            pq = require("pyarrow.parquet", "bench", "reading a .parquet file")  # only parquet users pay for it

            rows = pq.read_table(p).to_pylist()
        else:
            raise UserInputError(f"{p}: unsupported file type {suffix!r} (use .jsonl, .json, .csv or .parquet)")
    except json.JSONDecodeError as e:
        raise UserInputError(f"{p}: invalid JSON ({e.msg})") from e
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise UserInputError(f"{p}: row {i} is not an object")
    return rows

"""Export one run as JSON Lines: a header line for the run, then one line per problem.

Line 1: {"type": "run", ...the run..., "usage": totals for calls made under the run}.
Then per problem: {"type": "problem", "id", "name", "text", "meta", "proofs": [...]}, each
proof with its lineage (`parents`, `refined_from_analyses`), `call` (model and tokens of the
LLM call whose key is the proof id, or null when none is stored) and `verifications`, each
verification with its `call` and `meta_verifications`.

    >>> import io, json, tempfile, pathlib
    >>> from proofloop.store.db import Store
    >>> store = Store(pathlib.Path(tempfile.mkdtemp()) / "p.db")
    >>> run = store.create_run("prove", {})
    >>> _ = store.add_problem(run, "Show that 2 is even.", name="even")
    >>> out = io.StringIO(); export_run_jsonl(store, run, out)
    2
    >>> [json.loads(line)["type"] for line in out.getvalue().splitlines()]
    ['run', 'problem']
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from proofloop.store.db import Store


def export_run(store: Store, run_id: str) -> Iterator[dict[str, Any]]:
    """The run's JSONL records (see the module docstring). Raises KeyError for an unknown run.
    One problem at a time: memory holds one problem's records, never the whole run."""
    run = store.get_run(run_id)
    if run is None:
        raise KeyError(f"no run {run_id!r} in {store.where}")
    # The lease fields are live state, not part of what the run produced.
    header = run.model_dump(mode="json", exclude={"owner", "lease_expires_at"})
    yield {"type": "run", **header, "usage": store.run_usage(run_id).model_dump(mode="json")}
    for problem in store.problems(run_id):
        yield {"type": "problem", **problem.model_dump(mode="json"), "proofs": _proofs(store, run_id, problem.id)}


def _proofs(store: Store, run_id: str, problem_id: int) -> list[dict[str, Any]]:
    """One problem's proofs, each with its call and its verifications (with theirs)."""
    proofs = store.proofs(run_id, problem_id)
    verifications = store.verifications(run_id=run_id, problem_id=problem_id)
    metas = store.meta_verifications(run_id=run_id, problem_id=problem_id)
    # Ids are usually call keys; look up whichever of them have a stored call.
    calls = store.call_summaries([p.id for p in proofs] + [v.id for v in verifications] + [m.id for m in metas])
    metas_of: dict[str, list[dict[str, Any]]] = {}
    for m in metas:
        metas_of.setdefault(m.verification_id, []).append({**m.model_dump(mode="json"), "call": calls.get(m.id)})
    verifications_of: dict[str, list[dict[str, Any]]] = {}
    for v in verifications:
        verifications_of.setdefault(v.proof_id, []).append(
            {**v.model_dump(mode="json"), "call": calls.get(v.id), "meta_verifications": metas_of.get(v.id, [])})
    return [{**p.model_dump(mode="json"), "call": calls.get(p.id), "verifications": verifications_of.get(p.id, [])}
            for p in proofs]


def export_run_jsonl(store: Store, run_id: str, path_or_stream: str | Path | IO[str]) -> int:
    """Write the run as JSONL to a path or a text stream; returns the number of lines."""
    if isinstance(path_or_stream, (str, Path)):
        with open(path_or_stream, "w", encoding="utf-8") as f:
            return export_run_jsonl(store, run_id, f)
    n = 0
    for record in export_run(store, run_id):
        path_or_stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        n += 1
    return n

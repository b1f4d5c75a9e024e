"""The SQLite run store: runs, problems, proofs, analyses, lineage and every LLM call.

    >>> from proofloop.store import Store
    >>> Store.default_path().name
    'proofloop.db'
"""

from proofloop.store.db import Store, StoreError, messages_sha
from proofloop.store.export import export_run, export_run_jsonl
from proofloop.store.schema import (Failure, MetaVerification, Problem, Proof, Run, RunStatus, RunUsage,
                                    UsageTotals, Verification)

__all__ = ["Store", "StoreError", "messages_sha", "export_run", "export_run_jsonl", "Run", "RunStatus", "Problem", "Proof",
           "Verification", "MetaVerification", "Failure", "RunUsage", "UsageTotals"]

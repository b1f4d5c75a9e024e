"""The run store (an SQLite file or a PostgreSQL database): runs, problems, proofs, analyses,
lineage and every LLM call.

    >>> from proofloop.store import Store
    >>> Store.default_path().name
    'proofloop.db'
"""

from proofloop.store.checks import RunBusy, StoreError
from proofloop.store.db import RunRecords, Store, messages_sha
from proofloop.store.export import export_run, export_run_jsonl
from proofloop.store.lease import Heartbeat, Lease, default_owner
from proofloop.store.schema import (Failure, MetaVerification, Problem, Proof, Run, RunStatus, RunUsage,
                                    UsageTotals, Verification, WorkItem)

__all__ = ["Store", "RunRecords", "StoreError", "RunBusy", "Lease", "Heartbeat", "default_owner", "messages_sha", "export_run",
           "export_run_jsonl", "Run", "RunStatus", "Problem", "Proof", "Verification", "MetaVerification", "Failure",
           "RunUsage", "UsageTotals", "WorkItem"]

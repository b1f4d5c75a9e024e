"""Runs: every kind of run (prove, verify, meta-verify, label, bench, ...) in one registry,
each with create / execute / render, stored in the run store and resumable.

    >>> from proofloop.store import Store
    >>> from proofloop.models.factory import ModelSettings
    >>> store = Store(":memory:")
    >>> run_id = create_verify_run(store, "Prove that 1 + 1 = 2.", "## Solution\\n1 + 1 = 2.",
    ...                            ModelSetup(ModelSettings(provider="sim")), n=2)
    >>> summary = execute(store, run_id, notice=lambda line: None)
    >>> summary["kind"], summary["n"]
    ('verify', 2)
    >>> get_kind("verify").render(summary)[-1].startswith("run: r-")
    True
"""

from proofloop.runs.context import ModelSetup, RunContext, StoreRecorder, new_run, run_config
from proofloop.runs.execute import AllCallsFailed, RunCancelled, execute, execute_worker, run_usage, update_server
from proofloop.runs.prove import create_meta_verify_run, create_prove_run, create_verify_run
from proofloop.runs.registry import RunKind, get_kind, register

__all__ = ["ModelSetup", "RunContext", "StoreRecorder", "new_run", "run_config", "AllCallsFailed", "RunCancelled", "execute", "execute_worker", "run_usage",
           "update_server", "create_prove_run", "create_verify_run", "create_meta_verify_run", "RunKind",
           "get_kind", "register"]

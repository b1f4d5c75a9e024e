"""One registry of run kinds. Every kind of run (prove, verify, meta-verify, label, bench,
bench-grade, and later train / serve jobs) has the same three parts:

- create: arguments -> a stored run whose config holds all that is needed to do it again;
- execute: `async execute(ctx: RunContext) -> summary`, resumable (finished calls replay
  from the store's call cache, records re-store idempotently);
- render: summary -> lines of text for a person (JSON is the summary itself).

A kind registers itself with `register(RunKind(...))`. Kinds that live in this package are
imported on first lookup; kinds that live in upper layers (bench/, later train/ and api/)
are found through the `proofloop.run_kinds` entry points that pyproject.toml declares, so no
module here imports them and nothing dispatches on kind strings anywhere else.

    >>> kind = get_kind("prove")
    >>> kind.name, callable(kind.execute), callable(kind.render)
    ('prove', True, True)
    >>> get_kind("no-such-kind")
    Traceback (most recent call last):
    ...
    proofloop.errors.UserInputError: unknown run kind 'no-such-kind'; known kinds: bench, bench-grade, label, meta-verify, prove, ...verify, verify-steps
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from proofloop.errors import UserInputError

if TYPE_CHECKING:
    from proofloop.runs.context import RunContext

ENTRY_POINT_GROUP = "proofloop.run_kinds"
# Kinds of this package: module to import when one of them is first asked for.
BUILTIN_MODULES = {"prove": "proofloop.runs.prove", "verify": "proofloop.runs.prove",
                   "meta-verify": "proofloop.runs.prove", "label": "proofloop.runs.label",
                   "verify-steps": "proofloop.runs.steps"}


@dataclass(frozen=True)
class RunKind:
    name: str
    execute: Callable[["RunContext"], Awaitable[dict[str, Any]]]
    render: Callable[[dict[str, Any]], list[str]]
    calls_model: bool = True  # False: the run is complete once created (e.g. imported human grades)


_KINDS: dict[str, RunKind] = {}


def register(kind: RunKind) -> RunKind:
    """Make `kind` available to `get_kind` (the same name again replaces it)."""
    _KINDS[kind.name] = kind
    return kind


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_kind(name: str) -> RunKind:
    """The registered kind `name`, importing the module that registers it when needed."""
    if name not in _KINDS:
        module = BUILTIN_MODULES.get(name) or _entry_points().get(name, "").split(":")[0]
        if module:
            importlib.import_module(module)
    if name not in _KINDS:
        known = sorted({*_KINDS, *BUILTIN_MODULES, *_entry_points()})
        raise UserInputError(f"unknown run kind {name!r}; known kinds: {', '.join(known)}")
    return _KINDS[name]

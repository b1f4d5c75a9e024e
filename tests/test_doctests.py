"""Every docstring example in the package runs as a test.

Collected here (not with --doctest-modules) so that `pytest tests`, the Makefile's command,
runs them, and a module that moves or appears is found by walking the package. A module
whose examples need an extra that is not installed (the simulator, benchmarks, the local
model) is skipped with the install hint, as the package itself would say it.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import proofloop



def package_modules() -> list[str]:
    """Every module of the package, found on disk: importing a package to list its modules
    would fail exactly where an extra is missing."""
    root = Path(proofloop.__file__).parent
    names = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__main__":  # importing it runs the program
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


MODULES = package_modules()


class _Runner(doctest.DocTestRunner):
    """Remembers the exceptions examples raised, to tell a missing extra from a failure."""

    def __init__(self) -> None:
        super().__init__(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        self.raised: list[BaseException] = []
        self.report: list[str] = []

    def report_unexpected_exception(self, out, test, example, exc_info):
        self.raised.append(exc_info[1])
        super().report_unexpected_exception(out, test, example, exc_info)


def test_the_package_has_modules_with_examples():
    assert {"proofloop.errors", "proofloop.extras", "proofloop.search.pool", "proofloop.sim.server"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    try:
        module = importlib.import_module(name)
    except ImportError as e:  # MissingExtra is an ImportError too
        pytest.skip(f"{name}: {e}")
    runner = _Runner()
    for test in doctest.DocTestFinder().find(module, name):
        runner.run(test, out=runner.report.append)
    missing = [e for e in runner.raised if isinstance(e, ImportError)]
    if runner.failures and missing:
        pytest.skip(f"{name}: its examples need an extra that is not installed ({missing[0]})")
    assert runner.failures == 0, "".join(runner.report)

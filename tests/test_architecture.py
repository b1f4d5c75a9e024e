"""The shape of the source tree, checked: data flows one way between the layers, no import
cycle, no private name imported from another module, no function over 80 lines.

The layers (docs/ARCHITECTURE.md): errors <- protocol <- models <- (roles, store, sim) <-
search <- label <- runs <- (bench, cli). Imports inside functions count too: a lazy import
of an upper layer is still an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "proofloop"

# Which parts of the package each part may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "extras": {"errors"},
    "protocol": {"errors"},
    "models": {"errors", "extras", "protocol"},
    "roles": {"errors", "protocol", "models"},
    "store": {"errors", "protocol", "models"},
    "sim": {"errors", "extras", "protocol", "models"},
    "search": {"errors", "protocol", "models", "roles", "steps"},  # steps: the `tree` strategy
    "label": {"errors", "extras", "protocol", "models", "roles", "rows"},
    "rows": {"errors", "extras"},
    "runs": {"errors", "extras", "protocol", "models", "roles", "store", "search", "label", "steps", "packs"},
    # domain packs (issue 12): rubric, templates, loaders, evidence, metrics
    "packs": {"errors", "extras", "protocol", "models", "roles", "rows"},
    "bench": {"errors", "extras", "protocol", "models", "roles", "store", "search", "runs", "rows", "steps", "packs"},
    # rewards (pure), judged rewards, datasets, TRL/verl adapters, training runs
    "train": {"errors", "extras", "protocol", "models", "roles", "store", "search", "label", "rows", "runs"},
    # proof steps and symbolic checks (issue 11)
    "steps": {"errors", "extras", "protocol", "models", "roles"},
    # HTTP service, monitoring, web viewer; mounts the reward server
    "api": {"errors", "extras", "protocol", "models", "roles", "store", "search", "label", "rows", "runs", "bench",
            "train", "steps", "packs"},
    "cli": {"errors", "extras", "protocol", "models", "roles", "store", "search", "label", "runs", "bench", "sim",
            "train", "api", "steps", "packs"},
}
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _part(module: str) -> str:
    """proofloop.search.pool -> search (the layer a module belongs to)."""
    return module.split(".")[1] if module.count(".") else ""


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every proofloop import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("proofloop")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("proofloop"):
                names = [a.name for a in node.names]
                # `from proofloop.sim import http` imports the module proofloop.sim.http
                submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
                found += [(m, [], node.lineno) for m in submodules]
                rest = [n for n in names if f"{base}.{n}" not in MODULES]
                if rest or not submodules:
                    found.append((base, rest, node.lineno))
    return found


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_every_part_of_the_package_has_a_rule():
    parts = {_part(m) for m in MODULES} - {""}
    assert parts <= set(ALLOWED), f"add a rule for {sorted(parts - set(ALLOWED))}"


def test_no_layer_imports_an_upper_one():
    wrong = []
    for module, imports in GRAPH.items():
        here = _part(module)
        for target, _, line in imports:
            there = _part(target)
            if there and there != here and there not in ALLOWED.get(here, set()):
                wrong.append(f"{MODULES[module].relative_to(SRC.parent)}:{line} ({here}) imports {target} ({there})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    # Edges between modules; a submodule importing its own package's __init__ is how packages
    # work, not a cycle.
    edges = {m: {t for t, _, _ in imports if t in MODULES and not m.startswith(t + ".")}
             for m, imports in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_name_is_imported_from_another_module():
    wrong = [f"{MODULES[m].relative_to(SRC.parent)}:{line} imports {name} from {target}"
             for m, imports in GRAPH.items() for target, names, line in imports
             for name in names if name.startswith("_") and not name.startswith("__") and target != m]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_function_is_longer_than_80_lines(module):
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{module}: {', '.join(long)}"

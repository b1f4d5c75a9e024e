"""Seeded defects: small mutations of a correct Python function, the way code goes wrong.

Four kinds, each applied at the first place in the function where it fits (so a task gives
at most one mutant per kind, and the same ones every time):
- operator: an arithmetic or boolean operator swapped (+ and -, * and //, and / or, ...);
- boundary: a comparison moved across its boundary (< and <=, > and >=, == and !=);
- constant: an integer constant changed by one;
- dropped-branch: the body of an `if` removed (its `else`, if any, kept).

The code is written back with ast.unparse; compare mutants with `normalise(original)`, which
has the same layout, so nothing but the mutation tells them apart.

    >>> src = "def f(xs):\\n    if not xs:\\n        return 0\\n    return xs[0] + len(xs)\\n"
    >>> [m.kind for m in mutants(src)]
    ['operator', 'constant', 'dropped-branch']
    >>> print(mutants(src)[0].code.splitlines()[-1])
        return xs[0] - len(xs)
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

BINOPS: dict[type, type] = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
                            ast.Div: ast.Mult, ast.Mod: ast.FloorDiv}
BOOLOPS: dict[type, type] = {ast.And: ast.Or, ast.Or: ast.And}
COMPARES: dict[type, type] = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
                              ast.Eq: ast.NotEq, ast.NotEq: ast.Eq}


@dataclass(frozen=True)
class Mutant:
    kind: str
    line: int
    change: str  # e.g. "< -> <=", "1 -> 2", "dropped if-body"
    code: str

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "line": self.line, "change": self.change}


def normalise(code: str) -> str:
    """`code` as ast.unparse writes it (the layout of every mutant)."""
    return ast.unparse(ast.parse(code)) + "\n"


def _symbol(op: ast.AST) -> str:
    return {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Div: "/", ast.Mod: "%",
            ast.And: "and", ast.Or: "or", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
            ast.Eq: "==", ast.NotEq: "!="}[type(op)]


def _operator(node: ast.AST) -> str | None:
    if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
        old, node.op = node.op, BINOPS[type(node.op)]()
        return f"{_symbol(old)} -> {_symbol(node.op)}"
    if isinstance(node, ast.BoolOp) and type(node.op) in BOOLOPS:
        old, node.op = node.op, BOOLOPS[type(node.op)]()
        return f"{_symbol(old)} -> {_symbol(node.op)}"
    return None


def _boundary(node: ast.AST) -> str | None:
    if isinstance(node, ast.Compare) and type(node.ops[0]) in COMPARES:
        old = node.ops[0]
        node.ops[0] = COMPARES[type(old)]()
        return f"{_symbol(old)} -> {_symbol(node.ops[0])}"
    return None


def _constant(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        old = node.value
        node.value = old + 1
        return f"{old} -> {old + 1}"
    return None


def _dropped_branch(node: ast.AST) -> str | None:
    if isinstance(node, ast.If):
        node.body = [ast.Pass()]
        return "dropped if-body"
    return None


KINDS: dict[str, Callable[[ast.AST], str | None]] = {
    "operator": _operator, "boundary": _boundary, "constant": _constant, "dropped-branch": _dropped_branch}


def _function_nodes(tree: ast.Module, function: str | None) -> list[ast.AST]:
    """Nodes inside the function's body (docstring and signature excluded), in source order."""
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and (function is None or n.name == function)]
    nodes: list[ast.AST] = []
    for d in defs:
        body = d.body[1:] if d.body and isinstance(d.body[0], ast.Expr) and isinstance(
            getattr(d.body[0], "value", None), ast.Constant) else d.body
        for stmt in body:
            nodes += list(ast.walk(stmt))
    return sorted(nodes, key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))


def mutants(code: str, function: str | None = None) -> list[Mutant]:
    """One mutant per kind that fits `function` (None: every top-level function) in `code`."""
    out = []
    for kind, mutate in KINDS.items():
        tree = ast.parse(code)
        for node in _function_nodes(tree, function):
            line = getattr(node, "lineno", 0)
            change = mutate(node)
            if change is not None:
                out.append(Mutant(kind, line, change, ast.unparse(ast.fix_missing_locations(tree)) + "\n"))
                break
    return out



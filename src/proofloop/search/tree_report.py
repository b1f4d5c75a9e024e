"""The explored tree of a `tree` search, drawn as text: one line per node with its step
score, why it was pruned, and a finished proof's verification.

    >>> from proofloop.search.tree import Node
    >>> root = Node("root", expanded=True)
    >>> a = Node("a", root, "Let $x = 1$.", 1, score=1.0, scores=[1.0, 1.0], order=0)
    >>> b = Node("b", root, "Hence x = 2.", 1, score=0.0, scores=[0.0, 0.0], pruned="step score 0 <= 0", order=1)
    >>> root.children = [a, b]
    >>> print("\\n".join(draw_tree(root)))
    root
    ├── [1.00 1,1] Let $x = 1$.
    └── [0.00 0,0] Hence x = 2.  pruned: step score 0 <= 0
"""

from __future__ import annotations

import re
from typing import Any

_MARKER = re.compile(r"<!--.*?-->", re.S)
WIDTH = 60


def _short(text: str | None) -> str:
    flat = " ".join(_MARKER.sub("", text or "").split())
    return flat if len(flat) <= WIDTH else flat[:WIDTH - 1] + "…"


def _scores(scores) -> str:
    return ",".join("-" if s is None else f"{s:g}" for s in scores)


def node_line(node: Any) -> str:
    mean = "----" if node.score is None else f"{node.score:.2f}"
    line = f"[{mean} {_scores(node.scores)}] {_short(node.step)}"
    if node.pruned:
        line += f"  pruned: {node.pruned}"
    if node.final is not None:
        verdict = "ACCEPTED" if node.accepted else "not accepted"
        line += f"  finished: verified {_scores(node.final_scores)} ({verdict})"
    elif node.complete:
        line += "  finished (not verified)"
    if node.failed_proposals:
        line += f"  ({node.failed_proposals} unusable proposal(s))"
    return line


def draw_tree(root: Any) -> list[str]:
    """The tree under `root`, depth first, children in the order they were made."""
    lines = ["root" + (f"  ({root.failed_proposals} unusable proposal(s))" if root.failed_proposals else "")]

    def walk(node: Any, indent: str) -> None:
        for i, child in enumerate(node.children):
            last = i == len(node.children) - 1
            lines.append(indent + ("└── " if last else "├── ") + node_line(child))
            walk(child, indent + ("    " if last else "│   "))

    walk(root, "")
    return lines

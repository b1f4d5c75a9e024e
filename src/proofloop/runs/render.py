"""Text shared by the renderers of every run kind."""

from __future__ import annotations

from typing import Any


def money(cost: float | None) -> str:
    """A cost for people: None (a price is unknown) is said as such, never as 0."""
    return "unknown (unpriced model)" if cost is None else f"${cost:.4f}"


def usage_line(summary: dict[str, Any]) -> str:
    """The closing line of every run: its id, samples stored, failed requests, tokens and cost."""
    u = summary.get("usage") or {}
    return (f"run: {summary.get('run_id')}   samples: {u.get('calls')}   failed requests: {u.get('failures')}   "
            f"tokens: {u.get('prompt_tokens')} in / {u.get('completion_tokens')} out   "
            f"cost: {money(u.get('cost_usd'))}")

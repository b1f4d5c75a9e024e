"""Search strategies: how many proofs to make, how to verify and refine them, which to pick.

Every strategy has a `name` and `async solve(problem, ctx) -> ProblemResult`; `make_strategy`
builds one by name with its options (the CLI's `--strategy` and `--option key=value`),
checking every option's type and range first (search/options.py) so a bad value is a one-line
UserInputError before any run exists. `options_help()` is the table for --help text.

    >>> make_strategy("single", k=2).k
    2
    >>> try:
    ...     make_strategy("pool", initial=2.5)
    ... except UserInputError as e:
    ...     print(str(e)[:58])
    bad option initial=2.5: expected an integer >= 1 (or null)
"""

from __future__ import annotations

from typing import Any

from proofloop.errors import UserInputError
from proofloop.search.adaptive import Adaptive
from proofloop.search.base import MemoryRecorder, ProblemResult, Recorder, SearchContext, StopReason
from proofloop.search.options import valid_keys, validate_options
from proofloop.search.options import options_help as _render_help
from proofloop.search.pool import Pool
from proofloop.search.sequential import Sequential
from proofloop.search.single import Single
from proofloop.search.tree import Tree

STRATEGIES: dict[str, type] = {"single": Single, "sequential": Sequential, "pool": Pool, "adaptive": Adaptive,
                             "tree": Tree}

__all__ = ["STRATEGIES", "make_strategy", "validate_options", "options_help", "MemoryRecorder", "ProblemResult",
           "Recorder", "SearchContext", "StopReason"]


def make_strategy(name: str, **options: Any):
    """The strategy `name` with `options`, each checked (validate_options), then the rules
    across keys (e.g. pass_min_valid <= verifications); UserInputError on any problem."""
    checked = validate_options(name, options)
    try:
        return STRATEGIES[name](**checked)
    except (TypeError, ValueError) as e:
        raise UserInputError(f"bad options for {name}: {e}; valid keys for {name}: {valid_keys(name)}") from None


def options_help() -> str:
    """Every strategy's option keys with type, default and meaning, and the presets."""
    return _render_help(STRATEGIES)

"""Search strategies: how many proofs to make, how to verify and refine them, which to pick.

Every strategy has a `name` and `async solve(problem, ctx) -> ProblemResult`; `make_strategy`
builds one by name with its options (the CLI's `--strategy` and `--option key=value`).
"""

from __future__ import annotations

from typing import Any

from proofloop.errors import UserInputError
from proofloop.search.base import MemoryRecorder, ProblemResult, Recorder, SearchContext
from proofloop.search.adaptive import Adaptive
from proofloop.search.pool import Pool
from proofloop.search.sequential import Sequential
from proofloop.search.single import Single

STRATEGIES: dict[str, type] = {"single": Single, "sequential": Sequential, "pool": Pool, "adaptive": Adaptive}

__all__ = ["STRATEGIES", "make_strategy", "MemoryRecorder", "ProblemResult", "Recorder", "SearchContext"]


def make_strategy(name: str, **options: Any):
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise UserInputError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None
    try:
        return cls(**options)
    except (TypeError, ValueError) as e:
        raise UserInputError(f"bad options for strategy {name!r}: {e}") from None

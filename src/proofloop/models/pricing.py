"""Token prices and cost. An unknown model has an unknown cost (None), never 0.

Prices are US dollars per million tokens: input (cache miss), cached input (prefix-cache
hit) and output. The table is a convenience snapshot of public list prices (checked
2025-10); pass your own with `Model(..., pricing=...)` when they differ.

    >>> p = price_for("deepseek-chat")
    >>> round(cost_usd(p, prompt_tokens=1_000_000, cached_prompt_tokens=0, completion_tokens=0), 2)
    0.28
    >>> price_for("my-own-model") is None
    True
    >>> price_for("my-own-model", {"my-own-model": Price(1.0, 0.5, 2.0)}).output_per_m
    2.0
    >>> priced(Usage(1_000_000, 0), p).cost_usd == cost_usd(p, prompt_tokens=1_000_000, cached_prompt_tokens=0,
    ...                                                      completion_tokens=0)
    True
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from proofloop.models.base import Usage


@dataclass(frozen=True)
class Price:
    input_per_m: float
    cached_input_per_m: float
    output_per_m: float


PRICES: dict[str, Price] = {
    # DeepSeek API (V3.2 pricing, both endpoints share it)
    "deepseek-chat": Price(0.28, 0.028, 0.42),
    "deepseek-reasoner": Price(0.28, 0.028, 0.42),
    # OpenAI
    "gpt-4o": Price(2.50, 1.25, 10.00),
    "gpt-4o-mini": Price(0.15, 0.075, 0.60),
    "gpt-4.1": Price(2.00, 0.50, 8.00),
    "gpt-4.1-mini": Price(0.40, 0.10, 1.60),
    "o4-mini": Price(1.10, 0.275, 4.40),
}

Pricing = Price | Mapping[str, Price]


def price_for(model: str, pricing: Pricing | None = None) -> Price | None:
    """The user's price (a Price for this model, or a model -> Price mapping) wins over the table."""
    if isinstance(pricing, Price):
        return pricing
    for table in (pricing or {}, PRICES):
        if model in table:
            return table[model]
        lowered = {k.lower(): v for k, v in table.items()}
        if model.lower() in lowered:
            return lowered[model.lower()]
    return None


def cost_usd(price: Price | None, *, prompt_tokens: int, cached_prompt_tokens: int,
             completion_tokens: int) -> float | None:
    """Cached prompt tokens are part of prompt_tokens and billed at the cached rate."""
    if price is None:
        return None
    fresh = max(0, prompt_tokens - cached_prompt_tokens)
    return (fresh * price.input_per_m + cached_prompt_tokens * price.cached_input_per_m
            + completion_tokens * price.output_per_m) / 1e6


def priced(usage: Usage, price: Price | None) -> Usage:
    """`usage` with its cost filled in from `price` (None when the price is unknown)."""
    return replace(usage, cost_usd=cost_usd(price, prompt_tokens=usage.prompt_tokens,
                                            cached_prompt_tokens=usage.cached_prompt_tokens,
                                            completion_tokens=usage.completion_tokens))

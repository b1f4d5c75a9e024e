"""Model layer: one provider interface, one wrapper, a few providers.

    from proofloop.models import Model, OpenAIProvider, Sampling
    model = Model(OpenAIProvider("deepseek-reasoner", base_url=..., api_key=...), cache=...)
    samples = await model.sample(messages, Sampling(temperature=1.0), n=8, tag="verify")

OpenAIProvider is imported on first use (the openai SDK takes a few hundred ms and tens of MB
to import, which `proofloop --help` and the simulator never need); LocalProvider (transformers,
optional extra) lives in proofloop.models.local.
"""

from typing import Any

from proofloop.models.base import (Completion, Message, Provider, ProviderResponse, RetryPolicy, Sampling, Timeouts,
                                   Usage)
from proofloop.models.cache import CallCache, CallRecord, FailureRecord, InMemoryCallCache, call_key
from proofloop.models.pricing import PRICES, Price, cost_usd, price_for
from proofloop.models.registry import provider_factory, provider_names, register_provider
from proofloop.models.wrapper import Accounting, Model, Sample, Tally

__all__ = ["Accounting", "CallCache", "CallRecord", "Completion", "FailureRecord", "InMemoryCallCache", "Message",
           "Model", "OpenAIProvider", "PRICES", "Price", "Provider", "ProviderResponse", "RetryPolicy", "Sample",
           "Sampling", "Tally", "Timeouts", "Usage", "call_key", "cost_usd", "openai_settings_from_env",
           "price_for", "provider_factory", "provider_names", "register_provider"]


def __getattr__(name: str) -> Any:
    if name in ("OpenAIProvider", "openai_settings_from_env"):
        from proofloop.models import openai_provider

        return getattr(openai_provider, name)
    raise AttributeError(f"module 'proofloop.models' has no attribute {name!r}")


"""Choosing and building a provider from flags, environment and `.env`.

Order: an explicit `--provider`; else `openai` when a server is configured (flag,
PROOFLOOP_BASE_URL or OPENAI_BASE_URL); else the embedded default, SmolLM2-135M-Instruct on
CPU, with a one-line notice that it is for trying proofloop offline only. Providers are found
by name in models/registry.py (entry points `proofloop.providers`); this module names none.

    >>> s = ModelSettings(provider="sim")
    >>> build_provider(s).name
    'sim'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from proofloop.errors import UserInputError
from proofloop.models.base import Timeouts
from proofloop.models.registry import provider_factory
from proofloop.models.replicas import split_base_urls


@dataclass
class ModelSettings:
    """Everything needed to rebuild the same provider on resume (the API key is never stored)."""

    provider: str | None = None
    base_url: str | None = None  # one server, or several replicas of the model, comma-separated
    model: str | None = None
    max_n: int | None = None
    stream: bool = True
    sim_seed: int = 0

    def resolved(self, api_key: str | None = None) -> tuple["ModelSettings", str | None]:
        """Fill in the provider, URL and model from the environment; return (settings, api key)."""
        from proofloop.models.openai_provider import openai_settings_from_env

        if self.provider is not None:
            provider_factory(self.provider)  # an unknown name fails here, listing the known ones
        s = ModelSettings(**asdict(self))
        if s.provider in (None, "openai"):
            base_url, key, model = openai_settings_from_env(s.base_url, api_key, s.model)
            if s.provider is None:
                s.provider = "openai" if base_url else "local"
            if s.provider == "openai":
                if not base_url:
                    raise UserInputError("the openai provider needs a server: pass --base-url or set PROOFLOOP_BASE_URL")
                if not model:
                    raise UserInputError("no model name: pass --model or set PROOFLOOP_MODEL")
                s.base_url, s.model = ",".join(split_base_urls(base_url)), model
                return s, key
        return s, api_key

    @property
    def base_urls(self) -> list[str]:
        """Every server of the model (several: replicas, see models/replicas.py)."""
        return split_base_urls(self.base_url)

    @property
    def endpoint(self) -> str:
        """The key under which concurrency is capped: one semaphore per server."""
        return self.base_url or f"{self.provider}:{self.model or 'default'}"


def build_provider(settings: ModelSettings, api_key: str | None = None, *, timeouts: Timeouts | None = None,
                   notice=print):
    """Build the provider that `settings` (already resolved, or resolvable) describe."""
    if settings.provider is None or (settings.provider == "openai" and not settings.base_url):
        settings, api_key = settings.resolved(api_key)
    return provider_factory(settings.provider)(settings, api_key=api_key, timeouts=timeouts, notice=notice)

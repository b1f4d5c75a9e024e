"""Provider names -> factories that build a Provider from ModelSettings.

Built-in providers are declared as Python entry points in the group `proofloop.providers`
(pyproject.toml); another installed package can add its own the same way, and a program can
call `register_provider` at run time. `BUILTIN_FACTORIES` repeats the built-in declarations
so the registry still finds them when the installed package metadata is stale (an editable
install made before the entry points existed). Lookup order: registered at run time, then
entry points, then the built-in table.

    >>> register_provider("echo", lambda settings, **kw: f"an echo provider for {settings}")
    >>> provider_factory("echo")("s")
    'an echo provider for s'
    >>> "echo" in provider_names() and "sim" in provider_names()
    True
    >>> provider_factory("nope")
    Traceback (most recent call last):
    ...
    proofloop.errors.UserInputError: unknown provider 'nope'; registered providers: echo, local, openai, sim
    >>> unregister_provider("echo")

A factory is called as `factory(settings, api_key=..., timeouts=..., notice=...)` and returns
a Provider (models/base.py); `notice` prints a one-line message to the user.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any, Callable, Protocol

from proofloop.errors import UserInputError
from proofloop.extras import declared_entry_points

if TYPE_CHECKING:
    from proofloop.models.base import Provider, Timeouts

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "proofloop.providers"
# The same "module:attribute" values as [project.entry-points."proofloop.providers"] in pyproject.toml.
BUILTIN_FACTORIES: dict[str, str] = {
    "openai": "proofloop.models.openai_provider:provider_from_settings",
    "local": "proofloop.models.local:provider_from_settings",
    "sim": "proofloop.sim.provider:provider_from_settings",
}

_REGISTERED: dict[str, "ProviderFactory"] = {}


class ProviderFactory(Protocol):
    def __call__(self, settings: Any, *, api_key: str | None, timeouts: "Timeouts | None",
                 notice: Callable[[str], None]) -> "Provider": ...


def register_provider(name: str, factory: ProviderFactory) -> None:
    """Make `name` build providers with `factory` in this process (replaces an earlier one)."""
    _REGISTERED[name] = factory


def unregister_provider(name: str) -> None:
    """Undo `register_provider(name, ...)` (built-in and entry-point providers stay)."""
    _REGISTERED.pop(name, None)


def _declared() -> dict[str, str]:
    """name -> "module:attribute" from installed entry points, over the built-in table."""
    return declared_entry_points(ENTRY_POINT_GROUP, BUILTIN_FACTORIES)


def provider_names() -> list[str]:
    """Every name a provider can be built under, sorted."""
    return sorted({*_declared(), *_REGISTERED})


def _load(value: str) -> ProviderFactory:
    module, _, attribute = value.partition(":")
    return getattr(importlib.import_module(module), attribute)


def provider_factory(name: str) -> ProviderFactory:
    """The factory registered for `name`; UserInputError listing the known names otherwise."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    declared = _declared()
    if name not in declared:
        raise UserInputError(f"unknown provider {name!r}; registered providers: {', '.join(provider_names())}")
    try:
        return _load(declared[name])
    except (ImportError, AttributeError) as e:
        if name in BUILTIN_FACTORIES and declared[name] != BUILTIN_FACTORIES[name]:
            log.debug("entry point %s = %s failed (%s); using the built-in one", name, declared[name], e)
            return _load(BUILTIN_FACTORIES[name])
        raise

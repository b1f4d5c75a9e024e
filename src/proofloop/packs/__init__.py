"""Domain packs by name: `math` (today's behaviour, the default), `law`, `code`, and any pack
another installed package declares.

A pack is declared as a Python entry point in the group `proofloop.packs` whose value names
a `Pack` (or a function of no arguments returning one), e.g. in a third party's pyproject.toml:

    [project.entry-points."proofloop.packs"]
    tax = "proofloop_tax:pack"

`BUILTIN_PACKS` repeats our own declarations so they are found when the installed metadata is
stale (an editable install made before packs existed), as models/registry.py does for providers.

    >>> get_pack("math").name, get_pack("math").templates is None
    ('math', True)
    >>> {"math", "law", "code"} <= set(pack_names())
    True
    >>> get_pack("nope")
    Traceback (most recent call last):
    ...
    proofloop.errors.UserInputError: unknown pack 'nope'; installed packs: code, law, math
"""

from __future__ import annotations

import importlib
from typing import Any

from proofloop.errors import UserInputError
from proofloop.extras import declared_entry_points
from proofloop.packs.base import EVIDENCE_HEADER, Evidence, IssueClass, Pack, Rubric, shown_with_evidence, with_evidence

__all__ = ["DEFAULT_PACK", "ENTRY_POINT_GROUP", "BUILTIN_PACKS", "EVIDENCE_HEADER", "Evidence", "IssueClass",
           "Pack", "Rubric", "get_pack", "pack_names", "pack_sources", "shown_with_evidence", "with_evidence"]


DEFAULT_PACK = "math"
ENTRY_POINT_GROUP = "proofloop.packs"
# The same "module:attribute" values as [project.entry-points."proofloop.packs"] in pyproject.toml.
BUILTIN_PACKS: dict[str, str] = {
    "math": "proofloop.packs.math:pack",
    "law": "proofloop.packs.law:pack",
    "code": "proofloop.packs.code:pack",
}


def pack_sources() -> dict[str, str]:
    """name -> "module:attribute": installed entry points over the built-in table."""
    return declared_entry_points(ENTRY_POINT_GROUP, BUILTIN_PACKS)


def pack_names() -> list[str]:
    return sorted(pack_sources())


def _load(name: str, value: str) -> Any:
    module, _, attribute = value.partition(":")
    target: Any = importlib.import_module(module)
    for part in filter(None, attribute.split(".")):
        target = getattr(target, part)
    return target


def get_pack(name: str | None) -> Pack:
    """The pack installed as `name` (None: the default); UserInputError naming the installed
    ones when there is none, or when its entry point does not give a Pack."""
    name = name or DEFAULT_PACK
    declared = pack_sources()
    if name not in declared:
        raise UserInputError(f"unknown pack {name!r}; installed packs: {', '.join(pack_names())}")
    try:
        found = _load(name, declared[name])
    except (ImportError, AttributeError) as e:
        if name in BUILTIN_PACKS and declared[name] != BUILTIN_PACKS[name]:
            found = _load(name, BUILTIN_PACKS[name])  # a stale entry point of our own
        else:
            raise UserInputError(f"pack {name!r} ({declared[name]}) cannot be loaded: {e}") from None
    pack = found() if callable(found) and not isinstance(found, Pack) else found
    if not isinstance(pack, Pack):
        raise UserInputError(f"pack {name!r} ({declared[name]}) is a {type(pack).__name__}, not a proofloop Pack")
    if pack.name != name:
        raise UserInputError(f"pack entry point {name!r} gives a pack named {pack.name!r}")
    return pack

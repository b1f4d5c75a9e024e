"""Optional parts of proofloop and the extras that install them.

    >>> require("json", "bench", "proofloop bench report").__name__
    'json'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from proofloop.errors import MissingExtra


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import `module`, or say in one line which extra `what` needs."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs the '{extra}' extra: pip install 'proofloop[{extra}]'") from None

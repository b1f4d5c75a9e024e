"""A stand-in for pyarrow, for the GPU check on a machine that lacks it: TRL's data utilities
import it at import time; the check never calls them."""


class _Missing:
    """What every name of this module is: usable in annotations and isinstance checks, an error when used."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: pyarrow is not installed here (bench/train/shims stands in)")


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (_Missing,), {})

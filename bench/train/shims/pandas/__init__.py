"""A stand-in for pandas, for the GPU check on a machine that lacks it: TRL imports pandas at
import time and uses it only to print completion tables, which the check does not ask for."""


class _Missing:
    """What every name of this module is: usable in annotations and isinstance checks, an error when used."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}: pandas is not installed here (bench/train/shims stands in)")


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (_Missing,), {})

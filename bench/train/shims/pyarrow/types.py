"""A stand-in for pyarrow's submodule, for the GPU check (see the package's __init__)."""

from pyarrow import __getattr__  # noqa: F401 - every name here is the package's stand-in

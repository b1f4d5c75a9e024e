"""The simulator: a seeded stand-in for DeepSeekMath-V2 and for the server that runs it.

    >>> from proofloop.sim import SimModel, make_problems, true_quality
    >>> out = SimModel().respond([{"role": "user", "content": make_problems(1)[0] + " ## Self Evaluation"}])
    >>> true_quality(out[0].text) is not None
    True

model.py: the model (pure); calibration.py: the verifier fitted to the released outputs;
server.py: the server timing model and the HTTP server; provider.py: the in-process Provider;
cli.py: `proofloop sim serve`. docs/SIMULATOR.md explains every number.
"""

from proofloop.sim.calibration import Calibration
from proofloop.sim.model import (SimConfig, SimModel, SimOutput, grade_of, make_problems, problem_difficulty,
                                 proof_defects, true_grade, true_quality)

_LAZY = {"SimProvider": "proofloop.sim.provider", "ServerModel": "proofloop.sim.server",
         "Work": "proofloop.sim.server", "lower_bound_makespan": "proofloop.sim.server"}


def __getattr__(name: str):
    # Lazy: the server model and the provider load only when used.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'proofloop.sim' has no attribute {name!r}")

__all__ = ["Calibration", "SimConfig", "SimModel", "SimOutput", "SimProvider", "ServerModel", "Work",
           "lower_bound_makespan", "make_problems", "true_quality", "true_grade", "grade_of",
           "problem_difficulty", "proof_defects"]

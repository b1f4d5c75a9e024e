"""A step verifier on ProcessBench-format samples: each sample's steps judged given their
prefix (roles.steps.judge_steps), the first step whose mean score is below `threshold` is the
prediction, and bench/processbench.py's metric scores the predictions.

    >>> import asyncio
    >>> from proofloop.models.wrapper import Model
    >>> from proofloop.sim.provider import SimProvider
    >>> from proofloop.bench.processbench import Sample
    >>> rows = [Sample("a", "Prove it.", ["<!-- sim:step id=q i=1 of=1 v=0 --> Wrong."], 0)]
    >>> preds, metrics = asyncio.run(evaluate_first_errors(Model(SimProvider(seed=0)), rows, n=8))
    >>> preds, metrics.n_error
    ({'a': 0}, 1)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from proofloop.bench.processbench import FirstErrorMetrics, Sample, first_error, first_error_metrics
from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.roles.steps import judge_steps

__all__ = ["predict_first_error", "evaluate_first_errors"]


async def predict_first_error(model: Model, sample: Sample, *, n: int = 1, threshold: float = 0.5,
                              sampling: Sampling | None = None) -> int:
    """The predicted index of the first wrong step of `sample` (-1: none)."""
    verifications = await judge_steps(model, sample.problem, sample.steps, n=n,
                                      sampling=sampling or Sampling(max_tokens=200_000))
    return first_error([v.mean_score for v in verifications], threshold)


async def evaluate_first_errors(model: Model, samples: Sequence[Sample], *, n: int = 1, threshold: float = 0.5,
                                sampling: Sampling | None = None) -> tuple[dict[str, int], FirstErrorMetrics]:
    """Every sample's prediction (all at once; the model caps concurrency) and the metric."""
    found = await asyncio.gather(*(predict_first_error(model, s, n=n, threshold=threshold, sampling=sampling)
                                   for s in samples))
    predictions = {s.id: p for s, p in zip(samples, found)}
    return predictions, first_error_metrics(samples, predictions)

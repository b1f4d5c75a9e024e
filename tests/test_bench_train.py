"""bench/train/run.py: a step's judged rewards are concurrent (on the simulator's virtual clock
the step takes as long as its slowest judge call, whatever the machine's speed), and the
bench's parts run and render."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parents[1] / "bench" / "train" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_train_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small(bench):
    step = dataclasses.replace(bench.QUICK, prompts=2, per_prompt=4, cpu_repeats=1)
    return step, bench.make_batch(step)


@pytest.mark.parametrize("task,requests", [("generator", 16), ("verifier", 8)])
def test_a_step_takes_one_judge_call_when_everything_is_concurrent(bench, small, task, requests):
    step, batch = small
    result = bench.judged_step(batch, step, task, max_concurrency=512)
    assert (result["completions"], result["requests"], result["no_reward"]) == (8, requests, 0)
    assert result["slowest_call_s"] > 60  # realistic judge latency: minutes of simulated decoding
    assert result["ratio"] <= 1.2


def test_judging_one_call_at_a_time_takes_many_calls(bench, small):
    """The same step with one request in flight: the clock shows the calls one after another."""
    step, batch = small
    result = bench.judged_step(batch, step, "generator", max_concurrency=1)
    assert result["ratio"] > 3


def test_the_reward_cpu_part_and_the_table(bench, small):
    step, batch = small
    cpu = bench.reward_cpu(bench.make_batch(step, pad_kb=4), repeats=1)
    assert 3.5 < cpu["mean_kb"] < 4.5 and cpu["generator_ms"] > 0 and cpu["verifier_ms"] > 0
    table = bench.render({"step": {"completions": 8, "n": 4}, "reward_cpu": {"4 KB outputs": cpu},
                          "wall": [bench.judged_step(batch, step, "verifier", max_concurrency=512)]})
    assert "| verifier | 512 | 8 |" in table and "| 4 KB outputs | " in table

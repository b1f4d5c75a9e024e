"""bench/search/regimes.py: one small cell per policy in a multi-round regime, its table and
printed ratios (the virtual clock makes every number independent of this machine's speed)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

REGIMES_PY = Path(__file__).resolve().parents[1] / "bench" / "search" / "regimes.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_search_regimes", REGIMES_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_cell(bench):
    pool = dict(bench.PAPER, initial=4, verifications=4, top_k=4, rounds=3)
    cfg = dataclasses.replace(bench.run.QUICK, regime="advanced", problems=2, seeds=(1,), params=pool,
                              adaptive=dict(stages=[2, 4], refine_min=2), streaming=dict(request_n=1))
    return {**bench.cell(bench.scaled(cfg, 1), 1, log=lambda s: None), "nodes": 1}


def test_cell_compares_the_schemes_on_the_same_decisions(small_cell):
    c = small_cell
    assert c["same_selection"]  # scheduling changes when calls happen, not what is decided
    assert (c["samples"]["release"] == c["samples"]["pool_fifo"] == c["samples"]["pool_fifo_client"]
            == c["samples"]["pool_priority"])
    r = c["ratios"]
    assert r["pool_fifo_vs_release"] == pytest.approx(c["makespan"]["pool_fifo"] / c["makespan"]["release"])
    for policy in ("fifo", "fifo_client", "priority"):  # nothing beats the lower bound
        assert r[f"pool_{policy}_vs_bound"] >= 1.0 - 1e-9
    assert r["adaptive_vs_pool_verif_tokens"] == pytest.approx(c["verif_tokens_adaptive"] / c["verif_tokens_pool"])
    assert max(c["rounds"]) >= 1  # the advanced regime refines (released stops at round 0)


def test_table_marks_targets(bench, small_cell):
    text = bench.table([small_cell])
    row = text.splitlines()[2]
    assert row.startswith("| advanced | 1 | 2 |"), row
    fifo = small_cell["ratios"]["pool_fifo_vs_release"]
    ordered = small_cell["ratios"]["pool_fifo_client_vs_release"]
    assert f"{fifo:.3f} ({'yes' if fifo <= 0.6 else '**no**'}) | {ordered:.3f} (" in row


def test_unknown_regime_is_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--regimes", "nope"])


def test_makespan_table_shows_the_floor_under_pool_vs_release(bench, small_cell):
    row = bench.makespans([small_cell]).splitlines()[2]
    m = small_cell["makespan"]
    assert f"| {m['release']:.0f} | {m['pool_fifo']:.0f} |" in row
    assert f"| {small_cell['bound_priority'] / m['release']:.3f} |" in row

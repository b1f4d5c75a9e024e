"""bench/search/run.py: the virtual clock, replay equivalence of the release scheme and streaming
pool, the lower bound, the README block and the printed ratios (a reduced quick run)."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import math
import re
import sys
import time
from pathlib import Path

import pytest

from proofloop.sim.server import ServerModel

RUN_PY = Path(__file__).resolve().parents[1] / "bench" / "search" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_search_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(bench):
    return dataclasses.replace(bench.QUICK, problems=4, seeds=(3,),
                               params=dict(initial=4, verifications=8, top_k=2, analyses_per_prompt=4,
                                           max_per_score=2, samples_per_prompt=2, rounds=2,
                                           accept=False),  # nothing is accepted: every round runs
                               adaptive=dict(stages=[2, 4, 8], refine_min=4))


@pytest.fixture(scope="module")
def seed_result(bench, tiny):
    return bench.run_seed(tiny, 3, log=lambda s: None)


def test_virtual_clock_jumps_and_keeps_the_server_model_exact(bench):
    async def main():
        srv = ServerModel(slots=2, decode_tps_seq=10, decode_tps_total=1e9, prefill_tps=1e9, time_scale=1.0)
        infos = await asyncio.gather(*(srv.run([(b"a", 100)], [100]) for _ in range(3)))
        await asyncio.sleep(3600)
        return [i.finished_at for i in infos]

    t0 = time.perf_counter()
    finished, elapsed = bench.run_virtual(main())
    assert time.perf_counter() - t0 < 30  # an hour and 20 simulated seconds, no real waiting (slack for a loaded machine)
    assert [round(f, 6) for f in finished] == [10.0, 10.0, 20.0]  # 2 slots: the third waits (10 s each)
    assert elapsed == pytest.approx(3620.0)


def test_release_and_streaming_pool_select_the_same_proofs(seed_result):
    runs = seed_result["runs"]
    a, b = runs["release"], runs["pool"]
    assert all(s is not None for s in a.selected)
    assert a.selected == b.selected and seed_result["same_selection"]
    # (b) replayed over (a)'s call cache sends nothing and still picks the same proofs
    assert seed_result["replay_same_selection"] and seed_result["replay_requests"] == 0
    # the same work: every sample of (a) is a sample of (b); only the grouping into requests differs
    assert a.tag("verify", "samples") == b.tag("verify", "samples") > 0
    assert a.tag("verify", "calls") == a.tag("verify", "samples")  # n duplicated single requests
    assert b.tag("verify", "calls") < b.tag("verify", "samples")  # n per request
    assert a.server["decode_tokens"] == b.server["decode_tokens"]
    assert a.quality == b.quality


def test_replay_with_other_parameters_misses_the_cache(bench, tiny):
    # The check can fail: replaying with other parameters (top 1 instead of top 2) must send
    # requests (prompts (a) never made) and may choose differently.
    problems = bench.make_problems(tiny.problems, seed=tiny.problem_seed, mix=tiny.mix)
    release = bench.run_scheme("release", tiny, problems, 3)
    other = dataclasses.replace(tiny, params={**tiny.params, "top_k": 1})
    _, sent = bench.replay_selection(other, problems, 3, release.cache)
    assert sent > 0


def test_lower_bound_is_below_every_makespan_of_that_work(seed_result):
    lb = seed_result["lower_bound"]
    assert lb["bound_s"] == max(lb["prefill_s"], lb["decode_s"], lb["chain_s"]) > 0
    assert lb["chain_calls"] >= 2 * 3  # rounds 0..2: a generation and a verification each
    assert seed_result["runs"]["pool"].makespan_s >= lb["bound_s"] * (1 - 1e-9)
    assert seed_result["runs"]["release"].makespan_s >= lb["bound_s"] * (1 - 1e-9)


def test_ratios_are_computed_from_the_runs(bench, seed_result):
    r, runs = seed_result["ratios"], seed_result["runs"]
    assert set(r) == set(bench.RATIO_NAMES)
    assert r["makespan_ratio_streaming_vs_release"] == runs["pool"].makespan_s / runs["release"].makespan_s
    assert r["quality_delta_adaptive_vs_pool"] == runs["adaptive"].mean_quality - runs["pool"].mean_quality
    assert all(math.isfinite(v) for v in r.values())


def test_ablation_without_priority_changes_time_not_choices(bench, tiny, seed_result):
    assert tiny.streaming.get("request_n") == 1  # (b)-(d) stream proofs one per request, with priorities
    ab = bench.ablation(tiny, "fifo", dict(request_n=1, priority=False), 3, log=lambda s: None)
    assert ab["selected"] == seed_result["runs"]["pool"].selected and ab["pool_s"] > 0
    text = bench.report(tiny, [seed_result], None, [], [ab])
    assert "Ablations" in text and "| fifo | {'request_n': 1, 'priority': False} |" in text


def test_readme_block_is_replaced_in_place(bench, tmp_path):
    path = tmp_path / "README.md"
    path.write_text(f"# Title\n\nprose\n\n{bench.START}\nold\n{bench.END}\n\ntail\n")
    out = {"seconds": 1.0, "report": "| table |", "ratios": {"x": 0.5}}
    bench.write_readme(path, "make bench-search", out)
    bench.write_readme(path, "make bench-search", out)
    text = path.read_text()
    assert text.startswith("# Title\n\nprose\n\n") and text.endswith("\n\ntail\n")
    assert text.count(bench.START) == 1 and "old" not in text and "x=0.5000" in text


def test_quick_cli_prints_the_five_ratios(bench, capsys):
    assert bench.main(["--quick", "--problems", "3", "--seeds", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    names = ["makespan_ratio_streaming_vs_release", "verif_token_ratio_adaptive_vs_pool",
             "quality_delta_adaptive_vs_pool", "prompt_token_ratio_n_vs_release", "makespan_ratio_to_lower_bound"]
    assert [line.split("=")[0] for line in out[-5:]] == names
    for line in out[-5:]:
        assert re.fullmatch(r"[a-z_]+=-?\d+\.\d{4}", line)
    assert any("calls/s" in line for line in out)  # the orchestrator-overhead table ran

"""The training loop (train/loop.py) on CPU: the tiny in-process model, the simulator as the
served generator and judge, a few steps. It runs every stage and writes every artefact; a
loop stopped by a failure resumes at the first unfinished stage, repeats no finished model
call and no finished training; a GRPO stage cut short resumes from its checkpoint."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("proofloop.train.grpo")

import proofloop.train.grpo as grpo  # noqa: E402
import proofloop.train.loop as L  # noqa: E402
import proofloop.train.rft as rft  # noqa: E402
from proofloop.errors import UserInputError  # noqa: E402
from proofloop.models.factory import ModelSettings  # noqa: E402
from proofloop.rows import read_rows  # noqa: E402
from proofloop.runs import ModelSetup, RunContext, execute, get_kind  # noqa: E402
from proofloop.store import Store  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROBLEMS = ROOT / "examples" / "train" / "problems.jsonl"
SEED = ROOT / "examples" / "train" / "verifier-seed.jsonl"
TINY = L.LoopSettings(steps=2, num_generations=2, max_completion_length=8, save_steps=1, judge_n=2,
                      proofs_per_problem=2, n=3, m=2, k=1, rft_steps=2, rft_max_length=1024)
quiet = dict(notice=lambda line: None)


def new_loop(store: Store, out: Path, settings: L.LoopSettings = TINY, **config) -> str:
    run = L.create_loop_run(store, problems=read_rows(PROBLEMS), verifier_data=SEED, model="tiny", output_dir=out,
                            judge=ModelSetup(ModelSettings(provider="sim"), seed=0), settings=settings)
    if config:
        store.update_run_config(run, config)
    return run


def counting(monkeypatch, module, name):
    """Count the calls of module.name (a training function), still doing the work."""
    original, calls = getattr(module, name), []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("resume"))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def stored_calls(store: Store) -> dict[tuple[str, str], object]:
    return {(c.namespace, c.key): c.created_at for c in store.calls()}


def test_one_iteration_runs_every_stage_and_a_resume_repeats_nothing_finished(tmp_path, monkeypatch):
    store, out = Store(tmp_path / "store.db"), tmp_path / "out"
    run = new_loop(store, out)
    grpo_calls = counting(monkeypatch, grpo, "train_grpo")
    rft_calls = counting(monkeypatch, rft, "train_rft")
    children = []

    def second_child_fails(store_, run_id, **kwargs):  # the loop dies while generating
        children.append(run_id)
        if len(children) == 2:
            raise RuntimeError("killed while generating")
        return execute(store_, run_id, **kwargs)

    monkeypatch.setattr(L, "execute", second_child_fails)
    with pytest.raises(RuntimeError, match="killed while generating"):
        execute(store, run, **quiet)
    stages = store.get_run(run).config["stages"]
    assert [s for s in L.STAGES if stages.get(s, {}).get("status") == "finished"] == ["verifier", "generator-init",
                                                                                     "generator"]
    prove_runs = stages["generate"]["runs"]
    assert stages["generate"]["status"] == "running" and len(prove_runs) == 3
    assert [store.get_run(r).status for r in prove_runs] == ["finished", "running", "running"]
    before = stored_calls(store)
    assert before and all(ns == prove_runs[0] for ns, _ in before)  # only the first prove run called the model
    verifier_weights = (out / "verifier" / "model.safetensors").stat().st_mtime_ns

    monkeypatch.setattr(L, "execute", execute)
    summary = execute(store, run, **quiet)

    after = stored_calls(store)
    assert {k: after[k] for k in before} == before  # every finished call kept, none made again
    assert len(after) > len(before)
    assert grpo_calls == [False, False] and rft_calls == [False]  # no training done twice
    assert (out / "verifier" / "model.safetensors").stat().st_mtime_ns == verifier_weights
    st, art = summary["stages"], summary["artefacts"]
    assert all(st[s]["status"] == "finished" for s in L.STAGES) and summary["stopped_after"] is None
    assert st["generate"]["runs"] == prove_runs and art["prove_runs"] == prove_runs
    assert st["generator"]["from"] == st["generator-init"]["model"] == str(out / "verifier")
    assert st["rft"]["from"] == str(out / "generator") and art["rft_model"] == str(out / "rft")
    for model in ("verifier", "generator", "rft"):
        assert (out / model / "model.safetensors").is_file() and (out / model / "tokenizer.json").is_file()
    for task in ("verifier", "generator"):
        rewards = [json.loads(line) for line in (out / task / "rewards.jsonl").read_text().splitlines()]
        assert rewards and {r["task"] for r in rewards} == {task}
    labels = read_rows(art["labels"])
    assert len(labels) == st["generate"]["proofs"] == len({r["id"] for r in labels}) > 0
    assert store.get_run(art["label_run"]).status == "finished"
    assert st["label"]["n"] == 3 and st["label"]["m"] == 2 and st["label"]["k"] == 1
    next_rows = read_rows(art["next_verifier_set"])
    labelled = [r for r in labels if r["status"] == "labelled"]
    assert len(next_rows) == len(read_rows(SEED)) + len(labelled) == st["next-verifier-set"]["seed"] + len(labelled)
    assert len(read_rows(art["next_verifier_set_trl"])) == len(next_rows)
    nv = st["next-verifier-set"]  # the meta-verifier set, or why there is none
    assert ("meta_verifier" in nv) != ("meta_verifier_missing" in nv)
    if "meta_verifier" in nv:
        assert read_rows(nv["meta_verifier"]) and art["meta_verifier_set"] == nv["meta_verifier"]
    rft_set = read_rows(art["rft_set"])
    assert len(rft_set) == st["rft"]["examples"] > 0 and st["rft"]["steps"] == TINY.rft_steps
    lines = get_kind("train-loop").render(summary)
    assert any(art["label_run"] in line for line in lines) and any(str(out / "rft") in line for line in lines)


class StopAtFirstSave(TrainerCallback):
    """Kills training right after its first checkpoint."""

    def on_save(self, args, state, control, **kwargs):
        raise RuntimeError(f"killed after checkpoint {state.global_step}")


def test_a_training_stage_cut_short_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    store, out = Store(tmp_path / "store.db"), tmp_path / "out"
    run = new_loop(store, out, stop_after="verifier")
    original, calls = grpo.train_grpo, []

    def cut_short_once(*args, **kwargs):
        calls.append(kwargs["resume"])
        callbacks = [StopAtFirstSave()] if len(calls) == 1 else []
        return original(*args, callbacks=callbacks, **kwargs)

    monkeypatch.setattr(grpo, "train_grpo", cut_short_once)
    with pytest.raises(RuntimeError, match="killed after checkpoint 1"):
        execute(store, run, **quiet)
    assert (out / "verifier" / "checkpoint-1").is_dir() and "verifier" not in store.get_run(run).config["stages"]
    summary = execute(store, run, **quiet)
    assert calls == [False, True]
    record = summary["stages"]["verifier"]
    assert record["resumed"] is True and record["steps"] == TINY.steps and record["status"] == "finished"
    assert summary["stopped_after"] == "verifier" and summary["artefacts"]["rft_model"] is None
    assert (out / "verifier" / "checkpoint-2").is_dir()
    assert any("not done" in line for line in L.render_loop(summary))


def test_the_judges_calls_are_stored_under_the_loop_and_replayed(tmp_path):
    store = Store(tmp_path / "store.db")
    run = new_loop(store, tmp_path / "out", settings=L.LoopSettings(judge_n=2, n=2, k=1))
    loop = L.Loop(RunContext.build(store, run, store.get_run(run).config, **quiet))
    output = ("## Solution\n\nBoth are 2a + 1 and 2b + 1; the sum is 2(a + b + 1).\n\n## Self Evaluation\n\n"
              "Here is my evaluation of the solution: complete.\n\n"
              "Based on my evaluation, the final overall score should be: \\boxed{1}")
    problem = read_rows(PROBLEMS)[0]["problem"]
    [first] = asyncio.run(loop.judge().generator_rewards(problem, [output]))
    calls = stored_calls(store)
    assert first.total is not None and calls and {ns for ns, _ in calls} == {run}
    [again] = asyncio.run(loop.judge().generator_rewards(problem, [output]))  # a new judge, as a resumed stage has
    assert again == first and stored_calls(store) == calls


# ---------------------------------------------------------------------------- pure parts


def test_settings_refuse_what_cannot_work():
    with pytest.raises(UserInputError, match="k=3 exceeds n=2"):
        L.LoopSettings(n=2, k=3)
    with pytest.raises(UserInputError, match="--proofs-per-problem must be at least 1"):
        L.LoopSettings(proofs_per_problem=0)


@pytest.mark.parametrize("fields", [dict(), dict(temperature=0.5, top_p=0.9, max_tokens=64, verify_max_tokens=32,
                                                  seed=7, max_concurrency=3)])
def test_a_server_setup_is_stored_and_rebuilt_exactly(fields):
    setup = ModelSetup(ModelSettings(provider="sim"), **fields).resolved()
    again = L.setup_from(json.loads(json.dumps(L.setup_fields(setup)))).resolved()
    assert again.config() == setup.config()


def test_servers_can_be_pointed_elsewhere_before_resuming(tmp_path):
    store = Store(tmp_path / "store.db")
    run = new_loop(store, tmp_path / "out")
    L.point_servers(store, run, judge={"base_url": None, "model": None},
                    generator={"provider": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "gen"})
    config = store.get_run(run).config
    assert config["generator_server"]["settings"]["base_url"] == "http://127.0.0.1:8000/v1"
    assert config["generator_server"]["settings"]["model"] == "gen"
    assert config["judge"]["settings"]["provider"] == "sim" and config["model"]["provider"] == "sim"


def test_a_new_generator_server_remakes_an_unfinished_generate_stage_only(tmp_path):
    store = Store(tmp_path / "store.db")
    run = new_loop(store, tmp_path / "out")
    unfinished = {"verifier": {"status": "finished"}, "generate": {"status": "running", "runs": ["r-old"]}}
    store.update_run_config(run, {"stages": unfinished})
    L.point_servers(store, run, judge={}, generator={"model": "gen-2"})
    assert store.get_run(run).config["stages"] == {"verifier": {"status": "finished"}}
    finished = {"generate": {"status": "finished", "runs": ["r-old"]}}
    store.update_run_config(run, {"stages": finished})
    L.point_servers(store, run, judge={}, generator={"model": "gen-3"})
    assert store.get_run(run).config["stages"] == finished


def test_a_new_loop_refuses_bad_input(tmp_path):
    store = Store(tmp_path / "store.db")
    judge = ModelSetup(ModelSettings(provider="sim"))
    with pytest.raises(UserInputError, match="non-empty `problem`"):
        L.create_loop_run(store, problems=[{"id": "x"}], verifier_data=SEED, model="tiny", output_dir=tmp_path,
                          judge=judge)
    with pytest.raises(UserInputError, match="verifier data not found"):
        L.create_loop_run(store, problems=read_rows(PROBLEMS), verifier_data=tmp_path / "none.jsonl",
                          model="tiny", output_dir=tmp_path, judge=judge)


def test_the_command_starts_stops_after_a_stage_and_resumes(tmp_path):
    env = {**os.environ, "PROOFLOOP_DB": str(tmp_path / "store.db")}
    command = [sys.executable, "-m", "proofloop.cli", "train", "loop"]
    tiny = ["--judge-provider", "sim", "--steps", "1", "--num-generations", "2", "--max-completion-length", "8",
            "--save-steps", "1"]
    done = subprocess.run([*command, "--problems", str(PROBLEMS), "--verifier-data", str(SEED), "--model", "tiny",
                           "--output-dir", str(tmp_path / "out"), *tiny, "--stop-after", "verifier", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)  # the trainer's logs went to stderr
    assert summary["stopped_after"] == "verifier" and summary["stages"]["verifier"]["steps"] == 1
    resumed = subprocess.run([*command, "--resume", summary["run_id"], "--stop-after", "generator-init"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"generator init  from {tmp_path / 'out' / 'verifier'}" in resumed.stdout
    assert "generator         not done" in resumed.stdout
    assert f"continue with `proofloop train loop --resume {summary['run_id']}`" in resumed.stdout


@pytest.mark.parametrize("args, message", [
    (["--problems", str(PROBLEMS)], "a new loop needs --problems, --verifier-data, --model and --output-dir"),
    (["--resume", "r-none"], "no train-loop run 'r-none'"),
    (["--resume", "r-none", "--stop-after", "lunch"], "--stop-after must be one of verifier"),
])
def test_the_command_says_what_is_wrong_in_one_line(tmp_path, args, message):
    env = {**os.environ, "PROOFLOOP_DB": str(tmp_path / "store.db")}
    done = subprocess.run([sys.executable, "-m", "proofloop.cli", "train", "loop", *args], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1

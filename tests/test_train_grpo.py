"""GRPO on TRL: real steps on CPU with a tiny model built in-process, rewards from the
simulator through the real reward code; the logged reward is the one the logged components
give; a failed judge is no reward and is counted; checkpoints resume."""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections import defaultdict

import pytest

pytest.importorskip("trl")
os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may download

import torch  # noqa: E402

from proofloop.errors import BadRequestError, UserInputError  # noqa: E402
from proofloop.models.base import Sampling  # noqa: E402
from proofloop.models.wrapper import Model  # noqa: E402
from proofloop.sim import make_problems  # noqa: E402
from proofloop.sim.provider import SimProvider  # noqa: E402
from proofloop.train.grpo import (GrpoSettings, TaskReward, grpo_kwargs, train_grpo,  # noqa: E402
                                  training_rows)
from proofloop.train.judge import Judge  # noqa: E402
from proofloop.train.rewards import ALPHA, BETA  # noqa: E402
from proofloop.train.tiny import TINY_TEMPLATES, sample_outputs, tiny_model, tiny_tokenizer, warm_start  # noqa: E402

pytestmark = pytest.mark.slow
PROBLEMS = make_problems(2, seed=3)
LENGTH = {"verifier": 12, "meta-verifier": 12, "generator": 24}  # tokens: room for the contract


@pytest.fixture(autouse=True)
def one_thread():
    """Two cores shared by many processes: one thread is the fastest and steadiest."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rows_for(task: str) -> list[dict]:
    if task == "verifier":
        return [{"id": f"v{i}", "problem": p, "proof": f"By induction on n. ({i})", "status": "labelled",
                 "score": s} for i, (p, s) in enumerate(zip(PROBLEMS, (1.0, 0.5)))]
    if task == "meta-verifier":
        return [{"id": f"m{i}", "problem": p, "proof": "By induction.", "analysis": "It is complete.",
                 "rating": r} for i, (p, r) in enumerate(zip(PROBLEMS, (1.0, 0.0)))]
    return [{"id": f"g{i}", "problem": p} for i, p in enumerate(PROBLEMS)]


def policy(task: str, folder) -> tuple[str, object]:
    """A tiny model taught the task's output contract (a random one rarely keeps the
    generator's), saved where TRL can load it and its KL reference from."""
    tok = tiny_tokenizer()
    prompt = training_rows(task, rows_for(task), templates=TINY_TEMPLATES)[0]["prompt"]
    model = warm_start(tiny_model(tok), tok, prompt, sample_outputs(task, 16))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder), tok


def settings(steps: int = 2, **kw) -> GrpoSettings:
    # a learning rate large enough that one step visibly moves a 0.1M-parameter model
    return GrpoSettings(steps=steps, num_generations=4, save_steps=1, use_cpu=True,
                        overrides={"learning_rate": 1e-3, **kw})


def sim_judge() -> Judge:
    return Judge(Model(SimProvider(seed=4)), n=2, sampling=Sampling(max_tokens=200_000))


def paper_total(task: str, components: dict) -> float:
    """The paper's reward from its logged components (DESIGN.md §2), computed again here."""
    if components["format"] == 0.0:
        return 0.0
    if task == "generator":
        return ALPHA * components["proof"] + BETA * components["self_evaluation"]
    return components["score"] * components.get("meta", 1.0)


def reward_lines(run) -> list[dict]:
    return [json.loads(line) for line in run.rewards_path.read_text().splitlines()]


def check_logged_rewards(run, task: str) -> list[dict]:
    """Each completion's total is the paper's formula of its components, and each step's
    logged reward (and component means) is what those completions give."""
    lines = reward_lines(run)
    by_step = defaultdict(list)
    for line in lines:
        if line["total"] is not None:
            assert line["total"] == pytest.approx(paper_total(task, line["components"]))
        by_step[line["step"]].append(line)
    logged = {entry["step"]: entry for entry in run.log if "reward" in entry}
    assert sorted(logged) == [s + 1 for s in sorted(by_step)]  # rewards of step s are logged at s + 1
    for step, group in by_step.items():
        totals = [line["total"] for line in group if line["total"] is not None]
        entry = logged[step + 1]
        if totals:
            assert entry["reward"] == pytest.approx(sum(totals) / len(totals), abs=1e-6)
        else:  # no completion had a reward: TRL logs NaN, never 0
            assert math.isnan(entry["reward"])
        for name in {k for line in group for k in line["components"]}:
            values = [line["components"][name] for line in group if name in line["components"]]
            assert entry[f"reward_components/{name}"] == pytest.approx(sum(values) / len(values), abs=1e-6)
        assert entry["reward_counts/failed_judgements"] == sum(line["total"] is None for line in group)
    return lines


def weights(model_dir) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(model_dir, "model.safetensors"))


def assert_weights_changed(before_dir, after_dir) -> None:
    before, after = weights(before_dir), weights(after_dir)
    assert before.keys() == after.keys()
    assert max((after[k] - before[k]).abs().max().item() for k in before) > 1e-5


@pytest.mark.parametrize("task", ["verifier", "generator"])
def test_grpo_steps_train_on_judged_rewards_that_the_logged_components_give(task, tmp_path):
    path, tok = policy(task, tmp_path / "policy")
    run = train_grpo(task, path, rows_for(task), tmp_path / "out", tokenizer=tok, judge=sim_judge(),
                     templates=TINY_TEMPLATES, with_meta=task == "verifier",
                     settings=settings(max_completion_length=LENGTH[task]))
    assert run.steps == 2
    assert_weights_changed(path, tmp_path / "out")
    lines = check_logged_rewards(run, task)
    judged = [line for line in lines if line["components"].get("format") == 1.0]
    assert len(lines) == 8 and judged  # 2 steps x 4 completions; some kept the contract and were judged
    assert {"meta" if task == "verifier" else "proof"} <= set(judged[0]["components"])
    assert len({line["total"] for line in lines}) > 1  # the group's rewards differ: advantages are not all 0
    assert run.stats.completions == 8 and run.stats.failed_judgements == 0


def test_meta_verifier_checkpoint_then_resume_continues_the_run(tmp_path):
    path, tok = policy("meta-verifier", tmp_path / "policy")
    rows, out = rows_for("meta-verifier"), tmp_path / "out"
    first = train_grpo("meta-verifier", path, rows, out, tokenizer=tok, templates=TINY_TEMPLATES,
                       settings=settings(steps=1, max_completion_length=LENGTH["meta-verifier"]))
    assert first.steps == 1 and (out / "checkpoint-1").is_dir()
    resumed = train_grpo("meta-verifier", path, rows, out, tokenizer=tok, templates=TINY_TEMPLATES, resume=True,
                         settings=settings(steps=2, max_completion_length=LENGTH["meta-verifier"]))
    assert resumed.steps == 2 and (out / "checkpoint-2").is_dir()
    assert [e["step"] for e in resumed.log if "reward" in e] == [1, 2]  # the history came with the checkpoint
    assert [line["step"] for line in reward_lines(resumed)] == [0] * 4 + [1] * 4  # step 1 was not redone
    check_logged_rewards(resumed, "meta-verifier")
    assert_weights_changed(path, out)


def test_resume_without_a_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError, match="no checkpoint"):
        train_grpo("verifier", "unused", rows_for("verifier"), tmp_path, resume=True)


class FailingJudge:
    name, model, max_n = "failing", "failing-1", None

    async def complete(self, messages, sampling, n):
        raise BadRequestError("the judge refuses", status=400)


def test_a_failed_judge_is_no_reward_and_is_counted_not_a_zero(tmp_path):
    problem, outputs = PROBLEMS[0], sample_outputs("generator", 6, broken=0.5, seed=1)
    kept = [o for o in outputs if "should be:" in o]
    assert 0 < len(kept) < len(outputs)
    logged: dict[str, float] = {}
    reward = TaskReward("generator", judge=Judge(Model(FailingJudge()), n=2), rewards_path=tmp_path / "r.jsonl")
    totals = asyncio.run(reward(prompts=[[]] * 6, completions=outputs, problem=[problem] * 6,
                                log_metric=logged.__setitem__))
    assert totals == [None if "should be:" in o else 0.0 for o in outputs]
    assert (reward.stats.failed_judgements, reward.stats.format_failures) == (len(kept), len(outputs) - len(kept))
    assert logged["reward_counts/failed_judgements"] == len(kept)
    assert all("failed" in json.loads(line)["reason"] for line in (tmp_path / "r.jsonl").read_text().splitlines()
               if json.loads(line)["total"] is None)


def test_trl_takes_a_failed_judges_none_as_no_reward(tmp_path):
    path, tok = policy("generator", tmp_path / "policy")
    run = train_grpo("generator", path, rows_for("generator"), tmp_path / "out", tokenizer=tok,
                     judge=Judge(Model(FailingJudge()), n=2), templates=TINY_TEMPLATES,
                     settings=settings(steps=1, max_completion_length=LENGTH["generator"]))
    lines = check_logged_rewards(run, "generator")
    assert run.stats.failed_judgements == sum(line["total"] is None for line in lines) > 0


def test_paper_settings_and_vllm_modes():
    kw = grpo_kwargs("out", GrpoSettings(), cpu=True)
    assert (kw["loss_type"], kw["beta"], kw["scale_rewards"], kw["top_p"], kw["temperature"]) == \
        ("grpo", 0.04, "group", 0.95, 1.0)
    assert (kw["use_cpu"], kw["bf16"], kw["use_vllm"], "vllm_mode" in kw) == (True, False, False, False)
    for mode in ("server", "colocate"):
        gpu = grpo_kwargs("out", GrpoSettings(vllm=mode), cpu=False)
        assert (gpu["use_vllm"], gpu["vllm_mode"], gpu["use_cpu"], "bf16" in gpu) == (True, mode, False, False)
    url = grpo_kwargs("out", GrpoSettings(vllm="server", vllm_server_url="http://h:8001"), cpu=False)
    assert url["vllm_server_base_url"] == "http://h:8001"
    with pytest.raises(UserInputError, match="goes with --vllm server"):
        GrpoSettings(vllm="colocate", vllm_server_url="http://h:8001")
    with pytest.raises(UserInputError, match="needs a GPU"):
        grpo_kwargs("out", GrpoSettings(vllm="server"), cpu=True)
    with pytest.raises(UserInputError, match="--vllm must be one of"):
        GrpoSettings(vllm="remote")
    with pytest.raises(UserInputError, match="at least 2"):
        GrpoSettings(num_generations=1)


def test_rows_need_their_tasks_columns():
    with pytest.raises(UserInputError, match=r"lacks column\(s\) score"):
        training_rows("verifier", [{"problem": "P", "proof": "Q", "status": "labelled"}])
    with pytest.raises(UserInputError, match="no usable verifier rows"):
        training_rows("verifier", [{"problem": "P", "proof": "Q", "status": "discarded", "score": None}])
    rows = training_rows("verifier", rows_for("verifier"))
    assert [r["target"] for r in rows] == [1.0, 0.5] and rows[0]["proof"].startswith("By induction")
    assert [r["problem"] for r in training_rows("generator", [{"statement": "S"}])] == ["S"]


# ----------------------------------------------------------------------------- the CLI


def cli(capsys, *args: str) -> tuple[int, str, str]:
    from proofloop.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", *args])
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def write_rows(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("case, expected", [
    ("missing file", "no such file"),
    ("wrong columns", "lacks column(s) proof, status, score"),
    ("bad vllm", "--vllm must be one of"),
    ("no judge", "needs a judge model"),
    ("meta without a judge", "needs a judge model"),
    ("resume without checkpoint", "no checkpoint"),
    ("weights for the verifier", "--alpha and --beta weigh the generator's reward"),
])
def test_cli_bad_input_is_one_line_and_exit_2(case, expected, tmp_path, capsys):
    verifier_rows = write_rows(tmp_path / "v.jsonl", rows_for("verifier"))
    args = {
        "missing file": ["verifier", "--data", str(tmp_path / "none.jsonl")],
        "wrong columns": ["verifier", "--data", write_rows(tmp_path / "p.jsonl", rows_for("generator"))],
        "bad vllm": ["verifier", "--data", verifier_rows, "--vllm", "remote"],
        "no judge": ["generator", "--data", write_rows(tmp_path / "g.jsonl", rows_for("generator"))],
        "meta without a judge": ["verifier", "--data", verifier_rows, "--with-meta"],
        "resume without checkpoint": ["verifier", "--data", verifier_rows, "--resume"],
        "weights for the verifier": ["verifier", "--data", verifier_rows, "--alpha", "1"],
    }[case]
    code, out, err = cli(capsys, *args, "--model", "unused", "--output-dir", str(tmp_path / "out"), "--cpu")
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert out == ""


def test_cli_without_the_train_extra_says_which_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "trl", None)  # as if trl were not installed
    code, _, err = cli(capsys, "verifier", "--data", write_rows(tmp_path / "v.jsonl", rows_for("verifier")),
                       "--model", "unused", "--output-dir", str(tmp_path / "out"))
    assert code == 2 and "needs the 'train' extra" in err and len(err.strip().splitlines()) == 1


def test_cli_trains_the_generator_against_the_simulated_judge(tmp_path, capsys):
    path, _ = policy("generator", tmp_path / "policy")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "generate.md").write_text(TINY_TEMPLATES.generate)
    code, out, err = cli(capsys, "generator", "--model", path, "--output-dir", str(tmp_path / "out"),
                         "--data", write_rows(tmp_path / "g.jsonl", rows_for("generator")),
                         "--templates", str(templates), "--steps", "1", "--num-generations", "2",
                         "--max-completion-length", str(LENGTH["generator"]), "--cpu", "--judge-provider", "sim",
                         "--judge-n", "2", "--judge-max-tokens", "200000", "--json")
    assert code == 0, err
    summary = json.loads(out)  # stdout holds the summary only (TRL's logs go to stderr)
    assert (summary["steps"], summary["completions"], summary["failed_judgements"]) == (1, 2, 0)
    assert len((tmp_path / "out" / "rewards.jsonl").read_text().splitlines()) == 2

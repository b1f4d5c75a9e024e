"""verl's reward function (train/verl.py): every task against the formulas of train/rewards.py,
the ground truth as verl's parquet hands it over, judged tasks through a served judge (the
simulator over HTTP, as verl's generative reward model would be), a failed judge excluded
(NaN and flagged, never 0), and verl's own reward manager calling it in verl's environment
(.venv-verl, `make verl-env`)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofloop.errors import BadRequestError, UserInputError
from proofloop.models.base import Sampling
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.wrapper import Model
from proofloop.protocol import parse_proof
from proofloop.sim.app import make_sim_app
from proofloop.sim.http import ServerThread
from proofloop.sim.provider import SimProvider
from proofloop.train import verl as rv
from proofloop.train.judge import Judge
from proofloop.train.rewards import ALPHA, BETA, generator_reward, meta_verifier_reward, verifier_reward
from support.outputs import analysis, box, rating

ROOT = Path(__file__).resolve().parents[1]
VERL_PYTHON = ROOT / ".venv-verl" / "bin" / "python"
SCORES = (0.0, 0.5, 1.0)
PROBLEM = "Prove that the sum of two even integers is even."


def generator_output(self_score: float) -> str:
    return ("## Solution\n\nLet $a = 2k$ and $b = 2m$. Then $a + b = 2(k + m)$ is even.\n\n## Self Evaluation\n\n"
            + analysis(self_score))


def score(output: str, ground_truth, task: str, **kw) -> dict[str, float]:
    extra = {"id": "r1", "task": task, "problem": PROBLEM, **kw.pop("extra", {})}
    return asyncio.run(rv.compute_score("proofloop/test", output, ground_truth, extra, **kw))


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


@pytest.mark.parametrize("task, reward, output", [("verifier", verifier_reward, analysis),
                                                   ("meta-verifier", meta_verifier_reward, rating)])
@pytest.mark.parametrize("predicted", SCORES)
@pytest.mark.parametrize("target", SCORES)
def test_verifier_and_meta_verifier_scores_are_the_pure_rewards(task, reward, output, predicted, target):
    out = score(output(predicted), target, task)
    expected = reward(output(predicted), target)
    assert list(out) == list(rv.KEYS)
    assert out["score"] == expected.total == 1.0 - abs(predicted - target)
    assert (out["r_format"], out["r_score"], out["judge_failed"]) == (1.0, 1.0 - abs(predicted - target), 0.0)
    assert all(math.isnan(out[k]) for k in ("r_meta", "r_proof", "r_self_score", "r_self_evaluation"))


@pytest.mark.parametrize("task", ["verifier", "meta-verifier", "generator"])
def test_a_broken_output_scores_zero_with_format_zero(task):
    out = score("I think it is fine.", None if task == "generator" else 1.0, task)
    assert (out["score"], out["r_format"], out["judge_failed"]) == (0.0, 0.0, 0.0)


@given(st.sampled_from(SCORES), st.sampled_from(["{}", "{:.1f}", " {} ", "{:.3f}"]))
def test_ground_truth_is_read_from_numbers_and_strings(value, fmt):
    assert rv.parse_target(fmt.format(value)) == value == rv.parse_target(value)


@pytest.mark.parametrize("bad", [None, "", "1/2", "0.3", 2, float("nan"), "yes"])
def test_a_ground_truth_outside_0_half_1_is_a_user_error(bad):
    with pytest.raises(UserInputError, match="ground_truth"):
        score(analysis(1.0), bad, "verifier")


@pytest.mark.parametrize("extra", [{}, {"task": "critic"}, {"task": None}])
def test_a_row_without_a_known_task_is_a_user_error(extra):
    with pytest.raises(UserInputError, match="extra_info.task"):
        asyncio.run(rv.compute_score("src", analysis(1.0), 1.0, extra))


def test_meta_verifier_spelled_with_an_underscore_is_the_same_task():
    assert rv.task_of({"task": "meta_verifier"}) == "meta-verifier"


def sim_judge(n: int = 3) -> Judge:
    return Judge(Model(SimProvider(seed=2), cache=InMemoryCallCache()), n=n,
                 sampling=Sampling(seed=0, max_tokens=200_000))


@pytest.mark.parametrize("self_score", SCORES)
@pytest.mark.parametrize("alpha, beta", [(ALPHA, BETA), (0.5, 0.5), (1.0, 0.0)])
def test_the_generator_reward_is_the_formula_on_the_judges_scores(self_score, alpha, beta):
    judge, output = sim_judge(), generator_output(self_score)
    out = score(output, None, "generator", judge=judge, alpha=alpha, beta=beta)
    parsed = parse_proof(output)
    # asked again, the judges answer from the call cache: the scores the reward was computed on
    proof_score = asyncio.run(judge.proof_score(PROBLEM, parsed.solution))
    meta = asyncio.run(judge.rating(PROBLEM, parsed.solution, parsed.self_evaluation))
    expected = generator_reward(output, proof_score, meta, alpha=alpha, beta=beta)
    assert out["score"] == pytest.approx(expected.total)
    assert out["score"] == pytest.approx(alpha * proof_score + beta * (1 - abs(self_score - proof_score)) * meta)
    assert (out["r_proof"], out["r_self_score"], out["judge_failed"]) == (proof_score, self_score, 0.0)


class Failing:
    name, model, max_n = "failing", "failing-1", None

    async def complete(self, messages, sampling, n):
        raise BadRequestError("the judge refuses", status=400)


def test_a_failed_judge_is_excluded_not_zero_and_counted(caplog):
    before = rv.STATS["failed_judgements"]
    out = score(generator_output(1.0), None, "generator", judge=Judge(Model(Failing()), n=2))
    assert math.isnan(out["score"]) and out["judge_failed"] == 1.0 and out["r_format"] == 1.0
    assert rv.STATS["failed_judgements"] == before + 1
    assert "excluded from its group" in caplog.text


def test_the_verifier_with_meta_verification_multiplies_by_the_rating():
    judge, proof = sim_judge(), parse_proof(generator_output(1.0)).solution
    plain = score(analysis(0.5), 1.0, "verifier")
    judged = score(analysis(0.5), 1.0, "verifier", judge=judge, with_meta=True, extra={"proof": proof})
    assert judged["score"] == pytest.approx(plain["score"] * judged["r_meta"])
    failed = score(analysis(0.5), 1.0, "verifier", judge=Judge(Model(Failing())), with_meta=True,
                   extra={"proof": proof})
    assert math.isnan(failed["score"]) and failed["judge_failed"] == 1.0
    with pytest.raises(UserInputError, match="extra_info.proof"):
        score(analysis(0.5), 1.0, "verifier", judge=judge, with_meta=True)


def test_a_judged_row_without_its_problem_is_a_user_error():
    with pytest.raises(UserInputError, match="extra_info.problem"):
        score(generator_output(1.0), None, "generator", judge=sim_judge(), extra={"problem": " "})


def test_a_judged_task_without_a_judge_says_how_to_get_one():
    with pytest.raises(UserInputError, match="reward_model.enable"):
        score(generator_output(1.0), None, "generator")


def test_the_judge_is_a_served_model_found_at_verls_router_address():
    """verl's generative reward model: the router's address, the model read from /v1/models."""
    with ServerThread(make_sim_app(seed=3, model_name="sim-judge", request_log=(log := []))) as server:
        address = server.base_url.removeprefix("http://").removesuffix("/v1")
        out = score(generator_output(1.0), None, "generator", reward_router_address=address, judge_n=2,
                    judge_max_tokens=200_000, reward_model_tokenizer=object())
    # one verification request (n = 2 analyses) and one meta-verification, both to the listed model
    assert sorted((entry["model"], entry["n"]) for entry in log) == [("sim-judge", 1), ("sim-judge", 2)]
    assert out["judge_failed"] == 0.0 and out["r_self_score"] == 1.0
    assert out["score"] == pytest.approx(ALPHA * out["r_proof"] + BETA * out["r_self_evaluation"])


def test_the_judge_can_be_replicas_and_a_dead_one_costs_no_reward():
    """judge_base_url names three replicas, the first refusing connections: the model is read
    from the next, every rollout is judged, and each prompt is answered by one replica only."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    logs: dict[str, list[dict]] = {"a": [], "b": []}
    with ServerThread(make_sim_app(seed=3, model_name="sim-judge", request_log=logs["a"])) as a, \
            ServerThread(make_sim_app(seed=3, model_name="sim-judge", request_log=logs["b"])) as b:
        outputs = [generator_output(1.0).replace("2k", f"2k_{i}") for i in range(6)]
        scores = [score(o, None, "generator", judge_base_url=[dead, a.base_url, b.base_url], judge_n=2,
                        judge_max_tokens=200_000) for o in outputs]
    assert all(out["judge_failed"] == 0.0 for out in scores)
    answered = [(name, e["messages_sha"]) for name, entries in logs.items() for e in entries if e["outcome"] == "ok"]
    assert len(answered) == 2 * len(outputs)  # one verification request (n = 2) and one meta-verification each
    by_prompt = defaultdict(set)
    for name, sha in answered:
        by_prompt[sha].add(name)
    assert all(len(servers) == 1 for servers in by_prompt.values())
    assert {e["model"] for entries in logs.values() for e in entries} == {"sim-judge"}


def test_the_sync_entry_point_is_the_same_reward():
    args = ("proofloop/test", analysis(0.5), "1", {"task": "verifier"})
    assert rv.compute_score_sync(*args) == asyncio.run(rv.compute_score(*args))


def test_the_module_imports_neither_torch_nor_verl():
    code = "import sys, proofloop.train.verl; print(sorted({'torch', 'verl', 'numpy'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.stdout.strip() == "[]"


# One worker runs every test that needs verl's environment (make test: -n 2 --dist loadgroup), so
# the two runs in it happen once.
VERL_GROUP = pytest.mark.xdist_group("verl")
LAUNCH_ENV = {"TASK": "generator", "MODEL": "/models/policy", "JUDGE_MODEL": "/models/verifier", "NNODES": "2",
              "JUDGE_NODES": "1", "GPUS_PER_NODE": "4", "DATA_DIR": "/data/pl", "PRINT_CONFIG": "1"}


@pytest.fixture(scope="module")
def verl_runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Both runs in verl's environment, started together (each spends most of its time importing verl):
    the reward-manager check, and launch.sh printing the trainer config it would train with."""
    if not VERL_PYTHON.exists():
        pytest.skip("verl's environment .venv-verl is absent: `make verl-env` creates it (about 1-3 min, 2.1 GB)")
    check_env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT / 'tests'}",
                 "VERL_USE_EXTERNAL_MODULES": "proofloop.train.verl_grpo",
                 "HF_DATASETS_CACHE": str(tmp_path_factory.mktemp("hf-datasets"))}  # verl's dataset reader caches
    commands = {"check": ([str(VERL_PYTHON), str(ROOT / "tests" / "support" / "verl_reward_check.py")], check_env),
                "launch": (["bash", str(ROOT / "recipes" / "verl" / "launch.sh"), "train", "trainer.total_epochs=3"],
                           {**os.environ, **LAUNCH_ENV})}
    procs = {name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name, (cmd, env) in commands.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out


@pytest.fixture(scope="module")
def verl_run(verl_runs) -> dict:
    proc = verl_runs["check"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@VERL_GROUP
def test_verls_reward_manager_calls_compute_score(verl_run):
    assert verl_run["manager"] == "NaiveRewardManager"
    assert verl_run["function"] == "proofloop.train.verl.compute_score"
    assert verl_run["decoded"] == verl_run["responses"]  # verl decoded the rollouts back to the text we scored
    scores = [e["score"] for e in verl_run["extra"]]
    expected = [0.5, 0.0, 1.0, ALPHA + BETA * 0.5, math.nan, 1.0, 0.0]
    assert all(same(a, b) for a, b in zip(scores, expected)) and len(scores) == len(expected)
    # the reward sits on each rollout's last token, the failed judge's NaN included
    assert all(same(a, b) for a, b in zip(verl_run["rm_scores_at_last_token"], expected))
    assert all(same(a, b) for a, b in zip(verl_run["rm_scores_sum"], expected))
    assert [e["judge_failed"] for e in verl_run["extra"]] == [0, 0, 0, 0, 1, 0, 0]
    # both managers score the batch; the dataset round trip scores three more
    assert verl_run["stats"] == {"completions": 17, "format_failures": 4, "failed_judgements": 2}
    batch_era = verl_run["batch_era"]  # verl's batch-era manager calls compute_score_sync
    assert all(same(a, b) for a, b in zip(batch_era["sum"], expected)) and len(batch_era["sum"]) == len(expected)
    assert batch_era["judge_failed"] == [0, 0, 0, 0, 1, 0, 0]


@VERL_GROUP
def test_rows_in_proofloops_verl_layout_reach_compute_score_through_verls_dataset(verl_run):
    """Parquet rows of datasets.verl_row, read by verl's RLHFDataset: the task and the expert
    score arrive, and the reward is the one those ask for."""
    got = {row["task"]: (row["read_task"], row["ground_truth"], row["score"]) for row in verl_run["dataset"]}
    assert got["verifier"] == ("verifier", 0.5, 0.5)  # analysis says 1, expert 0.5
    assert got["meta-verifier"] == ("meta-verifier", 1.0, 0.5)  # rating 0.5, expert 1
    assert got["generator"][:2] == ("generator", None)
    assert got["generator"][2] == pytest.approx(ALPHA + BETA * 0.5)  # judged 1, self score 0.5


@VERL_GROUP
def test_grpo_judged_leaves_the_failed_judge_out_and_is_verls_grpo_otherwise(verl_run):
    judged = verl_run["grpo_judged"]
    assert judged[4] == 0.0  # the completion without a reward adds nothing
    for i, plain in verl_run["grpo_on_rewarded"].items():  # verl's grpo on the rewarded ones
        assert judged[int(i)] == pytest.approx(plain, abs=1e-6)
    assert judged[3] != pytest.approx(0.0) and len(verl_run["grpo_on_rewarded"]) == 6


@VERL_GROUP
def test_the_recipes_compose_over_verls_config_and_pass_its_checks(verl_run):
    grpo, generator = verl_run["recipes"]["grpo"], verl_run["recipes"]["generator"]
    for recipe in (grpo, generator):
        assert recipe["adv_estimator"] == "grpo_judged" and recipe["loss_agg_mode"] == "seq-mean-token-mean"
        assert recipe["reward_function"]["path"] == "pkg://proofloop.train.verl"
        assert recipe["reward_function"]["reward_kwargs"]["alpha"] == ALPHA
        assert recipe["env"] == {"VERL_USE_EXTERNAL_MODULES": "proofloop.train.verl_grpo"}
    assert (grpo["reward_model"], generator["reward_model"]) == (False, True)  # the generator is judged
    assert generator["train_files"] == "data/generator.parquet"
    assert generator["reward_function"]["reward_kwargs"]["judge_n"] == 4


@VERL_GROUP
def test_the_launch_script_builds_the_trainer_command(verl_runs):
    """recipes/verl/launch.sh with PRINT_CONFIG=1: verl's main_ppo composes the config the
    script's command line asks for (with an override of ours) and prints it instead of training."""
    yaml = pytest.importorskip("yaml")
    proc = verl_runs["launch"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["actor_rollout_ref"]["model"]["path"] == "/models/policy"
    assert (cfg["data"]["train_files"], cfg["data"]["val_files"]) == ("/data/pl/generator.parquet",
                                                                      "/data/pl/generator-val.parquet")
    assert (cfg["trainer"]["nnodes"], cfg["trainer"]["n_gpus_per_node"], cfg["trainer"]["total_epochs"]) == (2, 4, 3)
    rm = cfg["reward"]["reward_model"]
    assert (rm["enable"], rm["model_path"], rm["nnodes"], rm["n_gpus_per_node"]) == (True, "/models/verifier", 1, 4)
    assert cfg["algorithm"]["adv_estimator"] == "grpo_judged"


def test_the_launch_script_without_a_command_shows_its_usage():
    proc = subprocess.run(["bash", str(ROOT / "recipes" / "verl" / "launch.sh")], capture_output=True, text=True)
    assert proc.returncode == 2 and "launch.sh head" in proc.stdout and "launch.sh worker" in proc.stdout

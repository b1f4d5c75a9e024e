"""`proofloop verify --steps` (run kind verify-steps): the first wrong step of a proof, with
the simulator's hidden step validity as the truth."""

from __future__ import annotations

import pytest

from proofloop.errors import UserInputError
from proofloop.models.factory import ModelSettings
from proofloop.runs import ModelSetup, execute
from proofloop.runs.steps import create_step_verify_run, first_below, render_verify_steps
from proofloop.store import Store
from support.cli import cli_env, run_cli, run_json

PROBLEM = "<!-- sim:problem id=t-1 d=0.300 -->\nProve that the sequence is bounded."


def sim_proof(validity: list[int]) -> str:
    return "\n\n".join(f"<!-- sim:step id=z{i} p=t-1 i={i + 1} of={len(validity)} v={v} --> Claim {i + 1} holds."
                       for i, v in enumerate(validity))


@pytest.mark.parametrize("validity, first", [([1, 1, 0, 1], 2), ([1, 1, 1], -1), ([0, 1], 0)])
def test_first_wrong_step_is_the_first_invalid_one(validity, first):
    store = Store(":memory:")
    run_id = create_step_verify_run(store, PROBLEM, sim_proof(validity), ModelSetup(ModelSettings(provider="sim")),
                                    n=8)
    summary = execute(store, run_id, notice=lambda line: None)
    assert summary["first_error"] == first
    assert [s["index"] for s in summary["steps"]] == list(range(len(validity)))
    assert all(len(s["scores"]) == 8 for s in summary["steps"])
    # the given proof, one row per step (child of it), and n analyses per step
    proofs = store.proofs(run_id)
    assert len(proofs) == 1 + len(validity)
    assert len(store.verifications(run_id)) == 8 * len(validity)
    if first >= 0:
        assert summary["first_error_step"]["text"].endswith(f"Claim {first + 1} holds.")


@pytest.mark.parametrize("means, threshold, index", [
    ([1.0, 0.25, 0.0], 0.5, 1), ([1.0, 0.5], 0.5, -1), ([None, 0.0], 0.5, 1), ([0.75], 0.8, 0), ([], 0.5, -1)])
def test_first_below(means, threshold, index):
    assert first_below(means, threshold) == index


def test_bad_input_is_a_user_error():
    store, setup = Store(":memory:"), ModelSetup(ModelSettings(provider="sim"))
    with pytest.raises(UserInputError, match="threshold"):
        create_step_verify_run(store, PROBLEM, "A step.", setup, threshold=0.0)
    with pytest.raises(UserInputError, match="no steps"):
        create_step_verify_run(store, PROBLEM, "## Solution\n\n## Self Evaluation\nfine", setup)


def test_cli_prints_the_first_wrong_step_and_resumes_without_calls(tmp_path):
    (tmp_path / "p.md").write_text(PROBLEM)
    (tmp_path / "q.md").write_text(sim_proof([1, 0, 1]))
    env = cli_env(tmp_path / "s.db")
    args = ["verify", "--problem", str(tmp_path / "p.md"), "--proof", str(tmp_path / "q.md"), "--steps",
            "-n", "6", "--provider", "sim"]
    summary = run_json(args, env)
    assert summary["first_error"] == 1 and summary["kind"] == "verify-steps"
    assert "first wrong step: step 2 (index 1)" in "\n".join(render_verify_steps(summary))
    again = run_json(["resume", summary["run_id"]], env)
    assert again["first_error"] == 1
    assert again["usage"]["calls"] == summary["usage"]["calls"]


def test_whole_proof_verify_shows_the_verifier_what_sympy_refutes_and_keeps_the_checks(tmp_path):
    pytest.importorskip("sympy")
    import sqlite3

    (tmp_path / "p.md").write_text("Prove that 2 + 3 = 5.")
    (tmp_path / "q.md").write_text("We compute the sum.\n\n\\[ 2 + 3 = 6 \\]\n\nHence the claim.")
    env = cli_env(tmp_path / "s.db")
    args = ["verify", "--problem", str(tmp_path / "p.md"), "--proof", str(tmp_path / "q.md"), "-n", "2",
            "--provider", "sim"]
    summary = run_json(args + ["--symbolic"], env)
    [refuted] = summary["symbolic"]["evidence"]
    assert (refuted["relation"]["lhs"].strip(), refuted["relation"]["rhs"].strip(), refuted["verdict"]) == ("2 + 3", "6", "refuted")
    with sqlite3.connect(tmp_path / "s.db") as con:  # what the verifier was sent
        prompts = [m for (m,) in con.execute("select messages from prompts")]
    assert prompts and all("### Symbolic checks" in m and "2 + 3 = 6: refuted" in m for m in prompts)
    plain = run_json(args, env)  # without the flag: no checks, no section
    assert "symbolic" not in plain


def test_symbolic_evidence_reaches_the_step_with_the_false_relation():
    pytest.importorskip("sympy")
    store = Store(":memory:")
    proof = "We compute the sum.\n\n\\[ 2 + 3 = 6 \\]\n\nHence the claim."
    run_id = create_step_verify_run(store, "Prove that 2 + 3 = 5.", proof, ModelSetup(ModelSettings(provider="sim")),
                                    n=1, symbolic=True)
    summary = execute(store, run_id, notice=lambda line: None)
    assert summary["symbolic"]["counts"]["refuted"] == 1
    assert [bool(s["evidence"]) for s in summary["steps"]] == [False, True, False]
    assert "2 + 3 = 6" in summary["steps"][1]["evidence"][0]

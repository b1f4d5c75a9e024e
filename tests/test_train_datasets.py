"""Training sets from what proofloop makes: the verifier set from a real `label` run on the
simulator, the meta-verifier set and generator prompts; TRL and verl layouts; bad rows."""

from __future__ import annotations

import json

import pytest

from proofloop.errors import UserInputError
from proofloop.label import LabelItem, LabelRule
from proofloop.models.factory import ModelSettings
from proofloop.protocol import generation_messages, meta_verification_messages, proof_for_verification, \
    verification_messages
from proofloop.runs import ModelSetup, execute
from proofloop.runs.label import create_label_run
from proofloop.sim import make_problems
from proofloop.store import Store
from proofloop.train.datasets import (generator_examples, meta_verifier_examples, trl_row, verifier_examples,
                                      verl_row)
from proofloop.train.rewards import verifier_reward


def test_the_verifier_set_of_a_label_run_is_its_labelled_proofs(tmp_path):
    problems = make_problems(4, seed=2, mix="default")
    items = [LabelItem(id=f"p{i}", problem=p, proof=f"## Solution\n\nProof {i}: by induction on $n$.")
             for i, p in enumerate(problems)]
    store = Store(tmp_path / "runs.db")
    setup = ModelSetup(ModelSettings(provider="sim"), seed=0, verify_max_tokens=200_000)
    run_id = create_label_run(store, items, setup, n=4, rule=LabelRule(m=1, k=1), output=tmp_path / "labels.jsonl")
    execute(store, run_id, notice=lambda line: None)
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    labelled = [r for r in rows if r["status"] == "labelled"]
    assert labelled, "the simulator labelled nothing: the test proves nothing"

    examples = verifier_examples(rows)
    assert [e.id for e in examples] == [r["id"] for r in labelled]
    for e, r in zip(examples, labelled):
        assert e.prompt == verification_messages(r["problem"], proof_for_verification(r["proof"]))
        assert (e.task, e.target) == ("verifier", r["score"])
        row = trl_row(e)
        answer = ("Here is my evaluation of the solution: fine.\n\n"
                  f"Based on my evaluation, the final overall score should be: \\boxed{{{r['score']:g}}}")
        assert verifier_reward(answer, row["target"]).total == 1.0  # the target the reward uses


def test_meta_verifier_examples_and_their_bad_rows():
    row = {"id": "a1", "problem": "P", "proof": "## Solution\n\nQ", "analysis": "Here is my evaluation ...",
           "rating": 0.5}
    [e] = meta_verifier_examples([row])
    assert e.prompt == meta_verification_messages("P", "Q", "Here is my evaluation ...") and e.target == 0.5
    for bad, word in [({**row, "rating": 0.7}, "rating"), ({**row, "rating": None}, "rating"),
                      ({**row, "analysis": " "}, "analysis")]:
        with pytest.raises(UserInputError, match=word):
            meta_verifier_examples([bad])


def test_a_labelled_row_with_a_score_off_the_rubric_is_refused():
    with pytest.raises(UserInputError, match="score must be 0, 0.5 or 1"):
        verifier_examples([{"id": "x", "problem": "P", "proof": "Q", "status": "labelled", "score": 0.75}])


def test_generator_prompts_and_the_two_layouts():
    examples = generator_examples([{"id": "g1", "statement": "Prove that 2 is prime."}, {"problem": "Show P."}])
    assert [e.id for e in examples] == ["g1", "2"] and all(e.target is None for e in examples)
    assert examples[0].prompt == generation_messages("Prove that 2 is prime.")
    trl = trl_row(examples[0])
    assert set(trl) == {"id", "task", "prompt", "target", "problem"} and trl["task"] == "generator"
    assert all(set(m) == {"role", "content"} for m in trl["prompt"])
    verl = verl_row(examples[0], data_source="proofloop/imo")
    assert verl["data_source"] == "proofloop/imo" and verl["prompt"] == examples[0].prompt
    assert verl["reward_model"] == {"style": "model", "ground_truth": None}
    assert verl["extra_info"] == {"id": "g1", "task": "generator", "problem": "Prove that 2 is prime."}
    with pytest.raises(UserInputError, match="no problem"):
        generator_examples([{"id": "e"}])

"""Rejection fine-tuning: the selection rules on tables of cases, the set drawn from a real
label run on the simulator, a few real SFT steps on CPU with a tiny model and tokenizer built
in-process (weights change, checkpoints, resume), and the command's bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proofloop.errors import UserInputError
from proofloop.protocol import generation_messages, parse_proof, proof_for_verification, verification_messages
from proofloop.train.rft import (RftRules, SftSettings, endorsements, honest_score, last_checkpoint, rft_rows,
                                 select_analyses, select_proofs, train_rft, verified_score)
from proofloop.train.sources import read_source
from tests.support.cli import cli_env, run_cli
from tests.support.train_runs import shared_train_runs


def proof(self_score: float | None = 1.0) -> str:
    evaluation = ("" if self_score is None else
                  f"\n\n## Self Evaluation\n\nHere is my evaluation of the solution: fine.\n\n"
                  f"Based on my evaluation, the final overall score should be: \\boxed{{{self_score:g}}}")
    return "## Solution\n\nBy definition." + evaluation


def analysis(id: str, score: float | None, ratings=(), text_score: float | None = None) -> dict:
    boxed = score if text_score is None else text_score
    text = None if boxed is None else ("Here is my evaluation of the solution: checked.\n\n"
                                       f"Based on my evaluation, the final overall score should be: \\boxed{{{boxed:g}}}")
    return {"id": id, "status": "ok" if score is not None else "call_error", "score": score, "text": text,
            "meta": [{"status": "call_error" if r is None else "ok", "rating": r} for r in ratings]}


def row(id: str, status: str = "labelled", score: float | None = 1.0, self_score: float | None = 1.0,
        analyses=(), problem: str = "P", m: int = 3, text: str | None = None) -> dict:
    return {"id": id, "problem": problem, "proof": proof(self_score) if text is None else text, "status": status,
            "score": score, "analyses": list(analyses), "m": m}


ONES = [analysis(f"a{i}", 1.0) for i in range(4)]


@pytest.mark.parametrize("case, want", [
    (row("x", score=0.5, analyses=ONES[:3]), (0.5, 3)),                                    # the label decides
    (row("x", "unlabelled", None, analyses=ONES[:2]), (1.0, 2)),                            # mean of valid ones
    (row("x", "unlabelled", None, analyses=ONES[:1]), (None, 1)),                           # too few analyses
    (row("x", "unlabelled", None, analyses=[ONES[0], analysis("b", 0.5), analysis("c", None)]), (0.75, 2)),
    (row("x", "discarded", None, analyses=ONES), (None, 4)),                                # undecided: not verified
    (row("x", "error", None, analyses=ONES), (None, 4)),
])
def test_verified_score_table(case, want):
    assert verified_score(case) == want


@pytest.mark.parametrize("verified, honest", [(0.0, 0.0), (0.2, 0.0), (0.25, 0.0), (0.3, 0.5), (0.5, 0.5),
                                              (0.75, 0.5), (0.8, 1.0), (1.0, 1.0)])
def test_the_honest_self_score_is_the_nearest_rubric_score_ties_down(verified, honest):
    assert honest_score(verified) == honest


@given(st.floats(0.0, 1.0))
def test_no_rubric_score_is_nearer_than_the_honest_one(verified):
    h = honest_score(verified)
    assert all(abs(s - verified) >= abs(h - verified) for s in (0.0, 0.5, 1.0))


@pytest.mark.parametrize("rows, rules, kept", [
    ([row("a")], RftRules(), ["a"]),
    ([row("a", self_score=0.5)], RftRules(), []),                             # inflated/deflated self score
    ([row("a", score=0.5, self_score=0.5)], RftRules(), []),                  # below min_score
    ([row("a", score=0.5, self_score=0.5)], RftRules(min_score=0.5), ["a"]),
    ([row("a", self_score=None)], RftRules(), []),                            # no self evaluation
    ([row("a", text="By definition, no sections.")], RftRules(), []),
    ([row("a", "unlabelled", None, 1.0, ONES[:2])], RftRules(), ["a"]),      # verified by its analyses
    ([row("a", "unlabelled", None, 0.5, [ONES[0], analysis("b", 0.5)])], RftRules(min_score=0.5), ["a"]),
    ([row("a", "unlabelled", None, 1.0, [ONES[0], analysis("b", 0.5)])], RftRules(min_score=0.5), []),
    ([row("a", "human", None, 1.0, ONES)], RftRules(), []),
    # per problem: the best verified score, then the most analyses, then the first; kept in input order
    ([row("a", analyses=ONES[:2]), row("b", analyses=ONES), row("c", problem="Q")], RftRules(), ["b", "c"]),
    ([row("a", analyses=ONES[:2]), row("b", analyses=ONES[:2])], RftRules(), ["a"]),
    ([row("a", analyses=ONES[:2]), row("b", analyses=ONES[:2])], RftRules(per_problem=2), ["a", "b"]),
    ([row("a", "unlabelled", None, analyses=ONES[:2] + [analysis("h", 0.5)]), row("b", analyses=ONES[:2])],
     RftRules(min_score=0.5), ["b"]),
])
def test_proof_selection_table(rows, rules, kept):
    assert [r["id"] for r in select_proofs(rows, rules)] == kept


@pytest.mark.parametrize("ratings, m, endorse_at, want", [
    ((1.0, 1.0, 0.0), 3, 1.0, 2), ((1.0, 0.5, 0.5), 3, 1.0, None), ((1.0, 0.5, 0.5), 3, 0.5, 3),
    ((1.0, 1.0), 3, 1.0, 2), ((1.0, 1.0, None, None), 4, 1.0, None), ((1.0, None, None), 3, 1.0, None),
    ((), 3, 1.0, None),
])
def test_endorsement_table(ratings, m, endorse_at, want):
    assert endorsements(analysis("a", 0.0, ratings), m, RftRules(endorse_at=endorse_at)) == want


ENDORSED0 = analysis("e0", 0.0, (1.0, 1.0, 1.0))
HALF_ENDORSED0 = analysis("h0", 0.0, (1.0, 1.0, 0.0))
REJECTED0 = analysis("r0", 0.0, (1.0, 0.0, 0.0))


@pytest.mark.parametrize("rows, rules, kept", [
    ([row("p", score=0.0, analyses=[REJECTED0, ENDORSED0, analysis("x", 0.5, (1.0, 1.0, 1.0))])], RftRules(), ["e0"]),
    ([row("p", score=0.0, analyses=[HALF_ENDORSED0, ENDORSED0])], RftRules(), ["e0"]),           # most endorsed
    ([row("p", score=0.0, analyses=[HALF_ENDORSED0, ENDORSED0])], RftRules(per_proof=2), ["e0", "h0"]),
    ([row("p", score=0.0, analyses=[analysis("m", 0.0, (0.5, 0.5, 1.0))])], RftRules(), []),       # 0.5: not endorsed
    ([row("p", score=0.0, analyses=[analysis("m", 0.0, (0.5, 0.5, 1.0))])], RftRules(endorse_at=0.5), ["m"]),
    ([row("p", score=1.0, analyses=[analysis("z", 0.5, (0.0,) * 3)] + ONES[:2])], RftRules(), ["a0"]),
    ([row("p", score=1.0, analyses=ONES[:2])], RftRules(per_proof=2), ["a0", "a1"]),
    ([row("p", score=0.0, analyses=[analysis("t", 0.0, (1.0,) * 3, text_score=1.0)])], RftRules(), []),  # text disagrees
    ([row("p", "unlabelled", None, analyses=ONES)], RftRules(), []),                             # nothing to agree with
    ([row("p", "discarded", None, analyses=[ENDORSED0])], RftRules(), []),
])
def test_analysis_selection_table(rows, rules, kept):
    assert [a["id"] for _, a in select_analyses(rows, rules)] == kept


def test_bad_rules():
    for bad in (dict(min_score=1.5), dict(endorse_at=0.0), dict(per_problem=0), dict(min_analyses=0)):
        with pytest.raises(UserInputError):
            RftRules(**bad)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return shared_train_runs(tmp_path_factory)


def test_the_set_of_a_real_label_run(runs):
    rows = read_source(runs.labels_jsonl)
    by_id = {r["id"]: r for r in rows}
    sft = rft_rows(rows)
    generator = [r for r in sft if r["task"] == "generator"]
    verifier = [r for r in sft if r["task"] == "verifier"]
    honest = [r for r in rows if r["status"] == "labelled" and r["score"] == 1.0
              and parse_proof(r["proof"]).self_score == 1.0]
    assert honest and len(generator) == 1  # one problem, one proof kept
    assert generator[0]["id"] == min(honest, key=lambda r: -len(r["analyses"]))["id"]
    assert generator[0]["prompt"] == generation_messages(rows[0]["problem"])
    assert generator[0]["completion"] == [{"role": "assistant", "content": by_id[generator[0]["id"]]["proof"]}]
    labelled = [r for r in rows if r["status"] == "labelled"]
    assert {r["score"] for r in labelled} == {0.0, 1.0}, "the run covers both kinds of verdict"
    assert 0 < len(verifier) <= len(labelled)
    analyses = {a["id"]: (r, a) for r in rows for a in r["analyses"]}
    for example in verifier:
        r, a = analyses[example["id"]]
        assert a["score"] == r["score"] and r["status"] == "labelled"
        assert example["prompt"] == verification_messages(r["problem"], proof_for_verification(r["proof"]))
        assert example["completion"][0]["content"] == a["text"]
    assert rft_rows(read_source(runs.db, run=runs.label_run)) == sft  # the store gives the same set


def tiny_model_and_tokenizer(rows):
    """A 2-layer Llama (hidden 32) and a word-level tokenizer over the set's words, with a chat
    template: built here, nothing downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = {"<pad>", "<eos>", "<unk>", "<|user|>", "<|assistant|>", "<|end|>"}
    for r in rows:
        for message in r["prompt"] + r["completion"]:
            words.update(message["content"].split())
    vocab = {w: i for i, w in enumerate(sorted(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|> {% endif %}")
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                         pad_token_id=vocab["<pad>"], eos_token_id=vocab["<eos>"])
    return LlamaForCausalLM(config), tokenizer


def test_a_few_real_sft_steps_change_the_weights_and_resume(runs, tmp_path, monkeypatch):
    pytest.importorskip("trl")
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    sft = rft_rows(read_source(runs.labels_jsonl))
    model, tokenizer = tiny_model_and_tokenizer(sft)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = tmp_path / "rft"
    settings = SftSettings(steps=2, learning_rate=1e-2, save_steps=2, max_length=4096)
    summary = train_rft(sft, model=model, tokenizer=tokenizer, output_dir=out, settings=settings)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2, changed
    assert (summary["steps"], summary["examples"], summary["resumed_from"]) == (2, len(sft), None)
    assert len(summary["losses"]) == 2 and all(loss > 0 for loss in summary["losses"])
    assert last_checkpoint(out) == str(out / "checkpoint-2") and (out / "model.safetensors").is_file()
    assert [json.loads(line) for line in (out / "rft.jsonl").read_text().splitlines()] == sft

    again = train_rft(sft, model=model, tokenizer=tokenizer, output_dir=out,
                      settings=SftSettings(steps=3, learning_rate=1e-2, save_steps=2, max_length=4096), resume=True)
    assert (again["resumed_from"], again["steps"]) == (str(out / "checkpoint-2"), 3)
    assert len(again["losses"]) == 3  # the log history comes back from the checkpoint, one step is new


def test_the_rft_command(runs, tmp_path):
    env = cli_env(runs.db)
    out = tmp_path / "rft"
    r = run_cli(["train", "rft", "--run", runs.label_run, "--model", "none", "--output-dir", str(out), "--dry-run",
                 "--json"], env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    sft = rft_rows(read_source(runs.labels_jsonl))
    assert (summary["examples"], summary["generator"], summary["verifier"]) == (
        len(sft), sum(x["task"] == "generator" for x in sft), sum(x["task"] == "verifier" for x in sft))
    assert [json.loads(line) for line in (out / "rft.jsonl").read_text().splitlines()] == sft
    empty = tmp_path / "unlabelled.jsonl"
    empty.write_text(json.dumps({"problem": "P", "proof": "Q"}) + "\n")
    for args, message in [(["--from", str(runs.labels_jsonl), "--resume"], "nothing to resume"),
                          (["--from", str(empty)], "set is empty"),
                          (["--from", str(runs.labels_jsonl), "--endorse-at", "0.7"], "endorse_at must be")]:
        r = run_cli(["train", "rft", "--model", "none", "--output-dir", str(tmp_path / "o"), *args], env)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr

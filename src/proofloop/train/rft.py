"""Rejection fine-tuning (paper §3.1): from the second iteration on, the verifier starts from a
checkpoint that merges generation and verification, made by supervised fine-tuning on the
outputs of the previous iteration that passed verification. This module picks those outputs
from proof rows (train/sources.py: a finished run in the store, or `proofloop label`
output) and runs TRL's SFTTrainer on them.

The selection rules, and why:

Generator examples (prompt: the generation prompt of the problem; completion: the proof as
written, with its self evaluation):
- the proof's *verified score* is its label when the labelling decided one (the paper's
  consensus of analyses confirmed by meta-verification); with no labelling at all (a
  prove / bench run), the mean score of its valid analyses, provided at least
  `min_analyses` of them (default 2: one analysis is one sample, not a verdict). A proof the
  labelling left undecided (discarded, human, error) has none: it is not verified;
- it is kept when its verified score is at least `min_score` (default 1: only proofs that
  passed verification are imitated);
- its text must keep the generator's contract (both sections and a boxed self score; we train
  on the text, so a broken format would be learnt), and its self score must be *honest*: the
  rubric score (0, 0.5, 1) nearest to the verified score, a tie going to the lower one. With
  min_score 1 that is a self score of 1; an inflated self evaluation is never imitated;
- per problem at most `per_problem` (default 1) proofs: the highest verified score first,
  then the most valid analyses (the better-supported verdict), then the first recorded
  (deterministic; no proof is favoured by chance).

Verifier examples (prompt: the verification prompt of the proof; completion: the analysis):
- only proofs with a label (an analysis is right or wrong against the consensus);
- the analysis parsed OK and its score equals the label (its text parsed again gives that
  score: the completion keeps the verifier's contract);
- an analysis that reports issues (score 0 or 0.5) must be *endorsed* by its
  meta-verification: a strict majority of the m ratings asked (failed ones count as asked)
  at least `endorse_at` (default 1: "every claimed defect is real and the analysis is
  accurate"). This is stricter than the labelling's confirm_at 0.5 on purpose: the label
  needs the defects to be real, a training target also needs the text to be right, and a
  0.5 rating may mean the analysis misstates a detail. A score-1 analysis of a proof labelled
  1 needs nothing more (the labelling found no confirmed issue);
- per proof at most `per_proof` (default 1): the most endorsing ratings first, then the first
  recorded.

    >>> ok = "## Solution\\n\\nBy definition.\\n\\n## Self Evaluation\\n\\nHere is my evaluation of the solution: " \\
    ...      "fine.\\n\\nBased on my evaluation, the final overall score should be: \\\\boxed{1}"
    >>> row = {"id": "p1", "problem": "Prove that 1 + 1 = 2.", "proof": ok, "status": "labelled", "score": 1.0,
    ...        "analyses": [], "m": 3}
    >>> [(r["task"], r["id"]) for r in rft_rows([row])]
    [('generator', 'p1')]
    >>> verified_score({**row, "status": "unlabelled", "score": None})   # no labelling, no analyses
    (None, 0)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proofloop.errors import UserInputError
from proofloop.extras import require
from proofloop.protocol import (Templates, generation_messages, parse_proof, parse_verification,
                                proof_for_verification, verification_messages)
from proofloop.protocol.parsers import split_reasoning
from proofloop.protocol.types import SCORES


EMPTY_SET = "the rejection fine-tuning set is empty: no proof or analysis passed the selection"


@dataclass(frozen=True)
class RftRules:
    """The selection thresholds (module docstring says why each default)."""

    min_score: float = 1.0
    min_analyses: int = 2
    per_problem: int = 1
    per_proof: int = 1
    endorse_at: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise UserInputError(f"min_score must be in [0, 1] (got {self.min_score})")
        if self.endorse_at not in (0.5, 1.0):
            raise UserInputError(f"endorse_at must be 0.5 or 1 (got {self.endorse_at})")
        if min(self.min_analyses, self.per_problem, self.per_proof) < 1:
            raise UserInputError("min_analyses, per_problem and per_proof must be at least 1")


def _valid(row: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in row.get("analyses") or () if a.get("status") == "ok" and a.get("score") is not None]


def verified_score(row: Mapping[str, Any], rules: RftRules = RftRules()) -> tuple[float | None, int]:
    """(the proof's verified score or None, its valid analyses): the label if labelled; the
    mean of valid analyses if never labelled and there are at least min_analyses."""
    valid = _valid(row)
    if row.get("status") == "labelled":
        return float(row["score"]), len(valid)
    if row.get("status") not in (None, "unlabelled") or len(valid) < rules.min_analyses:
        return None, len(valid)
    return sum(float(a["score"]) for a in valid) / len(valid), len(valid)


def honest_score(verified: float) -> float:
    """The rubric score nearest to a verified score; a tie goes to the lower one."""
    return min(SCORES, key=lambda s: (abs(s - verified), s))


def answer_text(text: str | None) -> str:
    """The output without a reasoning block (the part the role's contract is about)."""
    return split_reasoning(text).answer or ""


def select_proofs(rows: Sequence[Mapping[str, Any]], rules: RftRules = RftRules()) -> list[Mapping[str, Any]]:
    """The generator's rejection-sampled proofs, per the rules above, in input order."""
    ranked: dict[str, list[tuple[tuple[float, int, int], Mapping[str, Any]]]] = {}
    for order, row in enumerate(rows):
        score, support = verified_score(row, rules)
        if score is None or score < rules.min_score:
            continue
        parsed = parse_proof(answer_text(row.get("proof")))
        if parsed.status.value != "ok" or parsed.self_score != honest_score(score):
            continue
        ranked.setdefault(str(row["problem"]), []).append(((-score, -support, order), row))
    kept = [(key, row) for group in ranked.values()
            for key, row in sorted(group, key=lambda x: x[0])[:rules.per_problem]]
    return [row for _, row in sorted(kept, key=lambda x: x[0][2])]


def endorsements(analysis: Mapping[str, Any], m: int | None, rules: RftRules = RftRules()) -> int | None:
    """How many ratings endorse an issue-reporting analysis, or None when they are no strict
    majority of the m asked (failed ratings count as asked)."""
    ratings = [r.get("rating") for r in analysis.get("meta") or () if r.get("status") == "ok"]
    yes = sum(1 for r in ratings if r is not None and r >= rules.endorse_at)
    asked = max(m or 0, len(analysis.get("meta") or ()))
    return yes if 2 * yes > asked else None


def select_analyses(rows: Sequence[Mapping[str, Any]],
                    rules: RftRules = RftRules()) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(proof row, analysis) pairs the verifier is fine-tuned on, per the rules above."""
    out = []
    for row in rows:
        if row.get("status") != "labelled":
            continue
        label = float(row["score"])
        good = []
        for order, a in enumerate(_valid(row)):
            text = answer_text(a.get("text"))
            if float(a["score"]) != label or parse_verification(text).score != label:
                continue
            yes = 0 if label == 1.0 else endorsements(a, row.get("m"), rules)
            if yes is not None:
                good.append(((-yes, order), a))
        out += [(row, a) for _, a in sorted(good, key=lambda x: x[0])[:rules.per_proof]]
    return out


def sft_row(id: str, task: str, prompt: list, completion: str, problem: str) -> dict[str, Any]:
    """TRL's conversational prompt-completion layout (the loss is on the completion only)."""
    return {"id": id, "task": task, "prompt": prompt, "completion": [{"role": "assistant", "content": completion}],
            "problem": problem}


def rft_rows(rows: Sequence[Mapping[str, Any]], rules: RftRules = RftRules(),
             templates: Templates | None = None) -> list[dict[str, Any]]:
    """The rejection fine-tuning set: the selected proofs, then the selected analyses."""
    out = [sft_row(str(r["id"]), "generator", generation_messages(r["problem"], templates),
                   answer_text(r["proof"]), r["problem"]) for r in select_proofs(rows, rules)]
    out += [sft_row(str(a["id"]), "verifier",
                    verification_messages(r["problem"], proof_for_verification(r["proof"]), templates),
                    answer_text(a["text"]), r["problem"]) for r, a in select_analyses(rows, rules)]
    return out


@dataclass(frozen=True)
class SftSettings:
    """SFTTrainer settings proofloop sets (the rest keep TRL's defaults)."""

    steps: int | None = None          # optimiser steps; None: `epochs` passes over the set
    epochs: float = 1.0
    learning_rate: float = 1e-5
    batch_size: int = 1
    grad_accum: int = 1
    max_length: int | None = 8192     # tokens per example; longer ones are cut
    save_steps: int = 50
    seed: int = 0


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest `checkpoint-N` folder the Trainer saved in output_dir, or None."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
    return str(max(found, key=lambda p: int(p.name[11:]))) if found else None


def train_rft(rows: Sequence[Mapping[str, Any]], *, model: Any, output_dir: str | Path,
              settings: SftSettings = SftSettings(), resume: bool = False, tokenizer: Any = None) -> dict[str, Any]:
    """Fine-tune `model` (a path or hub name, or a loaded model with `tokenizer`) on RFT rows;
    checkpoints every save_steps under output_dir, the final model in output_dir. `resume`
    continues from the last checkpoint there. Returns a summary."""
    if not rows:
        raise UserInputError(EMPTY_SET)
    out = Path(output_dir)
    checkpoint = last_checkpoint(out) if resume else None
    if resume and checkpoint is None:
        raise UserInputError(f"nothing to resume: no checkpoint in {out}")
    trl = require("trl", "train", "proofloop train rft")
    datasets = require("datasets", "train", "proofloop train rft")
    torch = require("torch", "train", "proofloop train rft")
    out.mkdir(parents=True, exist_ok=True)
    (out / "rft.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    config = trl.SFTConfig(
        output_dir=str(out), max_steps=settings.steps or -1, num_train_epochs=settings.epochs,
        learning_rate=settings.learning_rate, per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum, max_length=settings.max_length,
        save_strategy="steps", save_steps=settings.save_steps, logging_steps=1, report_to="none",
        seed=settings.seed, use_cpu=not torch.cuda.is_available(), completion_only_loss=True)
    data = datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    trainer = trl.SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    tasks = [r["task"] for r in rows]
    return {"kind": "rft", "examples": len(rows), "generator": tasks.count("generator"),
            "verifier": tasks.count("verifier"), "steps": trainer.state.global_step,
            "resumed_from": checkpoint, "train_loss": result.training_loss, "losses": losses,
            "output_dir": str(out), "dataset": str(out / "rft.jsonl")}

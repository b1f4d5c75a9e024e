r"""The step-level protocol: judging one step of a proof, and proposing the next step.

Two templates ship next to the role templates (protocol/templates/): `step_verify.md` asks a
verifier to judge ONE step given the problem and the steps before it (same 0 / 0.5 / 1
contract as the whole-proof verifier, with its own key phrases), and `continue_step.md` asks
a generator for the next step of a proof prefix. Pure apart from `StepTemplates.default`.

    >>> msgs = step_verification_messages("Show x = x.", ["Let x be real."], "Then x - x = 0.")
    >>> detect_step_role(msgs)
    'step_verify'
    >>> out = "Here is my evaluation of the step: fine.\n" + STEP_FINAL_PHRASE + r" \boxed{0.5}"
    >>> parse_step_verification(out).score
    0.5
    >>> p = parse_next_step("<think>hm</think>## Next Step\nHence $x=1$.\nThis completes the proof.")
    >>> p.status.value, p.step, p.complete
    ('ok', 'Hence $x=1$.\nThis completes the proof.', True)

The evidence section of the step template is optional: refuted relations from the symbolic
checker (`evidence_section`) are shown there; with none it renders as nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel

from proofloop.errors import UserInputError
from proofloop.protocol.parsers import parse_score, split_reasoning
from proofloop.protocol.templates import message_text, render
from proofloop.protocol.types import Message, ParsedAnalysis, ParseStatus

__all__ = ["STEP_EVAL_START", "STEP_FINAL_PHRASE", "NEXT_STEP_HEADER", "COMPLETE_LINE", "STEP_ROLE_MARKERS",
           "StepTemplates", "step_verification_messages", "continuation_messages", "evidence_section",
           "parse_step_verification", "parse_next_step", "ParsedStep", "detect_step_role", "numbered_steps"]

STEP_EVAL_START = "Here is my evaluation of the step:"
STEP_FINAL_PHRASE = "Based on my evaluation, the score of this step should be:"
NEXT_STEP_HEADER = "## Next Step"
COMPLETE_LINE = "This completes the proof."
NO_STEPS = "(none: this is the first step)"

# What tells the step prompts apart from the four roles' prompts (checked before ROLE_MARKERS:
# a step prompt quotes proof text, which may hold anything).
STEP_ROLE_MARKERS: dict[str, tuple[str, ...]] = {
    "step_verify": ("## Step to Judge",),
    "continue_step": ("## Proof So Far",),
}
REQUIRED = {"step_verify": ("problem", "previous", "step"), "continue_step": ("problem", "prefix")}
OPTIONAL = {"step_verify": ("evidence",), "continue_step": ()}
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def check_step_template(role: str, text: str, source: str) -> None:
    """UserInputError (one line) unless `text` holds every required placeholder of `role` and no other."""
    found = set(_PLACEHOLDER.findall(text))
    missing = [p for p in REQUIRED[role] if p not in found]
    unknown = sorted(found - set(REQUIRED[role]) - set(OPTIONAL[role]))
    if not text.strip() or missing or unknown:
        why = "is empty" if not text.strip() else (f"lacks {{{{{missing[0]}}}}}" if missing
                                                   else f"has unknown placeholder {{{{{unknown[0]}}}}}")
        raise UserInputError(f"template {source} ({role}) {why}")


@dataclass(frozen=True)
class StepTemplates:
    """The wording of the step verifier and the step generator."""

    step_verify: str
    continue_step: str

    @classmethod
    def default(cls) -> "StepTemplates":
        pkg = resources.files("proofloop.protocol") / "templates"
        texts = {r: (pkg / f"{r}.md").read_text(encoding="utf-8") for r in REQUIRED}
        for role, text in texts.items():
            check_step_template(role, text, f"<default {role}.md>")
        return cls(**texts)

    @classmethod
    def load(cls, **files: str | Path) -> "StepTemplates":
        """Defaults with some roles replaced by files, e.g. `step_verify="mine.md"`."""
        texts = {}
        for role, path in files.items():
            if role not in REQUIRED:
                raise UserInputError(f"unknown step template role {role!r} (known: {', '.join(REQUIRED)})")
            try:
                texts[role] = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise UserInputError(f"template file {path} ({role}) cannot be read: {e}") from None
            check_step_template(role, texts[role], str(path))
        return cls(**{**cls.default().__dict__, **texts})


_DEFAULT: StepTemplates | None = None


def _templates(t: StepTemplates | None) -> StepTemplates:
    global _DEFAULT
    if t is not None:
        return t
    if _DEFAULT is None:
        _DEFAULT = StepTemplates.default()
    return _DEFAULT


def numbered_steps(steps: Sequence[str]) -> str:
    """Steps laid out as "Step 1.", "Step 2.", ... blocks (the earlier steps of a prompt)."""
    return "\n\n".join(f"**Step {i}.** {s.strip()}" for i, s in enumerate(steps, 1)) if steps else NO_STEPS


def evidence_section(lines: Sequence[str]) -> str:
    """The optional section listing relations a computer algebra system refuted ("" for none)."""
    if not lines:
        return ""
    body = "\n".join(f"- {line}" for line in lines)
    return ("\n## Symbolic Check\n\nA computer algebra system found these relations of the step to be false "
            "(it can misread notation; weigh this, do not take it on trust):\n\n" + body + "\n")


def _need(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserInputError(f"the {name} is empty")
    return value.strip()


def step_verification_messages(problem: str, previous: Sequence[str], step: str,
                               templates: StepTemplates | None = None,
                               evidence: Sequence[str] = ()) -> list[Message]:
    """The prompt asking a verifier to judge `step` given `problem` and the `previous` steps."""
    t = _templates(templates)
    return [{"role": "user", "content": render(t.step_verify, problem=_need("problem", problem),
                                               previous=numbered_steps(previous), step=_need("step", step),
                                               evidence=evidence_section(evidence))}]


def continuation_messages(problem: str, prefix: Sequence[str], templates: StepTemplates | None = None) -> list[Message]:
    """The prompt asking a generator for the step that follows `prefix` (no steps: the first)."""
    t = _templates(templates)
    return [{"role": "user", "content": render(t.continue_step, problem=_need("problem", problem),
                                               prefix=numbered_steps(prefix))}]


def detect_step_role(messages: Sequence[dict[str, Any]]) -> str | None:
    """"step_verify", "continue_step", or None for any other prompt."""
    text = message_text(messages)
    return next((role for role, needles in STEP_ROLE_MARKERS.items() if any(n in text for n in needles)), None)


def parse_step_verification(text: str | None, *, reasoning: str | None = None,
                            finish_reason: str | None = None) -> ParsedAnalysis:
    """A step verifier output: the analysis and its score (after STEP_FINAL_PHRASE). Statuses as
    for parse_verification: TRUNCATED, EMPTY, NO_FINAL_PHRASE, NO_BOXED_SCORE, INVALID_SCORE, OK."""
    split = split_reasoning(text, reasoning)
    answer = split.answer
    base = dict(reasoning=split.reasoning, analysis=answer or None)
    if finish_reason == "length":
        return ParsedAnalysis(status=ParseStatus.TRUNCATED, cause="finish_reason=length: the output was cut off",
                              **base)
    if not answer:
        return ParsedAnalysis(status=ParseStatus.EMPTY, cause="no answer text after the reasoning", **base)
    score = parse_score(answer, STEP_FINAL_PHRASE)
    return ParsedAnalysis(status=score.status, cause=score.cause, score=score.score, **base)


class ParsedStep(BaseModel):
    """A generator's next step: its text and whether it says it completes the proof."""

    status: ParseStatus
    cause: str | None = None
    reasoning: str | None = None
    step: str | None = None
    complete: bool = False


_NEXT = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?[ \t]*Next[ \t]+Step[ \t]*:?[ \t]*(?:\*\*)?[ \t]*:?[ \t]*$",
                   re.IGNORECASE | re.MULTILINE)
_COMPLETE = re.compile(r"^[ \t*_]*This completes the proof\.?[ \t*_]*$", re.IGNORECASE | re.MULTILINE)


def parse_next_step(text: str | None, *, reasoning: str | None = None, finish_reason: str | None = None) -> ParsedStep:
    """The step under the LAST `## Next Step` header (a model that drafts first keeps its final
    version). Statuses: TRUNCATED (the text so far is kept), EMPTY, NO_SOLUTION (no header, or
    nothing under it), OK. `complete` is set when the step ends with COMPLETE_LINE."""
    split = split_reasoning(text, reasoning)
    answer = split.answer
    headers = list(_NEXT.finditer(answer))
    step = answer[headers[-1].end():].strip() if headers else None
    base = dict(reasoning=split.reasoning, step=step or None)
    if finish_reason == "length":
        return ParsedStep(status=ParseStatus.TRUNCATED, cause="finish_reason=length: the output was cut off", **base)
    if not answer:
        return ParsedStep(status=ParseStatus.EMPTY, cause="no answer text after the reasoning", **base)
    if not headers:
        return ParsedStep(status=ParseStatus.NO_SOLUTION, cause=f"no {NEXT_STEP_HEADER!r} header", **base)
    if not step:
        return ParsedStep(status=ParseStatus.NO_SOLUTION, cause="the next step is empty", **base)
    last_line = step.splitlines()[-1]
    return ParsedStep(status=ParseStatus.OK, complete=bool(_COMPLETE.fullmatch(last_line)), **base)

"""Prompt templates for the four roles and the functions that render them into messages.

Pure apart from `Templates.load`, which reads the user's template files. A template is plain
text with `{{name}}` placeholders. Rendering is one pass of literal substitution: the values
(problems, proofs, analyses full of LaTeX `{}`, `$` and backslashes) are inserted verbatim and
never scanned again, so nothing in a problem can be mistaken for a placeholder.

    >>> msgs = generation_messages(r"Show that $\\frac{a}{b} \\ge {x}$ for $5.")
    >>> msgs[0]["role"], r"$\\frac{a}{b} \\ge {x}$ for $5." in msgs[0]["content"]
    ('user', True)
    >>> "{{" in verification_messages("P", "a proof with {{proof}} inside")[0]["content"]
    True

Every render function returns a single user message. The DeepSeekMath-V2 model was trained
with the whole instruction and the material in one user turn and no system prompt (as R1-style
reasoning models recommend), so one user message is what the model expects; the list type
leaves room for a chat history later.

The contract phrases (EVAL_START, FINAL_SCORE_PHRASE, ...) are what the parsers look for; the
surrounding wording is ours and users may replace it with files of their own (protocol/dsm2.py
turns DeepSeek's released prompt file into such a folder). As in the paper, the proof is shown
to the verifier and meta-verifier under a `## Solution` heading, as "the solution".

ROLE_MARKERS and `detect_role` tell from a request's text which role it is for; the simulator
and scripted servers use them, so the phrases they rely on live next to the templates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from proofloop.errors import UserInputError
from proofloop.protocol.types import Message

# The contract: phrases and headers the model was trained to produce (DESIGN.md §1).
EVAL_START = "Here is my evaluation of the solution:"
FINAL_SCORE_PHRASE = "Based on my evaluation, the final overall score should be:"
META_START = 'Here is my analysis of the "solution evaluation":'
META_FINAL_PHRASE = 'Based on my analysis, I will rate the "solution evaluation" as:'
SOLUTION_HEADER = "## Solution"
SELF_EVAL_HEADER = "## Self Evaluation"
REFINE_HEADER = "## Candidate Solution(s) to Refine"

# Placeholders each template must contain; with OPTIONAL_PLACEHOLDERS, the only ones it may contain.
REQUIRED_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "generate": ("problem",),
    "verify": ("problem", "proof"),
    "meta_verify": ("problem", "proof", "analysis"),
    "refine": ("candidates",),
}
# `{{instruction}}` in refine.md marks where the rendered generation prompt goes; a refine
# template without it is appended to the generation prompt instead.
OPTIONAL_PLACEHOLDERS: dict[str, tuple[str, ...]] = {"refine": ("instruction",)}

# Substrings that tell which role a prompt is for, checked in this order (first match wins).
# They hold for our templates and for the released DeepSeekMath-V2 ones: only refinement shows
# the candidate header, only meta-verification quotes "solution evaluation", of the rest only
# generation asks for a self evaluation, and a verifier is shown a solution or told how to score.
ROLE_MARKERS: dict[str, tuple[str, ...]] = {
    "refine": (REFINE_HEADER.lstrip("# "),),
    "meta_verify": ('"solution evaluation"',),
    "generate": (SELF_EVAL_HEADER,),
    "verify": (SOLUTION_HEADER, "final overall score", "final overal score"),
}

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def check_template(role: str, text: str, source: str) -> None:
    """Raise UserInputError (one line naming `source`) if `text` is not a usable `role` template:
    empty, lacking a required placeholder, or holding an unknown one."""
    if not text.strip():
        raise UserInputError(f"template {source} ({role}) is empty")
    found = set(_PLACEHOLDER.findall(text))
    missing = [p for p in REQUIRED_PLACEHOLDERS[role] if p not in found]
    if missing:
        raise UserInputError(f"template {source} ({role}) lacks the placeholder "
                             + ", ".join("{{" + m + "}}" for m in missing))
    allowed = REQUIRED_PLACEHOLDERS[role] + OPTIONAL_PLACEHOLDERS.get(role, ())
    unknown = sorted(found - set(allowed))
    if unknown:
        # A typo like {{problme}} would otherwise reach the model as literal text.
        raise UserInputError(f"template {source} ({role}) has unknown placeholder "
                             + ", ".join("{{" + u + "}}" for u in unknown)
                             + f" (allowed: {', '.join(allowed)})")


def _read(role: str, path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserInputError(f"template file {path} ({role}) does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"template file {path} ({role}) cannot be read: {e}") from None
    check_template(role, text, str(path))
    return text


@dataclass(frozen=True)
class Templates:
    """The wording of the four roles. `refine` is the block appended to the generation prompt."""

    generate: str
    verify: str
    meta_verify: str
    refine: str

    @classmethod
    def default(cls) -> "Templates":
        """Our own wording, shipped as package data in protocol/templates/*.md."""
        pkg = resources.files("proofloop.protocol") / "templates"
        texts = {f.name: (pkg / f"{f.name}.md").read_text(encoding="utf-8") for f in fields(cls)}
        for role, text in texts.items():
            check_template(role, text, f"<default {role}.md>")
        return cls(**texts)

    @classmethod
    def load(cls, directory: str | Path | None = None, **files: str | Path) -> "Templates":
        """Defaults, with any subset replaced by user files.

        `directory`: every `<role>.md` found in it replaces that role's default (it must hold
        at least one). `files`: explicit paths per role, e.g. `verify="my_verifier.md"`; they
        win over the directory. Any problem raises UserInputError with one line.
        """
        roles = [f.name for f in fields(cls)]
        unknown = sorted(set(files) - set(roles))
        if unknown:
            raise UserInputError(f"unknown template role(s) {', '.join(unknown)} (known: {', '.join(roles)})")
        chosen: dict[str, Path] = {}
        if directory is not None:
            d = Path(directory)
            if not d.is_dir():
                raise UserInputError(f"template directory {d} does not exist or is not a directory")
            chosen = {r: d / f"{r}.md" for r in roles if (d / f"{r}.md").exists()}
            if not chosen:
                raise UserInputError(f"template directory {d} holds none of "
                                     + ", ".join(f"{r}.md" for r in roles))
        chosen.update({r: Path(p) for r, p in files.items()})
        return replace(cls.default(), **{r: _read(r, p) for r, p in chosen.items()})


_DEFAULT: Templates | None = None


def _templates(t: Templates | None) -> Templates:
    global _DEFAULT
    if t is not None:
        return t
    if _DEFAULT is None:  # read the package files once
        _DEFAULT = Templates.default()
    return _DEFAULT


def render(template: str, **values: str) -> str:
    """Substitute `{{name}}` placeholders in one pass; values are inserted verbatim."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), template)


def _need(name: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserInputError(f"the {name} is empty")
    return value.strip()


def generation_messages(problem: str, templates: Templates | None = None) -> list[Message]:
    """The prompt asking for a proof plus a self evaluation."""
    t = _templates(templates)
    return [{"role": "user", "content": render(t.generate, problem=_need("problem", problem))}]


def verification_messages(problem: str, proof: str, templates: Templates | None = None) -> list[Message]:
    """The prompt asking a verifier to analyse and score `proof` (pass it through
    `proof_for_verification` first so the verifier never sees reasoning or a self score)."""
    t = _templates(templates)
    return [{"role": "user", "content": render(t.verify, problem=_need("problem", problem),
                                               proof=_need("proof", proof))}]


def meta_verification_messages(problem: str, proof: str, analysis: str,
                               templates: Templates | None = None) -> list[Message]:
    """The prompt asking a meta-verifier to rate one verifier analysis of `proof`."""
    t = _templates(templates)
    return [{"role": "user", "content": render(t.meta_verify, problem=_need("problem", problem),
                                               proof=_need("proof", proof),
                                               analysis=_need("analysis", analysis))}]


def format_candidates(candidates: Sequence[tuple[str, Sequence[str]]]) -> str:
    """Lay out candidate proofs, each followed by its analyses.

    The layout (0-based "--- Solution i ---" / "=== Evaluation j of Solution i ===" banners,
    a blank line between evaluations, two between candidates) is the one DeepSeek's released
    inference script builds, so the model sees refinement input shaped as in its training.
    """
    if not candidates:
        raise UserInputError("refinement needs at least one candidate proof")
    parts = []
    for i, (proof, analyses) in enumerate(candidates):
        evaluations = [f"=== Evaluation {j} of Solution {i} ===\n"
                       + _need(f"evaluation {j} of candidate {i}", analysis)
                       for j, analysis in enumerate(analyses)]
        parts.append(f"--- Solution {i} ---\n{_need(f'proof of candidate {i}', proof)}\n\n"
                     + "\n\n".join(evaluations))
    return "\n\n\n".join(parts).strip()


def refinement_messages(problem: str, candidates: Sequence[tuple[str, Sequence[str]]],
                        templates: Templates | None = None) -> list[Message]:
    """The generation prompt plus the candidate block (DESIGN.md §1, Refinement): placed at
    `{{instruction}}` when the refine template has it, else the block follows the prompt."""
    t = _templates(templates)
    head = render(t.generate, problem=_need("problem", problem)).strip()
    block = format_candidates(candidates)
    if "{{instruction}}" in t.refine:
        return [{"role": "user", "content": render(t.refine, instruction=head, candidates=block)}]
    return [{"role": "user", "content": f"{head}\n\n{render(t.refine, candidates=block).strip()}\n"}]


def message_text(messages: Sequence[dict[str, Any]]) -> str:
    """The text of a chat request: every message's content (plain or OpenAI content parts)."""
    texts = []
    for m in messages:
        c = m.get("content")
        if isinstance(c, list):
            c = "".join(p.get("text", "") for p in c if isinstance(p, dict))
        texts.append("" if c is None else str(c))
    return "\n".join(texts)


def detect_role(messages: Sequence[dict[str, Any]],
                markers: dict[str, Sequence[str]] | None = None) -> str | None:
    """Which role ("generate", "verify", "meta_verify", "refine") a request is for, judged by
    ROLE_MARKERS (or `markers`, same shape, checked in its order); None when nothing matches.

        >>> detect_role(verification_messages("P", "Q"))
        'verify'
        >>> detect_role([{"role": "user", "content": "hello"}]) is None
        True
    """
    text = message_text(messages)
    for role, needles in (ROLE_MARKERS if markers is None else markers).items():
        if any(n in text for n in needles):
            return role
    return None

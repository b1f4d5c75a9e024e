r"""The reference-guided autograder: its prompt and the parser for its 0-7 grade. Pure.

The autograder sees the problem, a reference solution, the problem's grading guidelines and a
proof, and awards one of IMO-ProofBench's four grades: 7 (correct), 6 (almost), 1 (partial),
0 (incorrect). Its answer ends with AUTOGRADE_FINAL_PHRASE and the points in `\boxed{}`; the
parser reads them with the same tolerance as the verifier's score (the last unquoted phrase,
the first box right after it) and accepts the bucket's name instead of its points.

    >>> msgs = autograde_messages("Show 1 + 1 = 2.", "1 + 1 = 2 by definition.", "Compute it.", None)
    >>> "(no grading guidelines" in msgs[0]["content"]
    True
    >>> g = parse_autograde("Here is my grading of the proof: a small slip in step 2.\n"
    ...                     f"{AUTOGRADE_FINAL_PHRASE} \\boxed{{6}}")
    >>> g.status.value, g.points, g.bucket, round(g.normalised, 4)
    ('ok', 6.0, 'almost', 0.8571)
    >>> parse_autograde(f"{AUTOGRADE_FINAL_PHRASE} \\boxed{{4}}").status.value
    'invalid_score'
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from pydantic import BaseModel

from proofloop.errors import UserInputError
from proofloop.protocol.types import Message
from proofloop.protocol.parsers import boxed_after, phrase_regex, is_quoted, split_reasoning
from proofloop.protocol.templates import render
from proofloop.protocol.types import ParseStatus

AUTOGRADE_START = "Here is my grading of the proof:"
AUTOGRADE_FINAL_PHRASE = "Based on the reference solution and the grading guidelines, the final grade is:"
MAX_POINTS = 7.0
# IMO-ProofBench's four buckets: points -> name.
BUCKETS: dict[float, str] = {7.0: "correct", 6.0: "almost", 1.0: "partial", 0.0: "incorrect"}
PLACEHOLDERS = ("problem", "reference_solution", "guidelines", "proof")
NO_GUIDELINES = "(no grading guidelines were given for this problem: grade against the reference solution)"

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_WRAPPERS = re.compile(r"\\(?:text(?:bf|rm|it|sc)?|mathbf|mathrm|textstyle|displaystyle|bf|rm|mbox)\b")


class ParsedGrade(BaseModel):
    """An autograder output. `points`, `bucket` and `normalised` are set only when status is ok."""

    status: ParseStatus
    cause: str | None = None
    reasoning: str | None = None
    analysis: str | None = None
    points: float | None = None
    bucket: str | None = None
    normalised: float | None = None
    raw_value: str | None = None


def check_template(text: str, source: str) -> str:
    """`text` if it is a usable autograder template, else UserInputError naming `source`."""
    if not text.strip():
        raise UserInputError(f"autograder template {source} is empty")
    found = set(_PLACEHOLDER.findall(text))
    missing = [p for p in PLACEHOLDERS if p not in found]
    unknown = sorted(found - set(PLACEHOLDERS))
    if missing or unknown:
        what = []
        if missing:
            what.append("lacks " + ", ".join("{{" + m + "}}" for m in missing))
        if unknown:
            what.append("has unknown " + ", ".join("{{" + u + "}}" for u in unknown))
        raise UserInputError(f"autograder template {source}: " + "; ".join(what)
                             + f" (placeholders: {', '.join(PLACEHOLDERS)})")
    return text


def default_template() -> str:
    """Our wording, shipped as protocol/templates/autograde.md."""
    text = (resources.files("proofloop.protocol") / "templates" / "autograde.md").read_text(encoding="utf-8")
    return check_template(text, "<default autograde.md>")


def load_template(path: str | Path | None) -> str:
    """The user's template file, or ours when `path` is None."""
    if path is None:
        return default_template()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"cannot read autograder template {p}: {e}") from None
    return check_template(text, str(p))


def _need(name: str, value: str | None) -> str:
    if not value or not value.strip():
        raise UserInputError(f"the autograder needs a {name}; it is empty")
    return value.strip()


def autograde_messages(problem: str, proof: str, reference_solution: str, guidelines: str | None,
                       template: str | None = None) -> list[Message]:
    """One user message asking for a 0/1/6/7 grade. A reference solution is required (this is
    what makes the grade reference-guided); missing guidelines are said to be missing."""
    text = render(template if template is not None else default_template(),
                  problem=_need("problem", problem), proof=_need("proof", proof),
                  reference_solution=_need("reference solution", reference_solution),
                  guidelines=guidelines.strip() if guidelines and guidelines.strip() else NO_GUIDELINES)
    return [{"role": "user", "content": text}]


def _points(raw: str) -> float | None:
    """Points from a boxed value: 7, 6.0, 6/7, "6 points", \\text{Almost}, Partial (1) ..."""
    s = _WRAPPERS.sub("", raw)
    s = re.sub(r"[\s${}()\\*]", " ", s).strip().rstrip(".").strip().lower()
    for points, name in BUCKETS.items():
        if re.fullmatch(rf"{name}(?:\s*[:\-,]?\s*{points:g}(?:\s*/\s*7)?)?", s):
            return points
    m = re.fullmatch(r"(\d+(?:\.0*)?)\s*(?:/\s*7|points?|pts?)?(?:\s*[:\-,]?\s*[a-z]+)?", s)
    return float(m.group(1)) if m else None


def parse_autograde(text: str | None, *, reasoning: str | None = None,
                    finish_reason: str | None = None) -> ParsedGrade:
    """An autograder output -> status, points (0, 1, 6 or 7), bucket name and points / 7.

    Statuses: TRUNCATED (finish_reason "length"), EMPTY, NO_FINAL_PHRASE, NO_BOXED_SCORE,
    INVALID_SCORE (a boxed value outside the four buckets, e.g. 4: never rounded to one).
    """
    split = split_reasoning(text, reasoning)
    answer = split.answer
    base = dict(reasoning=split.reasoning, analysis=answer or None)
    if finish_reason == "length":
        return ParsedGrade(status=ParseStatus.TRUNCATED,
                           cause="finish_reason=length: the output was cut off at the token limit", **base)
    if not answer:
        return ParsedGrade(status=ParseStatus.EMPTY, cause="no answer text after the reasoning", **base)
    hits = list(phrase_regex(AUTOGRADE_FINAL_PHRASE).finditer(answer))
    if not hits:
        return ParsedGrade(status=ParseStatus.NO_FINAL_PHRASE,
                           cause=f"the phrase {AUTOGRADE_FINAL_PHRASE!r} is missing", **base)
    own = [h for h in hits if not is_quoted(answer, h.start())] or hits
    raw, cause = boxed_after(answer, own[-1].end())
    if raw is None:
        return ParsedGrade(status=ParseStatus.NO_BOXED_SCORE, cause=cause, **base)
    points = _points(raw)
    if points not in BUCKETS:
        return ParsedGrade(status=ParseStatus.INVALID_SCORE, raw_value=raw,
                           cause=f"boxed grade {raw.strip()!r} is not one of the four grades 7, 6, 1, 0", **base)
    return ParsedGrade(status=ParseStatus.OK, points=points, bucket=BUCKETS[points],
                       normalised=points / MAX_POINTS, raw_value=raw, **base)

r"""Parsers for the three roles' outputs. Pure: text in, typed result out, never an exception.

Each parse returns a status (types.ParseStatus); only OK carries a score, every other status
comes with a one-line cause, so a malformed output is never read as a score of 0.

    >>> out = "<think>hmm</think>## Solution\nTrivial.\n## Self Evaluation\n" \
    ...       "Here is my evaluation of the solution: fine.\n" \
    ...       "Based on my evaluation, the final overall score should be: $\\boxed{1}$"
    >>> p = parse_proof(out)
    >>> p.status.value, p.solution, p.self_score, p.reasoning
    ('ok', 'Trivial.', 1.0, 'hmm')
    >>> proof_for_verification(out)
    'Trivial.'
    >>> parse_score("The proof says: the final overall score should be: \\boxed{1}. "
    ...             "**Based on my evaluation, the final overal score should be:** \\boxed{\\frac{1}{2}}").score
    0.5

Where the score comes from: the first `\boxed{...}` after the LAST occurrence of the
final-score phrase, provided it starts within 80 characters of it. A verifier often quotes
the proof it grades, and a quoted proof may hold `\boxed{answer}`s or even a fake final-score
line; the model's own verdict is the one it ends with. Occurrences inside a markdown
blockquote (`> ...`) or a code fence are passed over when an unquoted one exists, so a
quotation placed after the verdict cannot override it either.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from fractions import Fraction

from proofloop.protocol.templates import (EVAL_START, FINAL_SCORE_PHRASE, META_FINAL_PHRASE,
                                          META_START, SELF_EVAL_HEADER, SOLUTION_HEADER)
from proofloop.protocol.types import (SCORES, ParsedAnalysis, ParsedProof, ParsedScore, ParseStatus,
                                      SplitReasoning)

__all__ = ["split_reasoning", "parse_score", "parse_proof", "parse_verification",
           "parse_meta_verification", "extract_issues", "proof_for_verification", "user_proof",
           "EVAL_START", "FINAL_SCORE_PHRASE", "META_START", "META_FINAL_PHRASE",
           "SOLUTION_HEADER", "SELF_EVAL_HEADER"]

_TRUNCATED_CAUSE = "finish_reason=length: the output was cut off at the token limit"

# ---------------------------------------------------------------- reasoning


def split_reasoning(text: str | None, reasoning: str | None = None) -> SplitReasoning:
    """Separate reasoning from the answer.

    Reasoning comes from the server's `reasoning_content` (`reasoning`) and/or inline text
    before the last `</think>` (a leading `<think>` is dropped). An opening `<think>` that is
    never closed means the model never left its reasoning: everything is reasoning, the answer
    is empty.
    """
    text = text or ""
    parts = [reasoning.strip()] if reasoning and reasoning.strip() else []
    end = text.rfind("</think>")
    if end >= 0:
        inline, answer = text[:end], text[end + len("</think>"):]
    elif text.lstrip().startswith("<think>"):
        inline, answer = text, ""
    else:
        inline, answer = "", text
    inline = inline.strip()
    if inline.startswith("<think>"):
        inline = inline[len("<think>"):].strip()
    if inline:
        parts.append(inline)
    return SplitReasoning(reasoning="\n\n".join(parts) if parts else None, answer=answer.strip())


# ---------------------------------------------------------------- scores


def phrase_regex(phrase: str) -> re.Pattern[str]:
    """A tolerant pattern for a contract phrase: any case, any whitespace or markdown emphasis
    between words, any quote style, optional punctuation, and each doubled letter may be single
    (the "overal" typo seen in real outputs)."""
    words = re.findall(r"[A-Za-z]+", phrase)

    def word(w: str) -> str:
        return "".join(re.escape(c) + ("?" if i > 0 and w[i - 1] == c else "") for i, c in enumerate(w))

    gap = r"[\s*_\"'“”‘’`,:.\-]+"
    # "\bB..." written as "B(?<!\wB)...": the same matches, but a pattern that opens with a
    # letter lets the regex engine skip ahead to that letter, which scans a long answer 2-3 x
    # faster (a reward parses every completion of a training step).
    first = re.escape(words[0][0])
    body = gap.join(word(w) for w in words)[len(first):]
    return re.compile(first + rf"(?<!\w{first})" + body + r"(?![A-Za-z])[\s*_\"'“”‘’`:.]*", re.IGNORECASE)


_PHRASES: dict[str, re.Pattern[str]] = {}
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


def is_quoted(text: str, pos: int) -> bool:
    """Is `pos` on a blockquote line or inside a code fence? Fences count only when they pair
    up over the whole text: one stray fence must not turn the verdict into a "quotation"."""
    line_start = text.rfind("\n", 0, pos) + 1
    if text[line_start:pos].lstrip().startswith(">"):
        return True
    if len(_FENCE.findall(text)) % 2:
        return False
    return len(_FENCE.findall(text, 0, pos)) % 2 == 1


_BOX = re.compile(r"\\boxed\s*\{")
_MAX_GAP = 80  # characters allowed between the phrase and its \boxed (": **", "\n\n$$", ...)


def boxed_after(text: str, start: int) -> tuple[str | None, str | None]:
    r"""The content of the first `\boxed{...}` at or after `start` (nested and escaped braces
    handled), or (None, cause)."""
    m = _BOX.search(text, start)
    if not m:
        return None, r"no \boxed{} after the final phrase"
    if m.start() - start > _MAX_GAP:
        # A box far below the phrase is something else (an answer quoted later), not the verdict.
        return None, rf"no \boxed{{}} right after the final phrase (the next is {m.start() - start} chars later)"
    depth, i = 1, m.end()
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2  # skip \{ \} \\ and commands' first letter
            continue
        depth += (c == "{") - (c == "}")
        if depth == 0:
            return text[m.end():i], None
        i += 1
    return None, r"\boxed{ is never closed (output cut off?)"


_WRAPPERS = re.compile(r"\\(?:text(?:bf|rm|it)?|mathbf|mathrm|textstyle|displaystyle|bf|rm|mbox|boldsymbol)\b")


def _value(raw: str) -> float | None:
    r"""Read a boxed value: 1, 1.0, .5, 0.50, 1/2, \frac{1}{2}, \dfrac12, $1$, \textbf{1} ..."""
    s = _WRAPPERS.sub("", raw)
    s = re.sub(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}", r"(\1)/(\2)", s)
    s = re.sub(r"\\[dt]?frac\s*(\d)\s*(\d)", r"\1/\2", s)  # \frac12
    s = re.sub(r"[\s${}()]|\\[,;!: ]|\\quad", "", s).rstrip(".")
    try:
        if re.fullmatch(r"\+?(\d+(\.\d*)?|\.\d+)", s):
            return float(s)
        if m := re.fullmatch(r"\+?(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)", s):
            return float(Fraction(m.group(1)) / Fraction(m.group(2)))
    except (ValueError, ZeroDivisionError):
        return None
    return None


def parse_score(answer: str, phrase: str = FINAL_SCORE_PHRASE) -> ParsedScore:
    r"""The score in the first `\boxed{}` after the last occurrence of `phrase` (see module doc)."""
    answer = answer or ""
    pattern = _PHRASES.get(phrase) or _PHRASES.setdefault(phrase, phrase_regex(phrase))
    hits = list(pattern.finditer(answer))
    if not hits:
        return ParsedScore(status=ParseStatus.NO_FINAL_PHRASE, cause=f"the phrase {phrase!r} is missing")
    own = [h for h in hits if not is_quoted(answer, h.start())] or hits
    raw, cause = boxed_after(answer, own[-1].end())
    if raw is None:
        return ParsedScore(status=ParseStatus.NO_BOXED_SCORE, cause=cause)
    value = _value(raw)
    if value is None or value not in SCORES:
        return ParsedScore(status=ParseStatus.INVALID_SCORE, raw_value=raw,
                           cause=f"boxed value {raw.strip()!r} is not one of 0, 0.5, 1")
    return ParsedScore(status=ParseStatus.OK, score=value, raw_value=raw)


# ---------------------------------------------------------------- generator output


def _header(name: str) -> re.Pattern[str]:
    """A section header line: `## Name`, `# Name`, `### Name:`, `**Name**`, `**Name.**`, `__Name__`."""
    words = r"[\s\-]*".join(re.escape(w) for w in name.split())
    return re.compile(rf"^[ \t]*(?:#{{1,6}}[ \t]*)?(?:\*\*|__)?[ \t]*{words}[ \t]*[:.]?[ \t]*(?:\*\*|__)?"
                      rf"[ \t]*[:.]?[ \t]*$", re.IGNORECASE | re.MULTILINE)


_SOLUTION = _header(SOLUTION_HEADER.lstrip("# "))
_SELF_EVAL = _header(SELF_EVAL_HEADER.lstrip("# "))


def _sections(answer: str) -> tuple[str | None, str | None, bool]:
    """(solution, self evaluation, solution header found). The solution runs from the first
    solution header to the first self-evaluation header after it; without a solution header
    it is whatever precedes the self evaluation."""
    sol = _SOLUTION.search(answer)
    body_start = sol.end() if sol else 0
    ev = _SELF_EVAL.search(answer, body_start)
    solution = answer[body_start:ev.start() if ev else len(answer)].strip()
    evaluation = answer[ev.end():].strip() if ev else None
    return solution or None, evaluation, sol is not None


def parse_proof(text: str | None, *, reasoning: str | None = None,
                finish_reason: str | None = None) -> ParsedProof:
    """A generator output: `## Solution` ... `## Self Evaluation` ... boxed self score.

    Statuses: TRUNCATED (finish_reason "length"; whatever solution text exists is kept),
    EMPTY, NO_SOLUTION (no solution header, or an empty solution; `solution` still holds the
    text before any self evaluation), NO_SELF_EVALUATION, then the self score's
    NO_FINAL_PHRASE / NO_BOXED_SCORE / INVALID_SCORE. `self_score` is set only when OK.
    """
    split = split_reasoning(text, reasoning)
    answer = split.answer
    solution, evaluation, has_header = _sections(answer)
    base = dict(reasoning=split.reasoning, solution=solution, self_evaluation=evaluation)
    if finish_reason == "length":
        return ParsedProof(status=ParseStatus.TRUNCATED, cause=_TRUNCATED_CAUSE, **base)
    if not answer:
        return ParsedProof(status=ParseStatus.EMPTY, cause="no answer text after the reasoning", **base)
    if not has_header:
        return ParsedProof(status=ParseStatus.NO_SOLUTION, cause="no '## Solution' header", **base)
    if solution is None:
        return ParsedProof(status=ParseStatus.NO_SOLUTION, cause="the solution section is empty", **base)
    if evaluation is None:
        return ParsedProof(status=ParseStatus.NO_SELF_EVALUATION, cause="no '## Self Evaluation' header",
                           **base)
    score = parse_score(evaluation, FINAL_SCORE_PHRASE)
    if not score.ok:
        return ParsedProof(status=score.status, cause=f"self evaluation: {score.cause}", **base)
    return ParsedProof(status=ParseStatus.OK, self_score=score.score, **base)


def proof_for_verification(generator_output_or_solution: str) -> str:
    """What a verifier is shown: the solution section only, without reasoning, headers or the
    self evaluation (so it never sees the self score). Text without a solution header is
    returned minus reasoning (and minus any self-evaluation section)."""
    answer = split_reasoning(generator_output_or_solution).answer
    solution, _, _ = _sections(answer)
    return solution or ""


def user_proof(text: str | None) -> ParsedProof:
    """A proof a person supplied to be verified, as a ParsedProof. Unlike `parse_proof` (which
    holds a generator to its output contract), text without a `## Solution` header is the
    solution whole, and no self evaluation is required.

    Statuses: EMPTY (nothing but reasoning or whitespace), NO_SOLUTION (a solution header
    with nothing under it), OK otherwise; `solution` is exactly what `proof_for_verification`
    shows a verifier. A self evaluation, when the text has one, is kept with its score; if
    that score cannot be read, its parse status and cause are reported (the solution stays).

        >>> p = user_proof("Let n be even. Then n = 2k, so n^2 = 4k^2.")
        >>> p.status.value, p.solution, p.self_score
        ('ok', 'Let n be even. Then n = 2k, so n^2 = 4k^2.', None)
    """
    split = split_reasoning(text)
    solution, evaluation, _ = _sections(split.answer)
    base = dict(reasoning=split.reasoning, solution=solution, self_evaluation=evaluation)
    if not split.answer:
        return ParsedProof(status=ParseStatus.EMPTY, cause="the proof is empty", **base)
    if solution is None:
        return ParsedProof(status=ParseStatus.NO_SOLUTION, cause="the solution section is empty", **base)
    if evaluation is None:
        return ParsedProof(status=ParseStatus.OK, **base)
    score = parse_score(evaluation, FINAL_SCORE_PHRASE)
    if not score.ok:
        return ParsedProof(status=score.status, cause=f"self evaluation: {score.cause}", **base)
    return ParsedProof(status=ParseStatus.OK, self_score=score.score, **base)


# ---------------------------------------------------------------- analyses


class RecentParses:
    """The latest parses of analyses, up to `max_chars` of text in all. An analysis is parsed
    when its call returns and again when the store checks that its record can be re-derived
    from the call (store/derive.py): the second parse is a look-up. Each hit is a copy, so a
    caller that changes what it got changes nobody else's."""

    def __init__(self, max_chars: int = 8_000_000):
        self.max_chars = max_chars
        self.found: OrderedDict[tuple[object, ...], ParsedAnalysis] = OrderedDict()
        self.chars = 0
        self.lock = threading.Lock()  # the service parses in several worker threads

    def get(self, key: tuple[object, ...], parse: Callable[[], ParsedAnalysis]) -> ParsedAnalysis:
        with self.lock:
            hit = self.found.get(key)
            if hit is not None:
                self.found.move_to_end(key)
        if hit is None:
            hit = parse()
            self._keep(key, hit)
        return hit.model_copy(update={"issues": list(hit.issues)})

    def _keep(self, key: tuple[object, ...], parsed: ParsedAnalysis) -> None:
        size = _chars(key)
        if size > self.max_chars:
            return
        with self.lock:
            if key not in self.found:
                self.found[key] = parsed
                self.chars += size
            while self.chars > self.max_chars:
                self.chars -= _chars(self.found.popitem(last=False)[0])


def _chars(key: tuple[object, ...]) -> int:
    return sum(len(part) for part in key if isinstance(part, str))


_RECENT = RecentParses()


def _parse_analysis(text: str | None, reasoning: str | None, finish_reason: str | None,
                    phrase: str, issues: bool) -> ParsedAnalysis:
    return _RECENT.get((text, reasoning, finish_reason, phrase, issues),
                       lambda: _parse_analysis_now(text, reasoning, finish_reason, phrase, issues))


def _parse_analysis_now(text: str | None, reasoning: str | None, finish_reason: str | None,
                        phrase: str, issues: bool) -> ParsedAnalysis:
    split = split_reasoning(text, reasoning)
    answer = split.answer
    base = dict(reasoning=split.reasoning, analysis=answer or None, issues=extract_issues(answer) if issues else [])
    if finish_reason == "length":
        return ParsedAnalysis(status=ParseStatus.TRUNCATED, cause=_TRUNCATED_CAUSE, **base)
    if not answer:
        return ParsedAnalysis(status=ParseStatus.EMPTY, cause="no answer text after the reasoning", **base)
    score = parse_score(answer, phrase)
    return ParsedAnalysis(status=score.status, cause=score.cause, score=score.score, **base)


def parse_verification(text: str | None, *, reasoning: str | None = None, finish_reason: str | None = None,
                       issues: bool = True) -> ParsedAnalysis:
    """A verifier output: the analysis, its score (after FINAL_SCORE_PHRASE) and the issues it
    names (`issues=False`: left empty, for callers that need the verdict only: the issue
    heuristic costs about 0.2 ms per KB, the rest of the parse a tenth of that)."""
    return _parse_analysis(text, reasoning, finish_reason, FINAL_SCORE_PHRASE, issues)


def parse_meta_verification(text: str | None, *, reasoning: str | None = None, finish_reason: str | None = None,
                            issues: bool = True) -> ParsedAnalysis:
    """A meta-verifier output: its rating of a verifier analysis (after META_FINAL_PHRASE) in `score`."""
    return _parse_analysis(text, reasoning, finish_reason, META_FINAL_PHRASE, issues)


# ---------------------------------------------------------------- issues (heuristic)

_DEFECT_NOUN = r"(?:errors?|gaps?|issues?|flaws?|mistakes?|problems?|omissions?|concerns?|defects?|" \
               r"unjustified|missing|incorrect|wrong|invalid|incomplete|omitted|lacking|circular)"
# "no errors or gaps", "without any gap", "is not incorrect", "free of flaws": denied defects.
_DENIED = re.compile(
    r"\b(?:no|not|without|free\s+of|nor|never|none\s+of\s+the|nothing)\b(?:\s+\S+){0,3}?\s+" + _DEFECT_NOUN
    + r"\b(?:\s*(?:,|or|and|nor)\s+(?:\S+\s+){0,2}?" + _DEFECT_NOUN + r"\b)*"
    + r"|\bnothing\s+(?:is\s+)?(?:missing|wrong|omitted)\b", re.IGNORECASE)
# Defects said with a negation ("not proven", "fails to"), looked for before denials are removed.
_NEGATED_DEFECT = re.compile(
    r"\b(?:not\s+(?:\w+\s+)?(?:proven|proved|justified|shown|established|explained|rigorous|valid|"
    r"correct|addressed|handled|considered|covered|true|sufficient|complete)|"
    r"(?:does|do|did)\s*n[o']t\s+(?:\w+\s+)?(?:follow|hold|prove|show|justify|address|cover|handle|consider|"
    r"establish|imply)|fails?\s+to|failed\s+to|"
    r"(?:no|without|lacks?|lacking)\s+(?:\w+\s+)?(?:justification|proof|explanation|argument))\b",
    re.IGNORECASE)
_WORD_DEFECT = re.compile(
    r"\b(?:errors?|erroneous|gaps?|flaws?|flawed|mistakes?|mistaken|incorrect(?:ly)?|wrong(?:ly)?|invalid|"
    r"unjustified|unproven|unsupported|unclear|missing|omit(?:s|ted)?|omission|incomplete|insufficient|"
    r"overlooks?|circular|hand-?wav\w*|defects?|issues?\s*\d*\s*[:\-\u2013])",
    re.IGNORECASE)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|\(\w{1,3}\)|[a-z][.)])\s+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z*(\\])")
_CONTRACT = re.compile("|".join(re.escape(p) for p in (EVAL_START, FINAL_SCORE_PHRASE, META_START,
                                                        META_FINAL_PHRASE)), re.IGNORECASE)


def _reports_defect(item: str) -> bool:
    if _NEGATED_DEFECT.search(item):
        return True
    rest = re.sub(r"error terms?", "", _DENIED.sub(" ", item), flags=re.IGNORECASE)
    return bool(_WORD_DEFECT.search(rest))


def extract_issues(analysis: str | None) -> list[str]:
    """The issues an analysis names. A HEURISTIC, for display and for preferring analyses that
    found something; the score, not this list, is the verdict.

    The analysis is cut into items (each bullet or numbered item with its continuation lines;
    each sentence of an ordinary paragraph); an item counts when it holds a defect word (error,
    gap, incorrect, unjustified, missing, omitted, not proven, ...) that is not denied ("no
    errors", "without any gap"). Items are trimmed and deduplicated, in order. A clean
    "every step is correct" analysis gives [].

        >>> extract_issues("Every step is correct. There are no errors or gaps.")
        []
        >>> extract_issues("Step 2 is fine.\\n- The case n = 1 is missing.\\n- Lemma 3 is not proven.")
        ['The case n = 1 is missing.', 'Lemma 3 is not proven.']
    """
    if not analysis:
        return []
    items: list[str] = []
    current: list[str] | None = None  # the bullet being collected
    paragraph: list[str] = []

    def flush_paragraph() -> None:
        if paragraph:
            items.extend(_SENTENCE.split(" ".join(paragraph)))
            paragraph.clear()

    for line in analysis.splitlines():
        stripped = line.strip()
        if _BULLET.match(line):
            flush_paragraph()
            if current:
                items.append(" ".join(current))
            current = [_BULLET.sub("", line, count=1).strip()]
        elif not stripped or stripped.startswith("#"):
            flush_paragraph()
            if current:
                items.append(" ".join(current))
            current = None
        elif current is not None and line[:1].isspace():
            current.append(stripped)  # an indented continuation of the bullet
        else:
            if current:
                items.append(" ".join(current))
            current = None
            paragraph.append(stripped)
    flush_paragraph()
    if current:
        items.append(" ".join(current))

    seen: set[str] = set()
    issues: list[str] = []
    for item in items:
        item = re.sub(r"\s+", " ", item).strip().strip("*_ ").strip()
        item = _CONTRACT.sub("", item).strip()
        key = item.lower()
        if item and key not in seen and _reports_defect(item):
            seen.add(key)
            issues.append(item)
    return issues

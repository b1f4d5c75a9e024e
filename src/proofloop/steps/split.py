"""Split a proof into steps: paragraphs, display equations, numbered or bulleted items and
headings, each with a stable id and its character offsets into the original text.

Pure and lossless: every step is `text[start:end]`, steps come in order without overlap, and
what lies between them (the gaps) is whitespace only, so `join(text, steps)` gives the text
back exactly.

    >>> proof = "**1. Setup**\\nLet x>0.\\n\\\\[ (x+1)^2 = x^2+2x+1 \\\\]\\nHence done.\\n\\n- first\\n- second"
    >>> [(s.id, s.kind, s.text) for s in split_steps(proof)]   # doctest: +NORMALIZE_WHITESPACE
    [('s1', 'heading', '**1. Setup**'), ('s2', 'paragraph', 'Let x>0.'),
     ('s3', 'display', '\\\\[ (x+1)^2 = x^2+2x+1 \\\\]'), ('s4', 'paragraph', 'Hence done.'),
     ('s5', 'item', '- first'), ('s6', 'item', '- second')]
    >>> join(proof, split_steps(proof)) == proof
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Step", "split_steps", "join", "gaps", "DISPLAY_MATH"]

# Display mathematics: $$...$$, \[...\] and the numbered/aligned environments. An unclosed
# opener is not a display (the text is left to the paragraph rules).
_ENVIRONMENTS = "align|aligned|equation|gather|multline|eqnarray|flalign|alignat"
DISPLAY_MATH = re.compile(r"\$\$.+?\$\$|\\\[.+?\\\]|\\begin\{(" + _ENVIRONMENTS + r")(\*?)\}.*?\\end\{\1\2\}",
                          re.S)
# A line that starts a new step: a bullet, an enumerator (1. / 1) / (1) / a.), a Markdown
# heading, a bold lead ("**Step 2.**", "**Case 1**"), a rule, or "Step 3:" / "Case 2." / "Claim 1".
_ITEM = re.compile(r"[ \t]*(?:[-*+•](?=\s)|\(?\d{1,3}[.)](?=\s)|\(\d{1,3}\)|\(?[a-z][.)](?=\s))")
_HEADING = re.compile(r"[ \t]*(?:#{1,6}(?=\s)|\*\*|__|-{3,}[ \t]*$|(?:Step|Case|Claim|Lemma|Part)\s+\w+[.:)])",
                      re.I)
_BOLD_LINE = re.compile(r"[ \t]*\*\*[^\n]*\*\*[ \t]*:?[ \t]*$")


@dataclass(frozen=True)
class Step:
    """One step of a proof: `id` is s1, s2, ... in reading order (the same text always gives
    the same ids); `kind` is paragraph, display, item or heading."""

    id: str
    kind: str
    start: int
    end: int
    text: str


def split_steps(text: str) -> list[Step]:
    """The steps of `text`, in order (see the module docstring for the guarantees)."""
    pieces: list[tuple[str, int, int]] = []
    position = 0
    for match in DISPLAY_MATH.finditer(text):
        pieces += _blocks(text, position, match.start())
        pieces.append(("display", match.start(), match.end()))
        position = match.end()
    pieces += _blocks(text, position, len(text))
    return [Step(f"s{i}", kind, start, end, text[start:end]) for i, (kind, start, end) in enumerate(pieces, 1)]


def _blocks(text: str, start: int, end: int) -> list[tuple[str, int, int]]:
    """Paragraph-level blocks of text[start:end] (no display maths inside): a blank line ends a
    block, a line that opens an item or a heading starts one, a heading is one line."""
    blocks: list[tuple[str, int, int]] = []
    current: list[int] = []  # [block start, block end] of the block being built
    kind = "paragraph"
    for line_start, line_end in _lines(text, start, end):
        line = text[line_start:line_end]
        if not line.strip():
            if current:
                blocks.append((kind, *current))
            current = []
            continue
        opens = _line_kind(line)
        if opens and current:
            blocks.append((kind, *current))
            current = []
        if not current:
            kind = opens or "paragraph"
            current = [line_start, line_end]
        current[1] = line_end
        if kind == "heading":  # a heading is one line: the next line starts a new step
            blocks.append((kind, *current))
            current = []
    if current:
        blocks.append((kind, *current))
    return [_stripped(text, kind, s, e) for kind, s, e in blocks]


def _line_kind(line: str) -> str | None:
    """heading or item when `line` starts a new step, else None (it continues the block)."""
    if _BOLD_LINE.match(line) or re.match(r"[ \t]*(?:#|-{3,}[ \t]*$)", line):
        return "heading"
    if _HEADING.match(line) or _ITEM.match(line):
        return "item"
    return None


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each line of text[start:end], the newline excluded."""
    out = []
    position = start
    while position < end:
        newline = text.find("\n", position, end)
        stop = end if newline < 0 else newline
        out.append((position, stop))
        position = stop + 1
    return out


def _stripped(text: str, kind: str, start: int, end: int) -> tuple[str, int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return kind, start, end


def gaps(text: str, steps: list[Step]) -> list[str]:
    """The len(steps) + 1 stretches of text around the steps (whitespace only)."""
    bounds = [0] + [b for s in steps for b in (s.start, s.end)] + [len(text)]
    return [text[bounds[i]:bounds[i + 1]] for i in range(0, len(bounds), 2)]


def join(text: str, steps: list[Step]) -> str:
    """The gaps and steps put back together: equals `text` for `split_steps(text)`."""
    around = gaps(text, steps)
    return "".join(g + s.text for g, s in zip(around, steps)) + around[-1]

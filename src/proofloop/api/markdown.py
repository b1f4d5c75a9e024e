"""Model output as safe HTML: Markdown with LaTeX, the mathematics rendered to MathML on the
server. Pure: no I/O, no state but a cache of converted formulas.

What is recognised as mathematics: `$...$` and `\\(...\\)` inline; `$$...$$` and `\\[...\\]`
displayed (on their own lines or inside a paragraph); top-level amsmath environments such as
`\\begin{align*} ... \\end{align*}`. Each formula goes through latex2mathml.

Model output is untrusted, so:
- raw HTML is escaped, never rendered (markdown-it's CommonMark preset with html off);
- a link keeps its target only for http(s), mailto and relative addresses (javascript:,
  data:, vbscript:, file: and every other scheme are dropped); images are not loaded at all;
- latex2mathml copies parts of its input into its output (`\\text{<b>}` comes back as markup,
  `\\href{...}` as an href attribute), so its MathML is parsed and rebuilt keeping only MathML
  elements and presentation attributes; a formula it cannot convert, or whose output is not
  clean MathML, is shown as escaped TeX in `<code class="tex-error">`. Rendering never raises.

    >>> render_markdown("Since $x^2 \\\\ge 0$, **done**.")[:70]
    '<p>Since <span class="math inline"><math display="inline"><mrow><msup>'
    >>> render_markdown("<script>alert(1)</script>")
    '<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\\n'
    >>> render_markdown("[x](javascript:alert(1))")
    '<p>[x](javascript:alert(1))</p>\\n'
    >>> tex_to_mathml("\\\\frac{1}{", display=False)
    '<code class="tex-error" title="not converted: NoAvailableTokensError">\\\\frac{1}{</code>'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from html import escape
from typing import Any
from xml.etree import ElementTree as ET

from latex2mathml.converter import convert
from markdown_it import MarkdownIt
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from mdit_py_plugins.amsmath import amsmath_plugin
from mdit_py_plugins.dollarmath import dollarmath_plugin

# MathML Core elements plus the few presentation ones latex2mathml writes (mstyle, menclose,
# mfenced). Anything else in its output (say, <script> made from \text{<script>}) rejects it.
MATHML_ELEMENTS = frozenset(
    "math mrow mi mn mo ms mtext mspace msup msub msubsup mfrac msqrt mroot mstyle merror mpadded "
    "mphantom menclose mfenced munder mover munderover mmultiscripts mprescripts none mtable mtr mtd "
    "mlabeledtr semantics annotation".split())
# Presentation attributes only: no href, no event handler, no class or style.
MATHML_ATTRIBUTES = frozenset(
    "display displaystyle scriptlevel mathvariant mathsize mathcolor mathbackground stretchy symmetric "
    "largeop movablelimits accent accentunder fence separator form lspace rspace minsize maxsize width "
    "height depth voffset linethickness bevelled notation columnalign columnspacing columnlines rowalign "
    "rowspacing rowlines frame framespacing equalrows equalcolumns align open close separators "
    "columnspan rowspan".split())
SAFE_SCHEMES = ("http:", "https:", "mailto:")
MATHML_NS = "{http://www.w3.org/1998/Math/MathML}"
# Environments latex2mathml does not know, written as one it does (a table of aligned rows).
AS_ALIGN = re.compile(r"\\(begin|end)\{(aligned|alignedat|gathered|gather\*?|multline\*?|eqnarray\*?|flalign\*?)\}"
                      r"(\{\d+\})?")
# What only changes spacing or numbering: a row break's extra space, labels, (no) numbers.
SPACING = re.compile(r"(?<=\\\\)\[[^\]]{0,12}\]|\\label\{[^}]*\}|\\(nonumber|notag)\b")
# latex2mathml writes a bare & for an alignment mark it did not place in a table.
BARE_AMPERSAND = re.compile(r"&(?!#x?[0-9a-fA-F]+;|[a-zA-Z]+;)")


class UnsafeMathML(ValueError):
    """latex2mathml's output held something that is not presentation MathML."""


# ---- formulas ------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def tex_to_mathml(tex: str, *, display: bool) -> str:
    """MathML for one formula, or the TeX as escaped code when it cannot be converted."""
    try:
        raw = convert(normalised_tex(tex), display="block" if display else "inline")
        return clean_mathml(BARE_AMPERSAND.sub("&amp;", raw))
    except Exception as e:  # latex2mathml raises many kinds (and IndexError, KeyError...) on bad TeX
        return f'<code class="tex-error" title="not converted: {escape(type(e).__name__)}">{escape(tex)}</code>'


def normalised_tex(tex: str) -> str:
    """The same formula in the TeX latex2mathml reads: unknown alignment environments become
    align*, and spacing after a row break, labels and \\nonumber are dropped.

    >>> normalised_tex(r"\\begin{aligned} a &= b \\\\[2mm] \\label{x} c \\end{aligned}")
    '\\\\begin{align*} a &= b \\\\\\\\  c \\\\end{align*}'
    """
    return SPACING.sub("", AS_ALIGN.sub(lambda m: f"\\{m.group(1)}{{align*}}", tex))


def clean_mathml(markup: str) -> str:
    """The same MathML rebuilt from its parse: MathML elements and presentation attributes only,
    text escaped. Raises UnsafeMathML for any other element, ET.ParseError for broken markup."""
    root = ET.fromstring(markup)
    return ET.tostring(rebuilt(root), encoding="unicode", short_empty_elements=False)


def rebuilt(element: ET.Element) -> ET.Element:
    tag = element.tag.removeprefix(MATHML_NS)
    if tag not in MATHML_ELEMENTS:
        raise UnsafeMathML(f"<{tag}> is not MathML")
    out = ET.Element(tag, {k: v for k, v in element.attrib.items() if k in MATHML_ATTRIBUTES})
    out.text = element.text
    for child in element:
        copy = rebuilt(child)
        copy.tail = child.tail
        out.append(copy)
    return out


# ---- \( \) and \[ \] (markdown-it's own escape rule would eat the backslash) ----------------


def closing(src: str, start: int, end: int, close: str) -> int:
    """Index of the `\\` of the first `\\<close>` at or after `start` (a backslash pair counts as
    one escaped character, so `\\\\[2mm]` is no delimiter), or -1."""
    i = start
    while i < end - 1:
        if src[i] == "\\":
            if src[i + 1] == close:
                return i
            i += 2
        else:
            i += 1
    return -1


def bracket_inline(state: StateInline, silent: bool) -> bool:
    src, pos = state.src, state.pos
    if src[pos] != "\\" or pos + 1 >= state.posMax or src[pos + 1] not in "([":
        return False
    close = ")" if src[pos + 1] == "(" else "]"
    end = closing(src, pos + 2, state.posMax, close)
    if end < 0 or not src[pos + 2:end].strip():
        return False
    if not silent:
        token = state.push("math_inline" if close == ")" else "math_inline_double", "math", 0)
        token.content, token.markup = src[pos + 2:end], "\\" + src[pos + 1]
    state.pos = end + 2
    return True


def bracket_block(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
    """`\\[` at the start of a block, up to the line holding its `\\]` (nothing after it)."""
    if state.sCount[start_line] - state.blkIndent >= 4:  # an indented code block
        return False
    begin = state.bMarks[start_line] + state.tShift[start_line]
    if not state.src.startswith("\\[", begin):
        return False
    last = state.eMarks[end_line - 1] if end_line > start_line else state.eMarks[start_line]
    end = closing(state.src, begin + 2, last, "]")
    if end < 0 or state.src[end + 2:state.eMarks[line_of(state, end, start_line, end_line)]].strip():
        return False
    if not silent:
        token = state.push("math_block", "math", 0)
        token.block, token.content, token.markup = True, state.src[begin + 2:end], "\\["
        token.map = [start_line, line_of(state, end, start_line, end_line) + 1]
    state.line = line_of(state, end, start_line, end_line) + 1
    return True


def line_of(state: StateBlock, pos: int, start_line: int, end_line: int) -> int:
    line = start_line
    while line < end_line - 1 and pos > state.eMarks[line]:
        line += 1
    return line


# ---- the parser --------------------------------------------------------------------------


def safe_link(url: str) -> bool:
    """Keep http(s), mailto and scheme-less (relative, #fragment) targets only. Browsers ignore
    whitespace and control characters inside a scheme, so those are removed before looking."""
    compact = re.sub(r"[\x00-\x20\x7f]+", "", url).lower()
    scheme = re.match(r"^[a-z][a-z0-9+.\-]*:", compact)
    return scheme is None or scheme.group(0) in SAFE_SCHEMES


def math_renderer(display_class: str, display: bool):
    def render(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        body = tex_to_mathml(tokens[idx].content.strip(), display=display)
        if display_class == "block":
            return f'<div class="math block">{body}</div>\n'
        return f'<span class="math {display_class}">{body}</span>'
    return render


def link_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
    return self.renderToken(tokens, idx, options, env)


def make_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.disable("image")  # a model's image would make the reader's browser fetch its address
    md.validateLink = safe_link
    dollarmath_plugin(md, allow_labels=False, allow_space=True, allow_digits=False, double_inline=True)
    amsmath_plugin(md)
    md.inline.ruler.before("escape", "math_bracket", bracket_inline)
    md.block.ruler.before("fence", "math_bracket_block", bracket_block,
                          {"alt": ["paragraph", "reference", "blockquote", "list"]})
    md.add_render_rule("math_inline", math_renderer("inline", False))
    md.add_render_rule("math_inline_double", math_renderer("display", True))
    md.add_render_rule("math_block", math_renderer("block", True))
    md.add_render_rule("amsmath", math_renderer("block", True))
    md.add_render_rule("link_open", link_open)
    return md


PARSER = make_parser()


def render_markdown(text: str) -> str:
    """HTML for a model's Markdown with LaTeX (safe to place inside a page as is)."""
    return PARSER.render(text)


def render_inline(text: str) -> str:
    """The same for one line (an issue, a title): no paragraph around it, no block.

    >>> render_inline("the bound $x<1$ fails")[:34]
    'the bound <span class="math inline'
    """
    return PARSER.renderInline(text)

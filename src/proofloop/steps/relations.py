r"""The relations a text states inside its mathematics, with offsets, and the domain it states.

Mathematics is what stands inside \( \), \[ \], $ $, $$ $$ and the align-like environments.
A chain `a = b \le c` gives one relation per link (a = b, b \le c); an align row that starts
with `&=` continues the previous row's chain; `\equiv ... \pmod{n}` carries its modulus.
Commas, `\quad`, `\text{...}`, `\implies` and the like separate statements; a statement with a
relation this module does not read (\in, \to, \mid, \subset, ...) gives no relation at all.
Pure: no SymPy here, only offsets into the text (symbolic.py parses the pieces).

    >>> text = r"So \(x^2 - 1 = (x-1)(x+1) \le x^2\), and \(a \equiv 1 \pmod{4}\)."
    >>> [(r.id, r.lhs, r.op, r.rhs, r.modulus) for r in find_relations(text)]
    [('r1', 'x^2 - 1', '=', '(x-1)(x+1)', None), ('r2', '(x-1)(x+1)', '<=', 'x^2', None), ('r3', 'a', '≡', '1', '4')]
    >>> r = find_relations(text)[1]
    >>> text[r.start:r.end]
    '(x-1)(x+1) \\le x^2'
    >>> stated_domain("Let a, b be positive real numbers and n \\ge 1 an integer.").positive
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Relation", "MathSpan", "Domain", "find_math", "find_relations", "stated_domain", "is_condition"]

# Inline and display mathematics; the content group is what lies between the delimiters.
_MATH = re.compile(r"\\\((?P<a>.+?)\\\)|\\\[(?P<b>.+?)\\\]|\$\$(?P<c>.+?)\$\$|(?<![\\$])\$(?P<d>[^$]+?)\$"
                   r"|\\begin\{(?P<env>align|aligned|equation|gather|multline|eqnarray|flalign|alignat)(?P<star>\*?)\}"
                   r"(?P<e>.*?)\\end\{(?P=env)(?P=star)\}", re.S)
# Relation operators we read, by the name symbolic.py understands.
_OPS = {"=": "=", "<": "<", ">": ">", "≤": "<=", "≥": ">=", "≠": "!=", "≡": "≡",
        r"\le": "<=", r"\leq": "<=", r"\leqslant": "<=", r"\ge": ">=", r"\geq": ">=", r"\geqslant": ">=",
        r"\lt": "<", r"\gt": ">", r"\ne": "!=", r"\neq": "!=", r"\equiv": "≡"}
# Commands that end a statement, and relations we do not read (a statement holding one is dropped).
_SEPARATORS = {r"\quad", r"\qquad", r"\implies", r"\impliedby", r"\iff", r"\Rightarrow", r"\Longrightarrow",
               r"\Leftarrow", r"\Longleftarrow", r"\Leftrightarrow", r"\Longleftrightarrow", r"\therefore",
               r"\because", r"\\", r"\text", r"\textrm", r"\textbf", r"\mbox", r"\tag", r"\label", r"\forall",
               r"\exists", r"\hbox", r"\intertext", r"\notag", r"\nonumber", r"\wedge", r"\vee", r"\land", r"\lor"}
_FOREIGN = {r"\in", r"\notin", r"\subset", r"\subseteq", r"\supset", r"\supseteq", r"\to", r"\mapsto",
            r"\rightarrow", r"\mid", r"\nmid", r"\approx", r"\sim", r"\simeq", r"\cong", r"\parallel", r"\perp",
            r"\propto", r"\ll", r"\gg", r"\prec", r"\succ", r"\vdots", r"\cdots", r"\ldots", r"\dots", ":", "∈"}
# Tokens: a line break with its spacing (\\[2mm]), a command, an escaped character, :=, one
# operator or bracket, or a run of anything else.
_TOKEN = re.compile(r"\\\\\[[^\]]*\]|\\[A-Za-z]+|\\.|:=|[=<>≤≥≠≡,;:|∈{}()\[\]&]"
                    r"|[^\\=<>≤≥≠≡,;:|∈{}()\[\]&]+")
_PMOD = re.compile(r"\\pmod\s*\{[^{}]*\}|\\pmod\s*\w+|\(\s*\\(?:bmod|mod)\s*[^()]*\)|\\\s*\(\s*\\mathrm\{mod\}[^()]*\)"
                   r"|\(\s*\\(?:text|mathrm|operatorname)\{mod\}[^()]*\)|\\(?:bmod|mod)\s*\{?\w+\}?")


@dataclass(frozen=True)
class MathSpan:
    """The content of one piece of mathematics: text[start:end], displayed or inline."""

    start: int
    end: int
    display: bool


@dataclass(frozen=True)
class Relation:
    """`lhs op rhs` as stated: op is one of = < > <= >= != ≡; lhs and rhs are the raw LaTeX
    (align's & included) at text[lhs_start:lhs_end] and text[rhs_start:rhs_end]; the link
    spans text[start:end]. `chain` numbers the chain within the text, `link` the place in it."""

    id: str
    op: str
    lhs: str
    rhs: str
    lhs_start: int
    lhs_end: int
    rhs_start: int
    rhs_end: int
    modulus: str | None = None
    chain: int = 0
    link: int = 0

    @property
    def start(self) -> int:
        return self.lhs_start

    @property
    def end(self) -> int:
        return self.rhs_end


def find_math(text: str) -> list[MathSpan]:
    """Every piece of mathematics in `text`, in order."""
    spans = []
    for m in _MATH.finditer(text):
        group = next(g for g in "abcde" if m.group(g) is not None)
        spans.append(MathSpan(m.start(group), m.end(group), display=group != "a" and group != "d"))
    return spans


def find_relations(text: str, start: int = 0, end: int | None = None, prefix: str = "") -> list[Relation]:
    """The relations stated in text[start:end] (offsets stay offsets into `text`); ids are
    `prefix` + r1, r2, ..."""
    end = len(text) if end is None else end
    found: list[Relation] = []
    chains = 0
    for span in find_math(text[start:end]):
        previous: tuple[int, int] | None = None  # last operand of the chain an align row may continue
        for statement in _statements(text, start + span.start, start + span.end):
            operands, ops = _split_chain(text, *statement)
            if ops and operands[0][0] == operands[0][1] and previous:
                operands[0] = previous  # "&= c" on a new row continues the chain above
            links = _links(text, operands, ops, f"{prefix}r", len(found), chains)
            found += links
            chains += bool(links)
            previous = operands[-1] if operands and operands[-1][0] < operands[-1][1] else previous
    return found


def _depth_change(token: str) -> int:
    """+1 for an opening bracket, -1 for a closing one (\\left( and \\right) count through their bracket)."""
    return 1 if token in ("{", "(", "[", r"\{") else -1 if token in ("}", ")", "]", r"\}") else 0


def _statements(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Cut text[start:end] at top-level separators; drop statements holding a foreign relation."""
    out: list[tuple[int, int]] = []
    depth, begin, foreign = 0, start, False
    tokens = list(_TOKEN.finditer(text, start, end))
    i = 0
    while i < len(tokens):
        token = tokens[i].group()
        token = "\\\\" if token.startswith("\\\\") else token  # a line break, with its [2mm] if any
        depth = max(0, depth + _depth_change(token))
        foreign |= depth == 0 and token in _FOREIGN
        if depth == 0 and (token in (",", ";") or token in _SEPARATORS):
            if not foreign:
                out.append((begin, tokens[i].start()))
            foreign = False
            i = _skip_argument(tokens, i) if token in _SEPARATORS and token != r"\\" else i
            begin = tokens[i].end()
        i += 1
    if not foreign:
        out.append((begin, end))
    return out


def _skip_argument(tokens: list[re.Match], i: int) -> int:
    """The index of the last token of the {...} argument after tokens[i], if it has one."""
    if i + 1 < len(tokens) and tokens[i + 1].group() == "{":
        depth = 0
        for j in range(i + 1, len(tokens)):
            depth += {"{": 1, "}": -1}.get(tokens[j].group(), 0)
            if depth == 0:
                return j
    return i


def _split_chain(text: str, start: int, end: int) -> tuple[list[tuple[int, int]], list[tuple[str, str | None]]]:
    """Operands (start, end) and operators (name, modulus) of the chain in text[start:end]."""
    modulus = None
    pmod = [m for m in _PMOD.finditer(text, start, end)]
    if pmod:
        modulus = re.sub(r"\\(?:pmod|bmod|mod|text|mathrm|operatorname)|\{mod\}|[{}()\\ ]", "", pmod[-1].group())
        end = pmod[-1].start()
    operands, ops, depth, begin = [], [], 0, start
    for token in _TOKEN.finditer(text, start, end):
        value = token.group()
        depth = max(0, depth + _depth_change(value))
        if depth == 0 and value in _OPS:
            operands.append(_trimmed(text, begin, token.start()))
            ops.append((_OPS[value], modulus))
            begin = token.end()
        elif value == ":=":
            operands, ops, begin = [], [], token.end()  # a definition: the chain starts after it
    operands.append(_trimmed(text, begin, end))
    return operands, ops


_SPACING = re.compile(r"(?:\\[,;:! ]|\\quad|\\qquad|\\displaystyle|[\s.,;:&])+")


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """(start, end) without surrounding blanks, LaTeX spacing, align's &, or a trailing full
    stop or comma."""
    lead = _SPACING.match(text, start, end)
    start = lead.end() if lead else start
    for m in _SPACING.finditer(text, start, end):
        if m.end() == end:
            return start, m.start()
    return start, end


def _links(text, operands, ops, prefix, count, chain) -> list[Relation]:
    """One Relation per operator whose two operands are non-empty."""
    out = []
    for i, (op, modulus) in enumerate(ops):
        (ls, le), (rs, re_) = operands[i], operands[i + 1]
        if ls < le and rs < re_:
            out.append(Relation(f"{prefix}{count + len(out) + 1}", op, text[ls:le], text[rs:re_], ls, le, rs, re_,
                                modulus if op == "≡" or any(o == "≡" for o, _ in ops) else None, chain, i))
    return out


# --- the domain a text states ------------------------------------------------------------

_ATOM = r"(?:[A-Za-z]|\\[a-z]+)(?:_\{?[A-Za-z0-9]+\}?)?"
_NUMBER = r"-?\d+(?:\.\d+)?|-?\\d?frac\{\d+\}\{\d+\}"
_CONDITION = re.compile(rf"\s*(?:{_ATOM})\s*$|\s*(?:{_NUMBER})\s*$")


@dataclass(frozen=True)
class Domain:
    """What a text says about its variables: every variable positive (or non-negative), which
    are integers, and conditions `x > 0`, `n \\ge 1` as relations."""

    positive: bool = False
    nonnegative: bool = False
    integers: frozenset[str] = frozenset()
    all_integers: bool = False
    conditions: tuple[Relation, ...] = field(default=())


def is_condition(relation: Relation) -> bool:
    """A variable compared with a number or a variable (x > 0, n \\ge 1, a_0 = a), or a variable
    equal to anything (b = y^2): it sets a domain, a value or a name, it claims no identity."""
    sides = (relation.lhs.replace("&", ""), relation.rhs.replace("&", ""))
    atoms = [bool(re.fullmatch(rf"\s*{_ATOM}\s*", s)) for s in sides]
    numbers = [bool(re.fullmatch(rf"\s*(?:{_NUMBER})\s*", s)) for s in sides]
    if relation.op == "=" and any(atoms):  # b = y^2, \delta = (-1)^n: a definition or a value found
        return True
    return (atoms[0] and (numbers[1] or atoms[1])) or (atoms[1] and numbers[0])


def stated_domain(text: str) -> Domain:
    """The domain `text` states, as far as simple phrases tell: "positive reals", "nonnegative",
    "integers a, b", "n \\in \\mathbb N", "n \\ge 1"."""
    lowered = text.lower()
    positive = bool(re.search(r"\bpositive\s+(?:real|integer|rational|number)", lowered))
    nonnegative = bool(re.search(r"\bnon-?negative\s+(?:real|integer|rational|number)", lowered))
    integers = set(re.findall(r"\bintegers?\s+\\?\(?\$?\s*([a-z](?:\s*,\s*[a-z])*)\b", text))
    names = {n.strip() for group in integers for n in group.split(",")}
    # "n \\ge 1 integer", "$n$ is a positive integer", "let k be an integer"
    for m in re.finditer(r"(?<![A-Za-z\\])([A-Za-z])\b[^.;:A-Za-z]{0,20}(?:\\[gl]eq?[^.;:A-Za-z]{0,12})?"
                         r"(?:\s(?:is|be|an?|are)\b)*\s*(?:a|an)?\s*(?:positive|non-?negative)?\s*integers?\b", text):
        article = m.group(1) in "aA" and text[m.end(1):].lstrip().startswith(("positive", "non", "integer"))
        names |= set() if article else {m.group(1)}  # "a positive integer": the article, not a variable
    for m in re.finditer(r"((?:[A-Za-z]\s*,\s*)*[A-Za-z])\s*\\in\s*\\mathbb\s*\{?[NZ]", text):
        names |= {n.strip() for n in m.group(1).split(",")}
    all_integers = bool(re.search(r"\bintegers?\b", lowered)) and not re.search(r"\breals?\b|\\mathbb\s*\{?R", text)
    conditions = tuple(r for r in find_relations(text) if r.op in ("<", ">", "<=", ">=") and is_condition(r))
    return Domain(positive, nonnegative, frozenset(names), all_integers, conditions)

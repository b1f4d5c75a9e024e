r"""The SymPy side of the symbolic checker: runs only inside a worker process (symbolic.py
starts it with a time and a memory limit); nothing here is imported by the parent.

A relation's sides are parsed with SymPy's LaTeX parser (ANTLR backend, strict mode) after
a whitelist of LaTeX commands; no text ever reaches eval or sympify. Before anything is
evaluated, `magnitude` estimates the size of every number the expression can produce
(2003^{2002^{2001}}, 10^{10^9}!) and refuses the huge ones.

    >>> check({"lhs": "(a+b)^2", "op": "=", "rhs": "a^2+b^2", "seed": 1})["verdict"]
    'refuted'
    >>> check({"lhs": "(a+b)^2", "op": "=", "rhs": "a^2+2ab+b^2", "seed": 1})["reason"]
    'the difference simplifies to 0'
    >>> check({"lhs": "2003^{2002^{2001}}", "op": ">", "rhs": "1"})["reason"]
    'refused before evaluation: a number of more than 10^300 digits (limit 10000)'
"""

from __future__ import annotations

import math
import random
import re
from fractions import Fraction

import sympy
from sympy.core.function import AppliedUndef
from sympy.parsing.latex import parse_latex

__all__ = ["check", "parse", "magnitude", "Unparsed", "MAX_DIGITS"]

MAX_DIGITS = 10_000  # numbers with more digits than this are refused before evaluation
# Lower-case letters read as unknown functions before "(" (any other lower-case letter before a
# single argument is a product: x(x+1)); capitals and several arguments are always functions.
_FUNCTIONS = set("fghpq") | {"phi", "psi", "varphi"}
_ALLOWED = {r"\frac", r"\sqrt", r"\cdot", r"\times", r"\div", r"\pi", r"\sin", r"\cos", r"\tan",
            r"\ln", r"\log", r"\exp", r"\binom", r"\lfloor", r"\rfloor", r"\lceil", r"\rceil", r"\infty", r"\sum",
            r"\prod", r"\gcd", r"\cot", r"\sec", r"\csc"}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "iota", "kappa",
          "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
          "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"}
# Spacing and sizing commands that carry no meaning for the value; \dfrac and \tfrac are \frac.
_DROP = re.compile(r"\\(?:[,;:! ]|quad|qquad|displaystyle|textstyle|[bB]igg?[lr]?|middle|limits|nolimits)(?![A-Za-z])"
                   r"|\\left\.|\\right\.|\\left(?![A-Za-z])|\\right(?![A-Za-z])|&")


class Unparsed(Exception):
    """The text is not something this checker reads; the message says why."""


def _clean(latex: str) -> str:
    """`latex` without spacing and align marks, or Unparsed naming the first command we do not read."""
    text = _DROP.sub(" ", latex).replace(r"\dfrac", r"\frac").replace(r"\tfrac", r"\frac")
    # \frac45, \frac1x, \sqrt2: one-character arguments without braces, which the parser needs
    text = re.sub(r"\\frac\s*([0-9A-Za-z])\s*([0-9A-Za-z])", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac\s*(\{[^{}]*\})\s*([0-9A-Za-z])", r"\\frac\1{\2}", text)
    text = re.sub(r"\\sqrt\s*([0-9A-Za-z])", r"\\sqrt{\1}", text)
    for command in re.findall(r"\\[A-Za-z]+", text):
        if command not in _ALLOWED and command[1:] not in _GREEK:
            raise Unparsed(f"the command {command} is not read")
    if re.search(r"\^\s*\{\s*-\s*1\s*\}\s*\(", text):
        raise Unparsed("inverse-function notation f^{-1}(...)")
    if re.search(r"\.\.\.|…", text):
        raise Unparsed("an ellipsis")
    if not text.strip():
        raise Unparsed("an empty side")
    return text


def parse(latex: str) -> sympy.Expr:
    """One side of a relation as a SymPy expression (not evaluated)."""
    try:
        expr = parse_latex(_clean(latex), strict=True)
    except Unparsed:
        raise
    except Exception as e:  # the parser's own errors (LaTeXParsingError, ANTLR's, TypeError ...)
        raise Unparsed(f"the LaTeX parser rejected it ({type(e).__name__})") from None
    # (a Symbol is also a Boolean in SymPy: only relations and logic are turned away)
    if not isinstance(expr, sympy.Expr) or isinstance(expr, (sympy.Rel, sympy.logic.boolalg.BooleanFunction)):
        raise Unparsed("not an expression")
    return expr


def magnitude(expr: sympy.Basic) -> float:
    """An upper bound on log10 of the largest number evaluating `expr` can produce, with every
    variable taken as at most 10^2 (the sampled points are smaller): read from the tree, nothing evaluated."""
    if expr.is_Rational:  # bit_length: no conversion of a huge literal to decimal
        return max(abs(int(expr.p)).bit_length(), int(expr.q).bit_length(), 1) * math.log10(2)
    if expr.is_Atom:
        return 2.0
    inner = [magnitude(a) for a in expr.args]
    if expr.is_Pow:
        if expr.args[0] in (sympy.S.One, sympy.S.Zero, sympy.S.NegativeOne):
            return 1.0
        return inner[0] * _size(expr.args[1], inner[1])
    if isinstance(expr, (sympy.factorial, sympy.binomial)):
        n = _size(expr.args[0], inner[0])
        return n * max(1.0, math.log10(max(n, 1.0)))
    if expr.is_Mul:
        return sum(inner)
    if isinstance(expr, (sympy.Sum, sympy.Product)):
        count = 10 ** min(max(inner[1:] or [0]), 300.0)
        return inner[0] * count if isinstance(expr, sympy.Product) else inner[0] + math.log10(count)
    return max(inner) + math.log10(len(inner) + 1)


def _size(expr: sympy.Basic, digits: float) -> float:
    """A bound on |expr| itself (not its digits): exact for a number, else 10^digits."""
    if expr.is_Rational:
        return float(abs(Fraction(int(expr.p), int(expr.q)))) if digits < 300 else math.inf
    return 10 ** digits if digits < 300 else math.inf


def _guard(expr: sympy.Basic, max_digits: float) -> None:
    size = magnitude(expr)
    if size > max_digits:
        shown = "more than 10^300" if math.isinf(size) else f"up to {size:.3g}"
        raise Unparsed(f"refused before evaluation: a number of {shown} digits (limit {max_digits:g})")


def _opaque(expr: sympy.Expr) -> tuple[sympy.Expr, list[str]]:
    """Unknown functions f(x) become opaque symbols `f(x)`; a variable the parser read as a
    function (x(x+1)) becomes a product again."""
    names = []
    replacements = {}
    for call in sorted(expr.atoms(AppliedUndef), key=lambda c: -len(str(c))):
        name = str(call.func)
        if name in _FUNCTIONS or not name[:1].islower() or len(call.args) > 1:
            names.append(name)
            replacements[call] = sympy.Symbol(str(call))
        else:
            replacements[call] = sympy.Mul(sympy.Symbol(name), *call.args)
    return expr.xreplace(replacements), sorted(set(names))


# --- sampling points within the domain ---------------------------------------------------

_REALS = [Fraction(v) for v in ("0", "1", "-1", "1/2", "2", "3", "-2", "1/3", "10", "-1/2", "5/3", "7")]
_INTEGERS = [Fraction(v) for v in (0, 1, 2, 3, -1, -2, 5, 10, 4, 7, -3)]


def _bounds(job: dict, symbols: list[sympy.Symbol]) -> dict[str, list]:
    """[lowest, highest] value each variable may take (None: unbounded), from the stated
    positivity and conditions (x > 0, n \\ge 1); values are (bound, strict). Conflicting
    conditions leave a variable unbounded."""
    names = {str(s) for s in symbols}
    floor = (Fraction(0), True) if job.get("positive") else (Fraction(0), False) if job.get("nonnegative") else None
    bounds: dict[str, list] = {n: [floor, None] for n in names}
    for lhs, op, rhs in job.get("conditions", []):
        try:
            left, right = parse(lhs), parse(rhs)
        except Unparsed:
            continue
        if right.is_Symbol and left.is_Rational:
            left, right, op = right, left, {"<": ">", ">": "<", "<=": ">=", ">=": "<="}[op]
        if left.is_Symbol and right.is_Rational and str(left) in names:
            bound = (Fraction(int(right.p), int(right.q)), op in ("<", ">"))
            bounds[str(left)][0 if op in (">", ">=") else 1] = bound
    return {n: (lo, hi) if lo is None or hi is None or lo[0] < hi[0] else [None, None]
            for n, (lo, hi) in bounds.items()}


def _is_integer(job: dict, name: str) -> bool:
    base = re.sub(r"_.*", "", name)
    return bool(job.get("all_integers")) or name in job.get("integers", ()) or base in job.get("integers", ())


def _inside(value: Fraction, low, high, integer: bool) -> Fraction:
    """`value`, or a value inside (low, high) derived from it when it lies outside."""
    if low is not None and (value < low[0] or (value == low[0] and low[1])):
        value = low[0] + (low[0] - value + 1) / 7
    if high is not None and (value > high[0] or (value == high[0] and high[1])):
        value = high[0] - (value - high[0] + 1) / 11
    if integer:
        value = Fraction(math.ceil(value))
        if low is not None and (value < low[0] or (value == low[0] and low[1])):
            value = Fraction(math.floor(low[0]) + 1)
    return value


def _candidates(job: dict, name: str, low, high, rng: random.Random) -> list[Fraction]:
    """Values to try for one variable: small special values, then random ones, inside its bounds."""
    integer = _is_integer(job, name)
    values = list(_INTEGERS if integer else _REALS)
    for _ in range(8):
        values.append(Fraction(rng.randint(-30, 30)) if integer else Fraction(rng.randint(-60, 60), rng.randint(1, 9)))
    inside = [_inside(v, low, high, integer) for v in values]
    return [v for v in dict.fromkeys(inside) if (high is None or v <= high[0])] or [inside[0]]


def _points(job: dict, symbols: list[sympy.Symbol], count: int, seed: int) -> list[dict]:
    """`count` assignments of rationals to `symbols` within the stated domain (the first ones
    use the special values of each variable, in step)."""
    rng = random.Random(seed)
    bounds = _bounds(job, symbols)
    options = {s: _candidates(job, str(s), *bounds[str(s)], rng) for s in symbols}
    points = []
    for i in range(count):
        points.append({s: sympy.Rational(v.numerator, v.denominator) for s, v in
                       ((s, values[i] if i < 4 and i < len(values) else rng.choice(values))
                        for s, values in options.items())})
    return points


# --- the checks ---------------------------------------------------------------------------

_TOLERANCE = sympy.Float("1e-20", 30)


def _value(expr: sympy.Expr, point: dict) -> sympy.Expr | None:
    """`expr` at `point`: a Rational when exact, else a 30-digit Float; None where undefined
    (division by zero, a complex value, a variable left over)."""
    value = expr.xreplace(point).doit()
    if value.is_Rational:
        return value
    if value.free_symbols or value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return None
    number = value.evalf(30)
    return number if number.is_real and number.is_finite else None


def _shown(point: dict) -> dict[str, str]:
    return {str(s): str(v) for s, v in sorted(point.items(), key=lambda kv: str(kv[0]))}


def _holds(op: str, difference: sympy.Expr) -> bool | None:
    """Whether `lhs op rhs` holds given lhs - rhs (None: too close to zero to tell)."""
    if not difference.is_Rational and abs(difference) < _TOLERANCE:
        return None if op in ("<", ">", "!=") else op in ("=", "<=", ">=")
    sign = int(bool(difference > 0)) - int(bool(difference < 0))  # SymPy booleans made Python ints
    return {"=": sign == 0, "!=": sign != 0, "<": sign < 0, ">": sign > 0, "<=": sign <= 0, ">=": sign >= 0}[op]


def _simplifies_to_zero(difference: sympy.Expr) -> bool:
    """Cheap simplification first (expand, cancel), then SymPy's simplify."""
    return any(step(difference) == 0 for step in (sympy.expand, lambda d: sympy.cancel(sympy.together(d)),
                                                   sympy.simplify))


def _search(job: dict, op: str, difference: sympy.Expr, symbols: list, count: int) -> dict:
    """Evaluate lhs - rhs at `count` points of the domain: the first point where `op` fails
    refutes the relation; none failing leaves it consistent."""
    defined = 0
    for point in _points(job, symbols, count, job.get("seed", 0)):
        value = _value(difference, point)
        if value is None:
            continue
        defined += 1
        if _holds(op, value) is False:
            shown = str(value if value.is_Rational else value.evalf(15))
            where = ", ".join(f"{k} = {v}" for k, v in _shown(point).items())
            return {"verdict": "refuted", "counterexample": _shown(point), "difference": shown,
                    "reason": f"fails at {where}: lhs - rhs = {shown}" if where else f"lhs - rhs = {shown}"}
    if not defined:
        return {"verdict": "unparsed", "reason": "undefined at every point tried"}
    return {"verdict": "consistent", "reason": f"holds at {defined} points of the domain"}


def _congruence(job: dict, difference: sympy.Expr, symbols: list) -> dict:
    """lhs ≡ rhs (mod m): lhs - rhs divisible by m at integer points (every variable an integer)."""
    modulus = parse(job["modulus"])
    _guard(modulus, job.get("max_digits", MAX_DIGITS))
    integer_job = dict(job, all_integers=True, nonnegative=True)  # 7^n with n < 0 is no integer
    for point in _points(integer_job, sorted(difference.free_symbols | modulus.free_symbols, key=str), 12,
                         job.get("seed", 0)):
        value, m = _value(difference, point), _value(modulus, point)
        if value is None or m is None or not (value.is_Integer and m.is_Integer) or m == 0:
            return {"verdict": "unparsed", "reason": "not an integer congruence"}
        if value % m != 0:
            return {"verdict": "refuted", "counterexample": _shown(point), "difference": str(value),
                    "reason": f"lhs - rhs = {value} is not divisible by {m}"}
    return {"verdict": "consistent", "reason": "lhs - rhs divisible by the modulus at every point tried"}


def _sides(job: dict) -> tuple[sympy.Expr, list[str], set]:
    """lhs - rhs, guarded, with unknown functions made opaque; their names; the variables of
    both sides (before anything cancels)."""
    lhs, rhs = parse(job["lhs"]), parse(job["rhs"])
    for side in (lhs, rhs):
        _guard(side, job.get("max_digits", MAX_DIGITS))
        for loop in side.atoms(sympy.Sum, sympy.Product):
            if any(not bound.is_number for _, *bounds in loop.limits for bound in bounds):
                # a_i inside reads as one variable a_{i}, not a sequence: such sums are not checked
                raise Unparsed("a sum or product with symbolic bounds")
    (lhs, left_names), (rhs, right_names) = _opaque(lhs), _opaque(rhs)
    return sympy.Add(lhs, -rhs), sorted(set(left_names) | set(right_names)), lhs.free_symbols | rhs.free_symbols


def check(job: dict) -> dict:
    """Check one relation job {lhs, op, rhs, modulus?, positive?, integers?, conditions?, seed?}:
    a dict with verdict (refuted / consistent / unparsed), reason, and where refuted the
    counterexample (variable -> value) and the difference lhs - rhs there."""
    op = job["op"]
    if op not in ("=", "!=", "<", ">", "<=", ">=", "≡"):
        return {"verdict": "unparsed", "reason": f"the relation {op!r} is not checked"}
    try:
        difference, functions, stated = _sides(job)
        symbols = sorted(difference.free_symbols, key=str)
        variables = [str(v) for v in sorted(stated, key=str)]  # as stated: d <= d - 1 has a variable
        if op == "≡":
            return dict(_congruence(job, difference, symbols), variables=variables) \
                if job.get("modulus") else \
                {"verdict": "unparsed", "reason": "a congruence without a modulus"}
        if op in ("=", "!=") and _simplifies_to_zero(difference):
            return ({"verdict": "consistent", "reason": "the difference simplifies to 0"} if op == "=" else
                    {"verdict": "refuted", "difference": "0", "reason": "both sides are equal"})
        if not symbols:
            return dict(_search(job, op, difference.doit(), [], 1), variables=variables)
        result = dict(_search(job, op, difference, symbols, job.get("points", 6) if op == "=" else 40),
                      variables=variables)
        if result["verdict"] == "refuted" and functions:
            return {"verdict": "unparsed", "reason": f"involves the unknown function(s) {', '.join(functions)}: "
                                                     "a use of the hypothesis, not an identity to check"}
        return result
    except Unparsed as e:
        return {"verdict": "unparsed", "reason": str(e)}
    except RecursionError:
        return {"verdict": "unparsed", "reason": "too deeply nested"}
    except (TypeError, ValueError, AttributeError, ZeroDivisionError, NotImplementedError) as e:
        # SymPy cannot do something with what the parser built (a comparison of a complex
        # value, an unevaluable sum): the relation is left unchecked, with SymPy's words.
        return {"verdict": "unparsed", "reason": f"SymPy could not evaluate it ({type(e).__name__}: {str(e)[:120]})"}


# --- the worker ---------------------------------------------------------------------------

def serve(memory_mb: int) -> None:
    """The worker loop (symbolic.py starts it): limit this process's address space to what it
    uses now plus `memory_mb`, then answer one JSON job per line of stdin with one JSON line."""
    import json
    import os
    import resource
    import sys

    parse("x+1")  # load the parser before the limit and before the first timed job
    with open("/proc/self/statm") as f:
        in_use = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = in_use + memory_mb * 2 ** 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        try:
            result = check(json.loads(line))
        except MemoryError:  # answer, then exit: the parent starts a fresh worker for the next job
            print(json.dumps({"verdict": "timeout", "reason": f"memory limit ({memory_mb} MiB) exceeded"}), flush=True)
            return
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    import sys

    serve(int(sys.argv[1]))

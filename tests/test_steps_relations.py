"""steps/relations.py: relations in the mathematics of a text, with offsets; the stated domain."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proofloop.steps.relations import find_math, find_relations, is_condition, stated_domain


def _links(text):
    return [(r.lhs, r.op, r.rhs) for r in find_relations(text)]


def test_every_delimiter_is_read():
    text = r"A \(a=1\), B \[b<2\], C $c>3$, D $$d \le 4$$, E \begin{equation}e \geq 5\end{equation}."
    assert _links(text) == [("a", "=", "1"), ("b", "<", "2"), ("c", ">", "3"), ("d", "<=", "4"), ("e", ">=", "5")]
    assert [m.display for m in find_math(text)] == [False, True, False, True, True]


def test_chains_give_one_relation_per_link():
    assert _links(r"$a = b = c \le d < e$") == [("a", "=", "b"), ("b", "=", "c"), ("c", "<=", "d"), ("d", "<", "e")]
    assert [r.link for r in find_relations(r"$a = b = c$")] == [0, 1]


def test_align_rows_continue_the_chain():
    text = r"\begin{align*} (x+1)^2 &= x^2+2x+1 \\[2pt] &\ge 2x+1 \\ y &\ne 0 \end{align*}"
    assert _links(text) == [("(x+1)^2", "=", "x^2+2x+1"), ("x^2+2x+1", ">=", "2x+1"), ("y", "!=", "0")]


def test_congruences_carry_their_modulus():
    for text, modulus in [(r"$7^n \equiv 1 \pmod{6}$", "6"), (r"$a\equiv b \pmod m$", "m"),
                          (r"$a \equiv 2 \ (\mathrm{mod}\ 5)$", "5"), (r"$x \equiv 3 \bmod 8$", "8")]:
        (relation,) = find_relations(text)
        assert (relation.op, relation.modulus) == ("≡", modulus), text


def test_separators_and_foreign_relations():
    assert _links(r"$a=1,\ b=2;\quad c = 3 \text{ and } d=4$") == [("a", "=", "1"), ("b", "=", "2"), ("c", "=", "3"),
                                                                 ("d", "=", "4")]
    assert _links(r"$x \in \mathbb{R}, f:\mathbb R\to\mathbb R, a \mid b, y = 2$") == [("y", "=", "2")]
    assert _links(r"$g(x, y) = x + y$") == [("g(x, y)", "=", "x + y")]
    assert _links(r"$S := a + b = c$") == [("a + b", "=", "c")]
    assert _links(r"\[ a = b \implies c \ge d. \tag{1} \]") == [("a", "=", "b"), ("c", ">=", "d")]


def test_prefix_and_offsets_into_the_whole_text():
    text = "Intro. $u = v$ then $p < q$."
    relations = find_relations(text, 14, len(text), prefix="s2.")
    assert [(r.id, text[r.start:r.end]) for r in relations] == [("s2.r1", "p < q")]


def test_conditions_and_domain():
    assert [is_condition(r) for r in find_relations(r"$x > 0$, $n \ge 1$, $a_0 = a$, $x + 1 = 2$, $b = y^2$, "
                                                    r"$y^2 < b$")] == [True, True, True, False, True, False]
    domain = stated_domain(r"Let $a, b$ be positive real numbers and $n \in \mathbb{N}$ with $n \ge 2$.")
    assert domain.positive and "n" in domain.integers and not domain.all_integers
    assert [(c.lhs, c.op, c.rhs) for c in domain.conditions] == [("n", ">=", "2")]
    assert stated_domain("for all integers k, m").integers == {"k", "m"}
    assert stated_domain(r"Let $n \ge 1$ be an integer and $k$ a positive integer.").integers == {"n", "k"}
    assert stated_domain("for every n \\ge 1 integer").integers == {"n"}


SIDE = st.sampled_from(["x", "a+b", r"\frac{1}{2}", "(x-1)^2", "2^{10}", r"\sqrt{y}", "f(x, y)", "3"])
OP = st.sampled_from(["=", "<", ">", r"\le", r"\geq", r"\ne"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(SIDE, OP), min_size=1, max_size=4), SIDE, st.sampled_from([("$", "$"), (r"\(", r"\)"),
       (r"\[", r"\]"), ("$$", "$$")]), st.text(alphabet="abc .\n", max_size=10))
def test_offsets_point_at_the_relation_text(links, last, delimiters, before):
    body = " ".join(f"{side} {op}" for side, op in links) + f" {last}"
    text = f"{before}{delimiters[0]}{body}{delimiters[1]} done."
    relations = find_relations(text)
    assert len(relations) == len(links)
    sides = [side for side, _ in links] + [last]
    for i, r in enumerate(relations):
        assert (text[r.lhs_start:r.lhs_end], text[r.rhs_start:r.rhs_end]) == (r.lhs, r.rhs) == (sides[i], sides[i + 1])
        assert text[r.start:r.end].startswith(r.lhs) and text[r.start:r.end].endswith(r.rhs)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("ab=<>$&\\{}()[],; \n") + [r"\le", r"\[", r"\]", r"\pmod{3}"]),
                max_size=60).map("".join))
def test_garbage_never_crashes_and_offsets_stay_inside(text):
    for r in find_relations(text):
        assert 0 <= r.lhs_start < r.lhs_end <= r.rhs_start < r.rhs_end <= len(text)
        assert text[r.lhs_start:r.lhs_end] == r.lhs

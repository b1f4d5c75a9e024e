"""steps/symbolic.py and algebra.py: verdicts on tables of true and false relations, hostile
input, the worker's time and memory limits, and `proofloop check`. One worker pool serves
the module (SymPy loads once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("sympy")
pytest.importorskip("antlr4")

from proofloop.steps.relations import Domain, Relation, find_relations  # noqa: E402
from proofloop.steps.symbolic import Checker, check_proof, quick_refusal  # noqa: E402


def _relation(lhs: str, op: str, rhs: str, modulus: str | None = None) -> Relation:
    return Relation("r1", op, lhs, rhs, 0, len(lhs), len(lhs) + 1, len(lhs) + 1 + len(rhs), modulus)


@pytest.fixture(scope="module")
def checker():
    with Checker(timeout=30) as pool:
        yield pool


TRUE = [("x^2-1", "=", "(x-1)(x+1)"), ("(a+b)^2", "=", "a^2+2ab+b^2"), (r"\frac{1}{2}+\frac{1}{3}", "=", r"\frac56"),
        (r"\sqrt{2}\cdot\sqrt{8}", "=", "4"), ("2^{10}", "=", "1024"), ("10!", "=", "3628800"),
        (r"\binom{5}{2}", "=", "10"), (r"\sin^2 x+\cos^2 x", "=", "1"), (r"\frac{5^{-k}}{4^{-k}}", "=",
        r"\left(\frac45\right)^k"), ("a^2+b^2", ">=", "2ab"), ("x^2+1", ">", "0"),
        (r"\left|a-b\right|", "<=", "|a|+|b|"),
        ("3", "<", "4"), ("x(x+1)", "=", "x^2+x"), ("x+1", "!=", "x")]
FALSE = [("x^2-1", "=", "(x-1)(x+2)"), ("(a+b)^2", "=", "a^2+b^2"), (r"\frac{1}{2}+\frac{1}{3}", "=", r"\frac25"),
         (r"\sqrt{2}+\sqrt{3}", "=", r"\sqrt{5}"), ("2^{10}", "=", "1000"), (r"\frac{5^{-k}}{4^{-k}}", "=",
         r"\left(\frac54\right)^k"), ("a^2+b^2", ">=", "3ab"), ("x^2", ">", "0"), ("x", "<", "x^2"), ("5", "<=", "4"),
         ("(x+1)^3", "=", "x^3+3x^2+3x"), ("x+1", "!=", "1+x")]


@pytest.mark.parametrize("lhs,op,rhs", TRUE)
def test_true_relations_are_consistent(checker, lhs, op, rhs):
    check = checker.check(_relation(lhs, op, rhs))
    assert check.verdict == "consistent", check.reason


@pytest.mark.parametrize("lhs,op,rhs", FALSE)
def test_false_relations_are_refuted_with_evidence(checker, lhs, op, rhs):
    check = checker.check(_relation(lhs, op, rhs))
    assert check.verdict == "refuted", check.reason
    assert check.difference is not None
    if check.variables:  # a counterexample names a value for every variable
        assert set(check.counterexample) == set(check.variables)


def test_the_domain_decides_inequalities(checker):
    relation = _relation(r"x+\frac1x", ">=", "2")
    assert checker.check(relation).verdict == "refuted"  # x = -1
    assert checker.check(relation, Domain(positive=True)).verdict == "consistent"
    (n_ge_1,) = find_relations(r"$n \ge 1$")
    growth = _relation("2^n", ">", "n+1")
    assert checker.check(growth, Domain(integers=frozenset({"n"}), conditions=(n_ge_1,))).counterexample == {"n": "1"}


def test_congruences(checker):
    assert checker.check(_relation("7^n", "≡", "1", "6"), Domain(integers=frozenset({"n"}))).verdict == "consistent"
    wrong = checker.check(_relation("2^n", "≡", "1", "3"))
    assert wrong.verdict == "refuted" and "not divisible by 3" in wrong.reason
    assert checker.check(_relation("17", "≡", "2", "5")).verdict == "consistent"
    assert checker.check(_relation("17", "≡", "3", "5")).verdict == "refuted"


def test_conditions_and_unknown_functions_are_not_refuted(checker):
    assert checker.check(_relation("x", "=", "0")).claim == "condition"
    assert checker.check(_relation("g(0)+20\\cdot 0", "=", "g(0)")).verdict == "consistent"
    assert checker.check(_relation("g(g(0))", "=", "g(0)")).verdict == "unparsed"


@pytest.mark.parametrize("lhs,why", [(r"x \in \mathbb{R}", "command"), (r"\frac{", "parser"), ("", "empty"),
                                     (r"f^{-1}(x)", "inverse"), (r"1 + \dots + n", "command"),
                                     ("(" * 60 + "x" + ")" * 60, "nested"), ("x" * 3000, "longer")])
def test_malformed_input_is_unparsed_with_why(checker, lhs, why):
    check = checker.check(_relation(lhs, "=", "1"))
    assert check.verdict == "unparsed" and why in check.reason


@pytest.mark.parametrize("lhs", ["2003^{2002^{2001}}", "2^{2^{2^{2^{2^{5}}}}}", "(10^{10})!", "9^{9^{9}}",
                                 r"\binom{10^{12}}{10^{6}}", "123456789!"])
def test_huge_numbers_are_refused_before_evaluation(checker, lhs):
    started = time.monotonic()
    check = checker.check(_relation(lhs, ">", "1"))
    assert check.verdict == "unparsed" and "refused before evaluation" in check.reason
    assert time.monotonic() - started < 10  # generous: the refusal itself takes milliseconds


def test_quick_refusal_needs_no_worker():
    assert "tower" in quick_refusal("2003^{2002^{2001}}")
    assert quick_refusal("x^2 + 1") is None


def test_a_slow_check_times_out_and_the_worker_is_replaced():
    with Checker(timeout=1.5) as pool:
        pool.check(_relation("1", "=", "1"))  # start the worker outside the timed check
        slow = pool.check(_relation("(a+b+c+d+e+f)^{25}", "=", "(a+b+c+d+e+f+1)^{25}"))
        assert slow.verdict == "timeout" and pool.replaced == 1
        assert pool.check(_relation("x+1", "=", "1+x")).verdict == "consistent"  # a fresh worker answers


def test_a_memory_bomb_is_stopped_by_the_memory_limit():
    with Checker(timeout=120, memory_mb=200) as pool:
        result = pool.run({"lhs": "(x+1)^{1000000}", "op": "=", "rhs": "1", "max_digits": 1e15})
        assert result["verdict"] == "timeout" and "memory limit" in result["reason"]
        assert pool.check(_relation("2+2", "=", "4")).verdict == "consistent"
        assert pool.replaced == 1


def test_no_text_reaches_eval_or_sympify():
    from pathlib import Path

    import proofloop.steps as package

    for path in Path(package.__file__).parent.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "sympify(" not in source and "eval(" not in source.replace("evaluat", ""), path.name


PROOF = ("Let $a, b$ be positive reals.\n\n1. We expand: \\[ (a+b)^2 = a^2 + 2ab + b^2 \\]\n"
         "2. Hence $(a+b)^2 = a^2 + b^2$ and $2^{10} = 1000$.\n")


def test_check_proof_reports_steps_relations_and_verdicts():
    report = check_proof(PROOF, timeout=30)
    assert [c.relation.id for c in report.refuted()] == ["s4.r1", "s4.r2"]
    assert [c.relation.id for c in report.refuted(closed_only=True)] == ["s4.r2"]
    assert report.counts() == {"refuted": 2, "consistent": 1, "unparsed": 0, "timeout": 0}
    r = report.refuted()[1].relation
    assert PROOF[r.start:r.end] == "2^{10} = 1000"


def _cli(*args, stdin=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "proofloop.cli", "check", *args], capture_output=True, text=True,
                          env=env, input=stdin, timeout=300)


def test_cli_prints_the_step_the_relation_and_the_counterexample(tmp_path):
    proof = tmp_path / "proof.md"
    proof.write_text(PROOF, encoding="utf-8")
    out = _cli(str(proof))
    assert out.returncode == 0, out.stderr
    assert "s4 (item" in out.stdout and "s4.r2: 2^{10} = 1000: refuted (no variables), lhs - rhs = 24" in out.stdout
    assert "s4.r1: (a+b)^2 = a^2 + b^2: refuted" in out.stdout and "fails at a = " in out.stdout
    data = json.loads(_cli(str(proof), "--json").stdout)
    refuted = [c for c in data["checks"] if c["verdict"] == "refuted"]
    assert [c["relation"]["id"] for c in refuted] == ["s4.r1", "s4.r2"] and refuted[0]["counterexample"]
    assert data["steps"][3]["text"] == PROOF[data["steps"][3]["start"]:data["steps"][3]["end"]]


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    missing = _cli(str(tmp_path / "nope.md"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "not found" in missing.stderr
    (tmp_path / "empty.md").write_text("  \n", encoding="utf-8")
    assert _cli(str(tmp_path / "empty.md")).returncode == 2
    assert _cli("-", stdin="").returncode == 2


def test_the_cli_lists_check_without_loading_sympy():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    code = "import sys, proofloop.cli; print('sympy' in sys.modules, 'antlr4' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.split() == \
        ["False", "False"]
    listing = subprocess.run([sys.executable, "-m", "proofloop.cli", "--help"], capture_output=True, text=True, env=env)
    assert " check " in listing.stdout


def test_evidence_leaves_out_relations_false_on_purpose_and_ones_with_variables():
    proof = ("Then $2+2 = 5$.\n\nIf it held we would get $1 \\le 0$, a contradiction.\n\n"
             "And $d \\le d - 1$ fails.\n\nSo $T(1,2) < T(2,1)$.")
    report = check_proof(proof, timeout=30)
    assert [c.relation.id for c in report.refuted()] == ["s1.r1", "s2.r1", "s3.r1"]
    assert [c.relation.id for c in report.refuted(closed_only=True)] == ["s1.r1", "s2.r1"]
    assert [c.relation.id for c in report.evidence()] == ["s1.r1"]
    assert report.checks[-1].verdict == "unparsed" and "unknown function" in report.checks[-1].reason

"""Role outputs written by hand for reward and parser tests: a verifier analysis and a
meta-verifier rating ending in the protocol's key phrase and a boxed score."""

from __future__ import annotations


def box(x: float) -> str:
    return "0.5" if x == 0.5 else str(int(x))


def analysis(score: float) -> str:
    return ("Here is my evaluation of the solution: step 2 skips a case.\n\n"
            f"Based on my evaluation, the final overall score should be: \\boxed{{{box(score)}}}")


def rating(score: float) -> str:
    return ('Here is my analysis of the "solution evaluation": the claimed gap is real.\n\n'
            f'Based on my analysis, I will rate the "solution evaluation" as: \\boxed{{{box(score)}}}')

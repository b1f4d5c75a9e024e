"""phrase_regex opens with the phrase's first letter and a look-behind instead of a word
boundary (a faster scan of long answers): it must find exactly what the word-boundary form
finds, wherever the phrase sits among letters, digits, underscores, markup and other scripts."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from proofloop.protocol.parsers import FINAL_SCORE_PHRASE, META_FINAL_PHRASE, phrase_regex

PHRASES = [FINAL_SCORE_PHRASE, META_FINAL_PHRASE, "Here is my evaluation of the solution:"]


def boundary_form(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """The same pattern written with a plain word boundary."""
    first, rest = pattern.pattern.split("(?<!", 1)
    return re.compile(r"\b" + first + rest.split(")", 1)[1], re.IGNORECASE)


def test_the_boundary_form_is_what_it_says():
    plain = boundary_form(phrase_regex(FINAL_SCORE_PHRASE))
    assert plain.pattern.startswith(r"\bB") and "(?<!" not in plain.pattern


around = st.text(alphabet=st.sampled_from(list("aB_9 é*\n:x\"")), max_size=6)


@settings(max_examples=300, deadline=None)
@given(phrase=st.sampled_from(PHRASES), before=around, after=around, lower=st.booleans(), typo=st.booleans())
def test_the_same_matches_as_a_word_boundary(phrase, before, after, lower, typo):
    said = phrase.lower() if lower else phrase
    if typo:
        said = said.replace("overall", "overal")
    text = f"{before}{said}{after} {before}{said}"
    fast, plain = phrase_regex(phrase), boundary_form(phrase_regex(phrase))
    assert [m.span() for m in fast.finditer(text)] == [m.span() for m in plain.finditer(text)]

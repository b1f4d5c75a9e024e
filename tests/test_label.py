"""Automatic labelling: the rule (every branch, plus properties against a brute-force
reference), input mapping, and the `label` command end to end against an OpenAI-compatible
server on 127.0.0.1 (JSONL, parquet, run store, resume, failures)."""

from __future__ import annotations

import doctest
import itertools
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from proofloop import runs
from proofloop.errors import UserInputError
from proofloop.label import (LOWEST_READINGS, UNDECIDED_POLICIES, LabelItem, LabelRule, Status, Validity, Vote,
                             decide, possible_validities, rows_to_items, validity, verify_starts, votes_of)
from proofloop.cli import app as cli_app
from proofloop.sim.http import Choice, Fault, Faults, Reply, approx_tokens
from support.scripted import scripted_responder
from proofloop.store import Store
from support.servers import running_server


def rule(**kw) -> LabelRule:
    return LabelRule(**{"m": 3, "k": 2, **kw})


def outcome(votes, r=None):
    d = decide(votes, r or rule())
    return d.status.value, d.score


# ---------------------------------------------------------------------------- the rule, case by case

# Analyses written the way the README table writes them: "; " between analyses, each a score
# followed by its meta ratings ("0: 1 1 0"), "?" for a failed rating, "fail" for a failed analysis.


def parse_votes(text: str) -> list[Vote]:
    votes = []
    for part in text.split(";"):
        score, _, ratings = part.strip().partition(":")
        if score == "fail":
            votes.append(Vote(None))
        else:
            votes.append(Vote(float(score), tuple(None if r == "?" else float(r) for r in ratings.split())))
    return votes


@dataclass(frozen=True)
class Case:
    """One row of the table: the analyses, the readings it holds for ("*": either), any other
    rule setting (m=3, k=2 otherwise), and the expected outcome and reason."""

    analyses: str
    lowest: str
    confirm_at: str
    outcome: str  # "label 0" / "label 0.5" / "label 1" / "undecided" / "error"
    reason: str
    setting: str = ""  # e.g. "k=1", "m=2", "quorum=0.75"

    def rules(self) -> list[LabelRule]:
        extra = {k: float(v) if "." in v else int(v) for k, v in (s.split("=") for s in self.setting.split())}
        lows = LOWEST_READINGS if self.lowest == "*" else (self.lowest,)
        confirms = (0.5, 1.0) if self.confirm_at == "*" else (float(self.confirm_at),)
        return [LabelRule(**{"m": 3, "k": 2, **extra, "lowest": lo, "confirm_at": c, "undecided": u})
                for lo in lows for c in confirms for u in UNDECIDED_POLICIES]


REJECTED = "meta-verification rejected all {} issue-reporting analyses"
PENDING = "the label depends on 1 issue-reporting analyses whose meta-verifications failed"
PARTLY = "; {} partly confirmed (a majority of ratings above 0): not issue-free"
CANNOT = "; 1 with failed meta-verifications cannot change this"
QUORUM = "only {} of {} analyses gave a score (quorum {}); the others failed or could not be parsed"

TABLE = [
    # no issue, or no issue confirmed: 1
    Case("1; 1; 1", "*", "*", "label 1", "no analysis reports an issue"),
    Case("0: 0 0 0; 0.5: 1 0 0; 1", "*", "*", "label 1", REJECTED.format(2)),
    Case("0: 1 0; 0: 1 0", "*", "*", "label 1", REJECTED.format(2), "m=2"),
    Case("0: 1 1 0 0; 0: 1 1 0 0", "*", "0.5", "label 1", REJECTED.format(2), "m=4"),
    Case("0: 0 0 ?; 0: 0 0 ?", "*", "*", "label 1", REJECTED.format(2)),
    # k valid analyses at the lowest score
    Case("0: 1 1 0; 0: 1 1 1; 1; 1", "all", "*", "label 0", "lowest score 0: 2 of 2 analyses valid (k=2)"),
    Case("0: 1 1 0; 0: 1 1 1; 1; 1", "valid", "*", "label 0", "lowest valid score 0: 2 valid analyses (k=2)"),
    Case("0.5: 1 1 1; 0.5: 1 1 0; 1", "all", "*", "label 0.5", "lowest score 0.5: 2 of 2 analyses valid (k=2)"),
    Case("0.5: 1 1 1; 0.5: 1 1 0; 1", "valid", "*", "label 0.5", "lowest valid score 0.5: 2 valid analyses (k=2)"),
    Case("0: 1 1 1 0; 0: 1 1 1 0", "all", "*", "label 0", "lowest score 0: 2 of 2 analyses valid (k=2)", "m=4"),
    Case("0: 1 1 ?; 0: 1 1 ?", "all", "*", "label 0", "lowest score 0: 2 of 2 analyses valid (k=2)"),
    Case("0: 0.5 0.5 0; 0: 0.5 1 0", "all", "0.5", "label 0", "lowest score 0: 2 of 2 analyses valid (k=2)"),
    Case("0: 1 1 1; 1; 1", "all", "*", "label 0", "lowest score 0: 1 of 1 analyses valid (k=1)", "k=1"),
    # the lowest score over all analyses vs over valid ones
    Case("0.5: 1 1 1; 0.5: 1 1 1; 0: 0 0 0; 0: 0 0 0", "all", "*", "undecided",
         "lowest score 0: 0 of 2 analyses valid, k=2 needed"),
    Case("0.5: 1 1 1; 0.5: 1 1 1; 0: 0 0 0; 0: 0 0 0", "valid", "*", "label 0.5",
         "lowest valid score 0.5: 2 valid analyses (k=2)"),
    Case("0.5: 1 1 1; 0.5: 1 1 1; 0: 1 1 1", "all", "*", "undecided",
         "lowest score 0: 1 of 1 analyses valid, k=2 needed"),
    Case("0.5: 1 1 1; 0.5: 1 1 1; 0: 1 1 1", "valid", "*", "undecided",
         "lowest valid score 0: 1 valid analyses, k=2 needed"),
    Case("0: 1 1 1; 1; 1", "all", "*", "undecided", "lowest score 0: 1 of 1 analyses valid, k=2 needed"),
    Case("0: 1 1 1; 1; 1", "valid", "*", "undecided", "lowest valid score 0: 1 valid analyses, k=2 needed"),
    # what confirms: a 0.5 rating
    Case("0: 0.5 0.5 0; 0: 0.5 0.5 0", "all", "0.5", "label 0", "lowest score 0: 2 of 2 analyses valid (k=2)"),
    Case("0: 0.5 0.5 0; 0: 0.5 0.5 0", "valid", "0.5", "label 0", "lowest valid score 0: 2 valid analyses (k=2)"),
    Case("0: 0.5 0.5 0; 0: 0.5 0.5 0", "all", "1", "undecided",
         "lowest score 0: 0 of 2 analyses valid, k=2 needed" + PARTLY.format(2)),
    Case("0: 0.5 0.5 0; 0: 0.5 0.5 0", "valid", "1", "undecided", "no valid analysis, k=2 needed" + PARTLY.format(2)),
    Case("0: 1 0.5; 0: 1 0.5", "valid", "1", "undecided", "no valid analysis, k=2 needed" + PARTLY.format(2), "m=2"),
    Case("0.5: 1 1 0; 0.5: 1 1 0; 0: 0.5 0.5 0", "all", "1", "undecided",
         "lowest score 0: 0 of 1 analyses valid, k=2 needed" + PARTLY.format(1)),
    Case("0.5: 1 1 0; 0.5: 1 1 0; 0: 0.5 0.5 0", "valid", "1", "label 0.5",
         "lowest valid score 0.5: 2 valid analyses (k=2)"),
    Case("0.5: 1 1 0; 0.5: 1 1 0; 0: 0.5 0.5 0", "valid", "0.5", "undecided",
         "lowest valid score 0: 1 valid analyses, k=2 needed"),
    # failed analyses: the quorum
    Case("fail; fail; fail", "*", "*", "error", QUORUM.format(0, 3, 0.5)),
    Case("fail; fail; fail; 1", "*", "*", "error", QUORUM.format(1, 4, 0.5)),
    Case("fail; fail; 1; 1", "*", "*", "label 1", "no analysis reports an issue"),
    Case("fail; fail; 1; 1", "*", "*", "error", QUORUM.format(2, 4, 0.75), "quorum=0.75"),
    Case("fail; 0: 1 1 1; 0: 1 1 1", "all", "*", "label 0", "lowest score 0: 2 of 2 analyses valid (k=2)"),
    # failed ratings: an error only when they could change the label
    Case("0.5: 1 ? ?; 1; 1", "*", "*", "error", PENDING),
    Case("0.5: 1 ? ?; 1; 1", "*", "*", "error", PENDING, "k=1"),
    Case("0: 1; 1; 1", "*", "*", "error", PENDING, "k=1"),
    Case("0: 0.5 0 ?; 1", "*", "*", "error", PENDING),
    Case("0: 1 0.5 ?; 1", "*", "1", "error", PENDING, "k=1"),
    Case("0: 1 0.5 ?; 1", "all", "0.5", "label 0", "lowest score 0: 1 of 1 analyses valid (k=1)", "k=1"),
    Case("0: 1 1 1; 0: 1 1 1; 0.5: 1 ? ?", "all", "*", "label 0",
         "lowest score 0: 2 of 2 analyses valid (k=2)" + CANNOT),
    Case("0: 1 1 1; 0: 1 1 1; 0.5: 1 ? ?", "valid", "*", "label 0",
         "lowest valid score 0: 2 valid analyses (k=2)" + CANNOT),
    Case("0.5: 1 1 1; 0.5: 1 1 1; 0: 1 ? ?", "all", "*", "undecided",
         "lowest score 0: 0 of 1 analyses valid, k=2 needed" + CANNOT),
    Case("0.5: 1 1 1; 0.5: 1 1 1; 0: 1 ? ?", "valid", "*", "error", PENDING),
    Case("0.5: 1 1 1; 0: 1 1 1; 0.5: 1 ? ?", "all", "*", "undecided",
         "lowest score 0: 1 of 1 analyses valid, k=3 needed" + CANNOT, "k=3"),
]


def expected(case: Case, r: LabelRule) -> tuple[str, float | None]:
    if case.outcome.startswith("label"):
        return "labelled", float(case.outcome.split()[1])
    if case.outcome == "undecided":
        return {"discard": "discarded", "human": "human"}[r.undecided], None
    return "error", None


@pytest.mark.parametrize("case", TABLE, ids=lambda c: f"{c.analyses} [{c.lowest}/{c.confirm_at} {c.setting}]")
def test_the_table_of_cases(case):
    for r in case.rules():
        d = decide(parse_votes(case.analyses), r)
        assert (d.status.value, d.score, d.reason) == (*expected(case, r), case.reason), r


def test_the_table_covers_every_branch_under_every_reading():
    branches = {"label 1 (no issue)", "label 1 (all rejected)", "label below 1", "undecided (partial)",
                "undecided", "error (quorum)", "error (failed ratings)", "label despite failed ratings"}
    for lowest in LOWEST_READINGS:
        for confirm_at in (0.5, 1.0):
            seen = set()
            for case in TABLE:
                for r in case.rules():
                    if (r.lowest, r.confirm_at) != (lowest, confirm_at):
                        continue
                    reason = case.reason
                    seen.add("label 1 (no issue)" if "reports an issue" in reason else
                             "label 1 (all rejected)" if "rejected" in reason else
                             "error (quorum)" if "quorum" in reason else
                             "error (failed ratings)" if reason == PENDING else
                             "label despite failed ratings" if "cannot change" in reason else
                             "undecided (partial)" if "partly" in reason else
                             "label below 1" if case.outcome in ("label 0", "label 0.5") else case.outcome)
            assert seen >= branches - ({"undecided (partial)"} if confirm_at == 0.5 else set()), (lowest, confirm_at)


def readme_table() -> str:
    """The table as the README shows it (test_the_readme_shows_the_table keeps them equal)."""
    lines = ["| Analyses | lowest | confirm_at | Setting | Outcome | Reason |", "|---|---|---|---|---|---|"]
    for case in TABLE:
        outcome = "undecided (discard / human)" if case.outcome == "undecided" else case.outcome
        lines.append(f"| `{case.analyses}` | {case.lowest.replace('*', 'either')} | "
                     f"{case.confirm_at.replace('*', 'either')} | {case.setting or '-'} | {outcome} | {case.reason} |")
    return "\n".join(lines) + "\n"


def test_the_readme_shows_the_table():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert readme_table() in readme


def test_the_module_docstring_examples_run():
    import proofloop.label

    assert doctest.testmod(proofloop.label).failed == 0


def test_majority_is_strict_a_tie_is_not_a_majority():
    r2, r4 = rule(m=2, k=1), rule(m=4, k=1)
    assert validity(Vote(0.0, (1.0, 0.0)), r2) is Validity.INVALID
    assert validity(Vote(0.0, (1.0, 1.0)), r2) is Validity.VALID
    assert validity(Vote(0.0, (1.0, 1.0, 0.0, 0.0)), r4) is Validity.INVALID
    assert validity(Vote(0.0, (1.0, 1.0, 1.0, 0.0)), r4) is Validity.VALID
    assert validity(Vote(0.5, (1.0, 0.0, 0.0)), rule()) is Validity.INVALID
    assert validity(Vote(0.5, (1.0, 1.0, 0.0)), rule()) is Validity.VALID


def test_a_half_rating_confirms_at_one_half_and_is_partial_at_one():
    half = (0.5, 0.5, 0.0)
    assert validity(Vote(0.0, half), rule()) is Validity.VALID
    assert validity(Vote(0.0, half), rule(confirm_at=1.0)) is Validity.PARTIAL
    assert validity(Vote(0.0, (0.5, 0.0, 0.0)), rule(confirm_at=1.0)) is Validity.INVALID
    assert validity(Vote(0.0, (1.0, 0.5, 0.0)), rule(confirm_at=1.0)) is Validity.PARTIAL
    assert validity(Vote(0.0, (1.0, 1.0, 0.5)), rule(confirm_at=1.0)) is Validity.VALID
    assert validity(Vote(0.0, (1.0, 0.5)), rule(m=2, confirm_at=1.0)) is Validity.PARTIAL  # tie on 1s


def test_failed_ratings_neither_confirm_nor_reject():
    r, strict = rule(), rule(confirm_at=1.0)
    assert validity(Vote(0.0, (1.0, 1.0, None)), r) is Validity.VALID         # a majority either way
    assert validity(Vote(0.0, (0.0, 0.0, None)), r) is Validity.INVALID       # no majority either way
    assert validity(Vote(0.0, (0.5, 0.5, None)), strict) is Validity.PARTIAL  # above 0 either way, never valid
    for undetermined in [(1.0, None, None), (1.0, 0.0, None), (1.0,), ()]:   # missing = failed
        assert validity(Vote(0.0, undetermined), r) is Validity.UNDETERMINED
    assert possible_validities(Vote(0.0, (1.0, 0.5, None)), strict) == {Validity.VALID, Validity.PARTIAL}
    assert possible_validities(Vote(0.0, (0.5, 0.0, None)), strict) == {Validity.PARTIAL, Validity.INVALID}
    assert possible_validities(Vote(0.0, (0.5, 0.0, None)), r) == {Validity.VALID, Validity.INVALID}
    assert possible_validities(Vote(0.0, ()), strict) == set(Validity) - {
        Validity.NO_ISSUE, Validity.UNDETERMINED, Validity.FAILED}


def test_bad_inputs_to_the_rule():
    with pytest.raises(ValueError):
        validity(Vote(0.0, (1.0,) * 4), rule())   # more ratings than m
    with pytest.raises(ValueError):
        validity(Vote(0.7), rule())
    with pytest.raises(ValueError):
        validity(Vote(0.0, (0.7, 1.0, 1.0)), rule())
    for bad in ({"m": 0}, {"k": 0}, {"confirm_at": 0.0}, {"quorum": 0.0}, {"quorum": 1.5}, {"undecided": "keep"},
                {"lowest": "min"}, {"lowest": "ALL"}):
        with pytest.raises(UserInputError) as e:
            rule(**bad)
        assert "\n" not in str(e.value) and str(next(iter(bad))) in str(e.value)
    assert (rule().lowest, rule().confirm_at) == ("all", 0.5)  # the defaults


# ---------------------------------------------------------------------------- properties

SCORE = st.sampled_from([None, 0.0, 0.5, 1.0])
RATING = st.sampled_from([None, 0.0, 0.5, 1.0])
RULES = st.builds(LabelRule, m=st.integers(1, 4), k=st.integers(1, 4), confirm_at=st.sampled_from([0.5, 1.0]),
                  quorum=st.sampled_from([0.25, 0.5, 1.0]), undecided=st.sampled_from(["discard", "human"]),
                  lowest=st.sampled_from(LOWEST_READINGS))


@st.composite
def cases(draw):
    r = draw(RULES)
    votes = []
    for _ in range(draw(st.integers(0, 6))):
        score = draw(SCORE)
        size = draw(st.sampled_from([r.m, r.m, r.m, 0, max(r.m - 1, 0)]))  # sometimes missing ratings
        ratings = tuple(draw(st.lists(RATING, min_size=size, max_size=size))) if score in (0.0, 0.5) else ()
        votes.append(Vote(score, ratings))
    return r, votes


def reference(votes, r):
    """The rule written the slow way: every value every failed rating could have had."""
    ok = [v for v in votes if v.score is not None]
    if not ok or len(ok) < r.quorum * len(votes):
        return ("error", None)

    def kinds(v):
        if v.score == 1.0:
            return {"no issue"}
        ratings = list(v.ratings) + [None] * (r.m - len(v.ratings))
        found = set()
        for fill in itertools.product((0.0, 0.5, 1.0), repeat=ratings.count(None)):
            values = iter(fill)
            full = [x if x is not None else next(values) for x in ratings]
            yes, above_zero = sum(x >= r.confirm_at for x in full), sum(x > 0 for x in full)
            found.add("valid" if 2 * yes > r.m else "partial" if 2 * above_zero > r.m else "invalid")
        return found

    results = set()
    for combo in itertools.product(*(sorted(kinds(v)) for v in ok)):
        valid = [v.score for v, x in zip(ok, combo) if x == "valid"]
        lowest = min(v.score for v in ok) if r.lowest == "all" else min(valid, default=None)
        if not valid and "partial" not in combo:
            results.add(("labelled", 1.0))
        elif lowest is not None and valid.count(lowest) >= r.k:
            results.add(("labelled", lowest))
        else:
            results.add(({"discard": "discarded", "human": "human"}[r.undecided], None))
    return results.pop() if len(results) == 1 else ("error", None)


@settings(max_examples=500, deadline=None)
@given(cases())
def test_matches_a_brute_force_reference(case):
    r, votes = case
    assert outcome(votes, r) == reference(votes, r)


@settings(max_examples=300, deadline=None)
@given(cases())
def test_a_label_is_an_analysis_score_or_one_and_one_only_without_confirmed_issues(case):
    r, votes = case
    d = decide(votes, r)
    if not d.labelled:
        return
    scores = [v.score for v in votes if v.score is not None]
    assert d.score in scores + [1.0]
    if d.score == 1.0:  # never while an issue is valid, partly confirmed or awaiting its verdict
        assert set(d.validity) <= {Validity.NO_ISSUE, Validity.INVALID, Validity.FAILED}
    else:
        valid = [v.score for v, x in zip(votes, d.validity) if x is Validity.VALID]
        assert valid.count(d.score) >= r.k
        assert d.score == (min(scores) if r.lowest == "all" else min(valid))


@settings(max_examples=100, deadline=None)
@given(RULES, st.integers(1, 8))
def test_every_analysis_failing_is_an_error(r, n):
    d = decide([Vote(None)] * n, r)
    assert (d.status, d.score) == (Status.ERROR, None)


@settings(max_examples=300, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_the_decision_does_not_depend_on_the_order_of_the_analyses(case, rnd):
    r, votes = case
    shuffled = list(votes)
    rnd.shuffle(shuffled)
    before, after = decide(votes, r), decide(shuffled, r)
    assert (after.status, after.score, after.reason) == (before.status, before.score, before.reason)


@settings(max_examples=300, deadline=None)
@given(cases(), st.sampled_from([0.0, 0.5]))
def test_adding_a_rejected_analysis_changes_nothing(case, score):
    r, votes = case
    before = outcome(votes, r)
    if "analyses gave a score" in decide(votes, r).reason:
        return  # too few analyses succeeded: one more successful analysis may reach the quorum
    issue_scores = [v.score for v in votes if v.score in (0.0, 0.5)]
    if r.lowest == "all" and issue_scores and score < min(issue_scores):
        return  # under "all" a lower score, even rejected, is the one that must be confirmed
    invalid = Vote(score, (0.0,) * r.m)
    for at in range(len(votes) + 1):
        assert outcome(votes[:at] + [invalid] + votes[at:], r) == before


@settings(max_examples=300, deadline=None)
@given(cases(), st.data())
def test_a_decision_never_depends_on_what_failed_ratings_would_have_said(case, data):
    r, votes = case
    before = outcome(votes, r)
    if before[0] == "error":
        return
    filled = [Vote(v.score, tuple(data.draw(st.sampled_from([0.0, 0.5, 1.0])) if x is None else x
                                  for x in v.ratings + (None,) * (r.m - len(v.ratings))))
              if v.score in (0.0, 0.5) else v for v in votes]
    assert outcome(filled, r) == before


@settings(max_examples=300, deadline=None)
@given(cases())
def test_readings_nest(case):
    """"all" labels only what "valid" labels, with the same label; confirm_at=1 labels 1 only
    what confirm_at=0.5 labels 1."""
    r, votes = case
    by_all, by_valid = (decide(votes, replace(r, lowest=x)) for x in LOWEST_READINGS)
    if by_all.labelled:
        assert (by_valid.status, by_valid.score) == (by_all.status, by_all.score)
    strict, lenient = (decide(votes, replace(r, confirm_at=c)) for c in (1.0, 0.5))
    if strict.labelled and strict.score == 1.0:
        assert (lenient.status, lenient.score) == (Status.LABELLED, 1.0)


# ---------------------------------------------------------------------------- inputs


def test_rows_map_onto_items_with_aliases_dotted_paths_and_extras():
    rows = [{"question": "P1", "model_prediction": {"proof": "A", "human_rating": 7}, "uid": "x"},
            {"question": "P2", "model_prediction": {"proof": "B", "human_rating": 0}, "uid": "y"}]
    items = rows_to_items(rows, ["proof=model_prediction.proof", "id=uid"])
    assert [(i.id, i.problem, i.proof) for i in items] == [("x", "P1", "A"), ("y", "P2", "B")]
    assert items[0].extra == {}  # every column was used
    plain = rows_to_items([{"problem": "P", "solution": "S", "grade": 3}])
    assert (plain[0].id, plain[0].proof, plain[0].extra) == ("1", "S", {"grade": 3})
    for bad_rows, fields in (([{"problem": "P"}], None), ([{"problem": "P", "proof": " "}], None),
                             ([{"problem": "P", "proof": "x", "id": 1}, {"problem": "Q", "proof": "y", "id": 1}], None),
                             ([{"problem": "P", "proof": "x"}], ["answer=proof"]),
                             ([{"problem": "P", "proof": "x"}], ["proof"]), ([], None)):
        with pytest.raises(UserInputError):
            rows_to_items(bad_rows, fields)


def test_repeated_proofs_get_their_own_sample_indices():
    a, b = LabelItem("1", "P", "x"), LabelItem("2", "P", "y")
    assert verify_starts([a, b, LabelItem("3", "P", "x"), LabelItem("4", "P", "x")], 4) == [0, 0, 4, 8]


# ---------------------------------------------------------------------------- end to end

PROOFS = {  # marker -> what the responder below makes of it
    "good": "verifiers find nothing",
    "bad": "verifiers find a fatal error; meta-verifiers confirm it",
    "disputed": "verifiers claim a gap; meta-verifiers reject the claim",
    "split": "one verifier finds a fatal error, the rest a minor gap; all confirmed",
    "garbled": "verifiers answer without a score",
}


def _marker(prompt: str) -> str:
    return re.search(r"\[(good|bad|disputed|split|garbled)\]", prompt).group(1)


def _say(score: str, words: str, meta: bool) -> str:
    if meta:
        return (f'Here is my analysis of the "solution evaluation": {words}\n\n'
                f'Based on my analysis, I will rate the "solution evaluation" as: \\boxed{{{score}}}')
    return (f"Here is my evaluation of the solution: {words}\n\n"
            f"Based on my evaluation, the final overall score should be: \\boxed{{{score}}}")


async def marker_responder(req):
    """Deterministic by proof marker and sample index (seed + choice)."""
    prompt = "\n".join(str(m["content"]) for m in req.messages)
    kind, meta = _marker(prompt), '"solution evaluation"' in prompt
    choices = []
    for i in range(req.n):
        index = (req.seed or 0) + i
        if meta:
            text = _say("0" if kind == "disputed" else "1", "the claimed defect is "
                        + ("unfounded." if kind == "disputed" else "real."), True)
        elif kind == "good":
            text = _say("1", "every step holds.", False)
        elif kind == "bad" or (kind == "split" and index == 0):
            text = _say("0", f"Step 2 has a fatal error: it divides by zero (sample {index}).", False)
        elif kind in ("disputed", "split"):
            text = _say("0.5", f"Step 3 omits a case (sample {index}).", False)
        else:
            text = "I am not sure what to make of this."
        choices.append(Choice(text=text))
    return Reply(choices, prompt_tokens=approx_tokens(prompt))


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _invoke(args):
    result = CliRunner().invoke(cli_app, ["label", *[str(a) for a in args]])
    return result


def _server_args(server, db, *extra):
    return ["--provider", "openai", "--base-url", server.base_url, "--model", "scripted", "--api-key", "x",
            "--db", db, "--seed", "0", "--max-concurrency", "4", *extra]


def _parquet_rows(path):
    rows = pq.read_table(path).to_pylist()
    for r in rows:
        r["extra"] = json.loads(r["extra"])
    return rows


def test_label_command_end_to_end(tmp_path):
    inputs = [{"uid": f"p-{m}", "question": f"Problem about {m}.", "answer": f"Proof text [{m}].", "grade": g}
              for m, g in zip(PROOFS, (7, 0, 6, 2, 1))]
    inputs.append({"uid": "p-bad-again", "question": "Problem about bad.", "answer": "Proof text [bad].", "grade": 0})
    src = _write_jsonl(tmp_path / "in.jsonl", inputs)
    out, par, db = tmp_path / "labels.jsonl", tmp_path / "labels.parquet", tmp_path / "p.db"
    with running_server(marker_responder) as (server, log):
        result = _invoke(["--proofs", src, "-n", 4, "-m", 3, "-k", 2, "--undecided", "human",
                          "--field", "problem=question", "--field", "proof=answer", "--field", "id=uid",
                          "-o", out, "--parquet", par, "--json", *_server_args(server, db)])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)  # --json: exactly one object on stdout
        sent = len(log)

        rows = [json.loads(line) for line in out.read_text().splitlines()]
        by_id = {r["id"]: r for r in rows}
        assert [r["id"] for r in rows] == [i["uid"] for i in inputs]  # input order kept
        assert {i: (r["status"], r["score"]) for i, r in by_id.items()} == {
            "p-good": ("labelled", 1.0), "p-bad": ("labelled", 0.0), "p-disputed": ("labelled", 1.0),
            "p-split": ("human", None), "p-garbled": ("error", None), "p-bad-again": ("labelled", 0.0)}
        assert summary["statuses"] == {"labelled": 4, "discarded": 0, "human": 1, "error": 1}
        assert summary["labels"] == {"0": 2, "0.5": 0, "1": 2} and summary["output"] == str(out)

        bad = by_id["p-bad"]
        assert bad["problem"] == "Problem about bad." and bad["proof"] == "Proof text [bad]."
        assert bad["extra"] == {"grade": 0}
        assert [a["score"] for a in bad["analyses"]] == [0.0] * 4
        assert all(a["valid"] and a["confirmations"] == 3 and len(a["meta"]) == 3 for a in bad["analyses"])
        assert all(a["issues"] for a in bad["analyses"])
        assert [a["validity"] for a in by_id["p-disputed"]["analyses"]] == ["invalid"] * 4
        assert [a["score"] for a in by_id["p-split"]["analyses"]] == [0.0, 0.5, 0.5, 0.5]
        garbled = by_id["p-garbled"]["analyses"]
        assert {a["status"] for a in garbled} == {"no_final_phrase"} and all(a["cause"] for a in garbled)
        assert by_id["p-good"]["analyses"][0]["meta"] == []  # score 1: never meta-verified

        # repeated rows: independent calls, not shared ones
        again = by_id["p-bad-again"]["provenance"]["verify_calls"]
        assert not set(again) & set(bad["provenance"]["verify_calls"])

        prov = bad["provenance"]
        run_id = prov["run_id"]
        assert (prov["model"], prov["provider"], prov["n"], prov["m"], prov["k"]) == ("scripted", "openai", 4, 3, 2)
        assert prov["undecided"] == "human" and prov["first_call_at"] <= prov["last_call_at"]
        assert len(prov["verify_calls"]) == 4 and len(prov["meta_calls"]) == 12

        # every row's decision follows from the evidence it carries
        r = LabelRule(m=3, k=2, undecided="human")
        for row in rows:
            votes = [Vote(a["score"] if a["status"] == "ok" else None,
                          tuple(x["rating"] if x["status"] == "ok" else None for x in a["meta"]))
                     for a in row["analyses"]]
            assert outcome(votes, r) == (row["status"], row["score"])

        assert _parquet_rows(par) == rows

        # the run store: kind label, analyses as verifications, ratings as meta-verifications
        store = Store(db)
        run = store.get_run(run_id)
        assert (run.kind, run.status.value, run.config["n"], run.config["rule"]["k"]) == ("label", "finished", 4, 2)
        verifications = store.verifications(run_id)
        assert len(verifications) == 6 * 4
        assert {v.id for v in verifications} == {a["id"] for row in rows for a in row["analyses"]}
        metas = store.meta_verifications(run_id)
        assert len(metas) == 3 * 4 * 3 + 4 * 3  # bad x2, disputed, split: 4 analyses x 3 ratings each
        assert {m.id for m in metas} == {x["id"] for row in rows for a in row["analyses"] for x in a["meta"]}
        assert len(store.proofs(run_id)) == 6

        # resume replays everything from the store: not one request, the same labels
        again_summary = runs.execute(store, run_id, notice=lambda _: None)
        assert len(log) == sent
        assert again_summary["statuses"] == summary["statuses"]
        assert [(r["status"], r["score"]) for r in map(json.loads, out.read_text().splitlines())] == \
            [(r["status"], r["score"]) for r in rows]


def test_failed_calls_are_recorded_as_errors_and_resume_repeats_only_them(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": f"b{i}", "problem": f"Problem {i}.", "proof": "Proof [bad]."}
                                               for i in range(3)])
    out, db = tmp_path / "labels.jsonl", tmp_path / "p.db"
    # Requests 1 and 2 are verification requests (a meta request needs an earlier success).
    faults = Faults(by_request={1: Fault(kind="bad_request"), 2: Fault(kind="bad_request")})
    with running_server(marker_responder, faults=faults) as (server, log):
        result = _invoke(["--proofs", src, "-n", 2, "-m", 1, "-k", 1, "-o", out, "--json",
                          *_server_args(server, db)])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["statuses"]["error"] == 2 and summary["statuses"]["labelled"] == 1
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        failed = [r for r in rows if r["status"] == "error"]
        for row in failed:
            assert "0 of 2" in row["reason"]
            assert all(a["status"] == "call_error" and "bad_request" in a["cause"] for a in row["analyses"])
            assert all(a["score"] is None for a in row["analyses"])
        run_id = rows[0]["provenance"]["run_id"]
        store = Store(db)
        failures = store.failures(run_id)  # one row per failed request, naming the keys it covered
        assert [(f.kind, f.n_keys) for f in failures] == [("bad_request", 2)] * 2
        stored = {v.id: v for v in store.verifications(run_id)}
        assert all(stored[a["id"]].status == "call_error" for row in failed for a in row["analyses"])
        first = {e["fingerprint"] for e in log if e["outcome"] == "ok"}
        n_first = len(log)

        summary = runs.execute(store, run_id, notice=lambda _: None)
        assert summary["statuses"]["labelled"] == 3
        resent = log[n_first:]
        assert resent and not {e["fingerprint"] for e in resent} & first  # no finished call again
        assert {e["fingerprint"] for e in log if e["outcome"] == "bad_request"} <= {e["fingerprint"] for e in resent}
        assert all(v.status == "ok" for v in store.verifications(run_id))  # same ids, now answered


def test_label_with_the_scripted_protocol_server(tmp_path):
    """serving.scripted_responder: noisy verifiers and meta-verifiers; every label must follow
    from the recorded evidence, and JSONL and parquet must agree."""
    rows_in = [{"problem": f"Show claim {i}.", "proof": f"We argue (scripted proof {i:08x}, grade {g}). Done."}
               for i, g in enumerate(["0", "0.5", "1", "1", "0", "0.5"])]
    src = _write_jsonl(tmp_path / "in.jsonl", rows_in)
    out, par, db = tmp_path / "l.jsonl", tmp_path / "l.parquet", tmp_path / "p.db"
    with running_server(scripted_responder()) as (server, log):
        result = _invoke(["--proofs", src, "-n", 6, "-m", 3, "-k", 2, "-o", out, "--parquet", par,
                          *_server_args(server, db)])
    assert result.exit_code == 0, result.output
    assert "labelled" in result.stdout and str(out) in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 6 and _parquet_rows(par) == rows
    r = LabelRule(m=3, k=2)
    for row in rows:
        assert len(row["analyses"]) == 6
        votes = [Vote(a["score"], tuple(x["rating"] for x in a["meta"])) for a in row["analyses"]]
        assert outcome(votes, r) == (row["status"], row["score"])
        for a in row["analyses"]:
            assert len(a["meta"]) == (3 if a["score"] in (0.0, 0.5) else 0)


def test_user_errors_and_mounting(tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", [{"problem": "P", "proof": "x"}])
    nocol = _write_jsonl(tmp_path / "nocol.jsonl", [{"problem": "P", "text": "x"}])
    base = ["--provider", "sim", "--db", tmp_path / "p.db"]
    for args in (["--proofs", src, "-n", 2, "-k", 3], ["--proofs", src, "--undecided", "keep"],
                 ["--proofs", nocol], ["--proofs", tmp_path / "missing.jsonl"], ["--proofs", src, "-m", 0],
                 ["--proofs", src, "--field", "answer=text"]):
        result = _invoke([*args, *base])
        # our checks raise UserInputError; click's range checks (-m 0) exit 2 themselves
        assert isinstance(result.exception, UserInputError) or result.exit_code == 2, (args, result.output)
    assert Store(tmp_path / "p.db").list_runs() == []  # nothing half-created
    result = CliRunner().invoke(cli_app, ["label", "--help"])
    assert result.exit_code == 0 and "--proofs" in result.stdout and "--undecided" in result.stdout


def test_votes_of_turns_unparsed_records_into_failures():
    from proofloop.roles.records import AnalysisRecord, MetaRecord

    a = AnalysisRecord(id="a", proof_id="p", status="ok", score=0.0)
    b = AnalysisRecord(id="b", proof_id="p", status="truncated", score=None)
    metas = {"a": [MetaRecord(id="x", analysis_id="a", status="ok", rating=1.0),
                   MetaRecord(id="y", analysis_id="a", status="call_error", cause="timeout")]}
    assert votes_of([a, b], metas) == [Vote(0.0, (1.0, None)), Vote(None)]


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")  # with the other users of the `smollm2` fixture (conftest.py)
def test_label_runs_end_to_end_on_the_embedded_smollm2(smollm2, tmp_path):
    src = _write_jsonl(tmp_path / "in.jsonl", [{"id": "s1", "problem": "Prove that 2 + 2 = 4.",
                                                "proof": "By definition 2 + 2 = 4."}])
    out, db = tmp_path / "l.jsonl", tmp_path / "p.db"
    result = _invoke(["--proofs", src, "-n", 1, "-m", 1, "-k", 1, "--provider", "local", "--verify-max-tokens", 24, "--seed", 0,
                      "-o", out, "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    [analysis] = row["analyses"]
    stored = Store(db).verifications(row["provenance"]["run_id"])
    assert [v.id for v in stored] == [analysis["id"]]
    # 24 tokens cannot hold a verdict (seeded, reproducible): a typed failure with its cause, no score
    assert (analysis["status"], stored[0].status) == ("truncated", "truncated")
    assert row["status"] == "error" and row["score"] is None and "0 of 1" in row["reason"]
    assert analysis["cause"].startswith("finish_reason=length") and stored[0].cause == analysis["cause"]

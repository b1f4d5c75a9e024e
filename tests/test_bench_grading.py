"""Grading: the autograder's prompt and parser (pure), grade rows, and grading stored proofs
against a scripted OpenAI-compatible server on 127.0.0.1 (verifier and autograder), with
metrics over the stored grades."""

from __future__ import annotations

import hashlib
import re

import pytest

from proofloop.bench.grading import (GRADE_START, GradeItem, failed_grade, grade_items, human_grade, proof_grades,
                                     shown_proof, verifier_grade)
from proofloop.runs import ModelSetup
from proofloop.bench.runs import create_grade_run, proof_rows, run_metrics
from proofloop.errors import UserInputError
from proofloop.models.base import Sampling
from proofloop.models.factory import ModelSettings
from proofloop.protocol.autograde import (AUTOGRADE_FINAL_PHRASE, NO_GUIDELINES, autograde_messages, check_template,
                                          default_template, load_template, parse_autograde)
from proofloop.protocol import verification_messages
from proofloop.protocol.types import ParseStatus
from proofloop.roles.records import AnalysisRecord, Verification
from proofloop.sim.http import Choice, Reply, approx_tokens
from support.scripted import scripted_responder
from proofloop.store import Store
from support.servers import fast_model, running_server

PROOF_GRADE = re.compile(r"scripted proof [0-9a-f]{8}, grade (0\.5|0|1)|true grade (\d)")


def grading_responder(points_for=None):
    """The scripted responder, plus an autograder: a prompt with the autograder's final phrase
    gets a grade read from the proof's visible ground truth ("true grade g" in imported
    proofs; "scripted proof ..., grade g" in generated ones: 1 -> 7, 0.5 -> 6, 0 -> 0)."""
    base = scripted_responder()

    async def respond(req):
        prompt = "\n".join(str(m.get("content", "")) for m in req.messages)
        if AUTOGRADE_FINAL_PHRASE not in prompt:
            return await base(req)
        m = PROOF_GRADE.findall(prompt.split("## Proof to grade")[-1])
        g = m[-1] if m else ("0", "")
        points = int(g[1]) if g[1] else {"1": 7, "0.5": 6, "0": 0}[g[0]]
        if points_for is not None:
            points = points_for(points)
        text = (f"Here is my grading of the proof: compared with the reference solution, step 2 "
                f"{'holds' if points >= 6 else 'has a gap'}.\n\n{AUTOGRADE_FINAL_PHRASE} \\boxed{{{points}}}")
        return Reply([Choice(text=text) for _ in range(req.n)], prompt_tokens=approx_tokens(prompt))

    return respond


# ---------------------------------------------------------------------------- the autograder protocol


def test_prompt_holds_every_part_verbatim_and_names_the_four_grades():
    problem, proof = r"Show $\frac{a}{b} \ge {x}$ for {{proof}}.", "By AM-GM, $a \\ge b$."
    [msg] = autograde_messages(problem, proof, "Reference: use AM-GM.", "(Partial) 1. AM-GM stated.")
    text = msg["content"]
    assert msg["role"] == "user"
    for part in (problem, proof, "Reference: use AM-GM.", "(Partial) 1. AM-GM stated.", AUTOGRADE_FINAL_PHRASE):
        assert part in text
    for points in ("\\boxed{7}", "\\boxed{6}", "\\boxed{1}", "\\boxed{0}"):
        assert points in text
    assert NO_GUIDELINES in autograde_messages("P", "Q", "R", None)[0]["content"]
    assert NO_GUIDELINES in autograde_messages("P", "Q", "R", "  ")[0]["content"]


def test_prompt_needs_a_reference_solution_and_a_proof():
    with pytest.raises(UserInputError, match="reference solution"):
        autograde_messages("P", "Q", "", None)
    with pytest.raises(UserInputError, match="proof"):
        autograde_messages("P", " ", "R", None)


def test_user_templates_are_checked(tmp_path):
    assert "{{reference_solution}}" in default_template()
    good = tmp_path / "good.md"
    good.write_text("{{problem}} {{reference_solution}} {{guidelines}} {{proof}} grade it")
    assert load_template(good).endswith("grade it")
    bad = tmp_path / "bad.md"
    bad.write_text("{{problem}} {{proof}} {{refrence}}")
    with pytest.raises(UserInputError, match=r"lacks \{\{reference_solution\}\}.*unknown \{\{refrence\}\}"):
        load_template(bad)
    with pytest.raises(UserInputError, match="cannot read"):
        load_template(tmp_path / "missing.md")
    with pytest.raises(UserInputError, match="empty"):
        check_template("  ", "x")


@pytest.mark.parametrize("boxed,points,bucket", [
    ("7", 7.0, "correct"), ("6", 6.0, "almost"), ("1", 1.0, "partial"), ("0", 0.0, "incorrect"),
    ("6.0", 6.0, "almost"), ("6/7", 6.0, "almost"), (r"\text{Almost}", 6.0, "almost"), ("Partial", 1.0, "partial"),
    ("7 points", 7.0, "correct"), ("$0$", 0.0, "incorrect"),
])
def test_parse_reads_the_four_buckets(boxed, points, bucket):
    g = parse_autograde(f"Here is my grading of the proof: ...\n{AUTOGRADE_FINAL_PHRASE} \\boxed{{{boxed}}}")
    assert (g.status, g.points, g.bucket) == (ParseStatus.OK, points, bucket)
    assert g.normalised == pytest.approx(points / 7)


def test_parse_takes_the_verdict_not_a_quoted_box_and_splits_reasoning():
    text = ("<think>The answer \\boxed{7} is claimed.</think>Here is my grading of the proof: the proof ends "
            "with \\boxed{42}, which is wrong.\n> " + AUTOGRADE_FINAL_PHRASE + " \\boxed{7}\n\n"
            "Based on the reference solution and the grading guidelines, the final grade is: **\\boxed{0}**")
    g = parse_autograde(text)
    assert g.status is ParseStatus.OK and g.points == 0.0
    assert g.reasoning == "The answer \\boxed{7} is claimed." and g.analysis.startswith("Here is my grading")


@pytest.mark.parametrize("text,finish,status", [
    (f"{AUTOGRADE_FINAL_PHRASE} \\boxed{{4}}", "stop", ParseStatus.INVALID_SCORE),  # never rounded to a bucket
    (f"{AUTOGRADE_FINAL_PHRASE} \\boxed{{good}}", "stop", ParseStatus.INVALID_SCORE),
    ("Here is my grading of the proof: fine. \\boxed{7}", "stop", ParseStatus.NO_FINAL_PHRASE),
    (f"{AUTOGRADE_FINAL_PHRASE} seven", "stop", ParseStatus.NO_BOXED_SCORE),
    ("<think>still thinking", "stop", ParseStatus.EMPTY),
    (f"{AUTOGRADE_FINAL_PHRASE} \\boxed{{7}}", "length", ParseStatus.TRUNCATED),
])
def test_parse_failures_have_a_status_and_a_cause(text, finish, status):
    g = parse_autograde(text, finish_reason=finish)
    assert g.status is status and g.cause
    assert g.points is None and g.normalised is None


# ---------------------------------------------------------------------------- grade rows


def test_grade_rows_and_their_aggregation():
    ok = AnalysisRecord(id="a1", proof_id="p", status=ParseStatus.OK, score=1.0)
    half = AnalysisRecord(id="a2", proof_id="p", status=ParseStatus.OK, score=0.5)
    broken = AnalysisRecord(id="a3", proof_id="p", status=ParseStatus.CALL_ERROR, cause="timeout: 30s")
    row = verifier_grade("p", Verification(proof_id="p", analyses=[ok, half, broken]))
    assert (row["grade"], row["normalised"], row["status"], row["meta"]["n_valid"]) == (0.75, 0.75, "ok", 2)
    none = verifier_grade("p", Verification(proof_id="p", analyses=[broken]))
    assert none["status"] == "no_valid_analysis" and none["grade"] is None
    assert "call_error: 1" in none["cause"] and "timeout" in none["cause"]  # an error, never a 0

    h = human_grade("p", 18, 21)
    assert (h["id"], h["grader"], h["normalised"]) == ("human:p", "human", pytest.approx(6 / 7))
    with pytest.raises(UserInputError, match="outside the scale"):
        human_grade("p", 8, 7)

    store = Store(":memory:")
    run = store.create_run("bench-grade", {})
    pid = store.add_problem(run, "P")
    for p in ("x", "y", "z"):
        store.add_proof(run, p, problem_id=pid, raw=p, status="ok")
    rows = [dict(id=f"k{i}", proof_id="x", grader="autograder", raw="...", grade=g, max_grade=7.0,
                 normalised=g / 7, status="ok", cause=None, meta={}) for i, g in enumerate((7.0, 6.0))]
    rows.append(dict(id="k9", proof_id="x", grader="autograder", raw=None, grade=None, max_grade=7.0,
                     normalised=None, status="call_error", cause="server error", meta={}))
    rows.append(failed_grade("y", "autograder", "no_solution", "the proof has no solution text"))
    for r in rows:
        store.add_grade(run, **r)
    agg = proof_grades(store.grades(run), "autograder")
    assert agg["x"].normalised == pytest.approx(13 / 14) and (agg["x"].n_ok, agg["x"].n) == (2, 3)
    assert agg["x"].causes == ["call_error: server error"]
    assert agg["y"].normalised is None and "no solution" in agg["y"].causes[0]
    assert "z" not in agg


def test_shown_proof_strips_reasoning_and_self_evaluation():
    raw = ("<think>hidden</think>## Solution\nThe proof.\n## Self Evaluation\nHere is my evaluation of the solution: ok\n"
           "Based on my evaluation, the final overall score should be: \\boxed{1}")
    assert shown_proof(raw) == "The proof."
    assert shown_proof("**Notation.** A plain proof.") == "**Notation.** A plain proof."


def test_proof_rows_map_columns_and_reject_bad_rows():
    [r] = proof_rows([{"problem": "P", "proof": "Q", "solution": "R", "grading_guidelines": "G", "human": "6",
                       "problem_idx": 3, "extra": "kept"}])
    assert (r["statement"], r["reference_solution"], r["guidelines"], r["human_grade"], r["problem_id"]) == (
        "P", "R", "G", 6.0, "3")
    assert r["id"].startswith("3:") and r["meta"] == {"extra": "kept"} and r["max_points"] == 7.0
    with pytest.raises(UserInputError, match="no proof"):
        proof_rows([{"statement": "P"}])
    with pytest.raises(UserInputError, match="not a number"):
        proof_rows([{"statement": "P", "proof": "Q", "human_grade": "seven"}])
    with pytest.raises(UserInputError, match="appears twice"):
        proof_rows([{"id": 1, "statement": "P", "proof": "Q"}, {"id": 1, "statement": "P", "proof": "R"}])


# ---------------------------------------------------------------------------- against a server


def _items(k: int = 3):
    rows = [{"id": f"pr{i}", "problem_id": f"P{i}", "statement": f"Prove claim number {i}.",
             "proof": f"We show it (true grade {(7, 6, 0)[i % 3]}). Step 1. Step 2.",
             "reference_solution": f"Reference for claim {i}.", "guidelines": "(Partial) 1. Step 1.",
             "human_grade": (7, 6, 0)[i % 3], "category": ("Algebra", "Geometry")[i % 2]} for i in range(k)]
    return rows


async def test_autograder_grades_stored_proofs_and_regrading_sends_nothing():
    store = Store(":memory:")
    run = create_grade_run(store, ModelSetup(ModelSettings(provider="sim")), grader="human", rows=_items(3))
    problems = {p.id: p for p in store.problems(run)}
    items = [GradeItem(p.id, problems[p.problem_id].text, p.solution, problems[p.problem_id].meta["reference_solution"],
                       problems[p.problem_id].meta["guidelines"]) for p in store.proofs(run)]
    proofs_before = [(p.id, p.raw) for p in store.proofs(run)]
    with running_server(grading_responder()) as (server, log):
        model = fast_model(server.base_url, cache=store, namespace=run)  # the run store is the call cache
        rows = await grade_items(store, run, items, "autograder", model, n=2, sampling=Sampling(max_tokens=400))
        assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
        sent = len(log)
        again = await grade_items(store, run, items, "autograder", model, n=2, sampling=Sampling(max_tokens=400))
        assert len(log) == sent  # every verdict came back from the call cache
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    assert [(p.id, p.raw) for p in store.proofs(run)] == proofs_before  # grading never touches a proof
    stored = store.grades(run, grader="autograder")
    assert len(stored) == 6 and all(g.raw and "\\boxed" in g.raw for g in stored)  # the judge's own words
    assert {g.proof_id: g.grade for g in stored} == {"pr0": 7.0, "pr1": 6.0, "pr2": 0.0}
    assert {g.meta["bucket"] for g in stored} == {"correct", "almost", "incorrect"}
    m = run_metrics(store, run, n_resamples=200)
    auto = m["graders"]["autograder"]
    assert auto["graded"] == 3 and auto["percent"]["estimate"] == pytest.approx(100 * 13 / 21)
    assert m["agreement"]["autograder"]["overall"]["precision"] == 1.0  # the script grades like the experts


async def test_verifier_grades_use_fresh_sample_indices_and_store_analyses():
    store = Store(":memory:")
    run = create_grade_run(store, ModelSetup(ModelSettings(provider="sim")), grader="human", rows=_items(2))
    problems = {p.id: p for p in store.problems(run)}
    items = [GradeItem(p.id, problems[p.problem_id].text, p.solution) for p in store.proofs(run)]
    items.append(GradeItem("pr0", "Prove claim number 0.", "## Self Evaluation\nonly a self evaluation"))
    with running_server() as (server, log):
        model = fast_model(server.base_url, namespace=run)
        rows = await grade_items(store, run, items[:2], "verifier", model, n=3, sampling=Sampling(max_tokens=400))
        empty = await grade_items(store, run, items[2:], "verifier", model, n=3, sampling=Sampling(max_tokens=400))
    assert len(log) == 2  # one n=3 request per proof; the proof without a solution costs nothing
    assert all(r["status"] == "ok" and r["meta"]["n"] == 3 for r in rows)
    assert empty[0]["status"] == "no_solution" and empty[0]["grade"] is None
    analyses = store.verifications(run)
    assert len(analyses) == 6 and all(a.raw and a.meta == {"grader": "verifier"} for a in analyses)
    assert {a.id for a in analyses} == {i for r in rows for i in r["meta"]["verification_ids"]}
    # The analyses are the samples GRADE_START.. of the verification prompt, never the 0..n-1 a
    # search would have used (so a grade never reuses the votes a proof was selected on).
    first = items[0]
    msgs = verification_messages(first.problem, shown_proof(first.proof))
    expected = [model.key(msgs, Sampling(max_tokens=400), GRADE_START + i) for i in range(3)]
    assert rows[0]["meta"]["verification_ids"] == expected
    assert model.key(msgs, Sampling(max_tokens=400), 0) not in {a.id for a in analyses}


async def test_items_graded_together_are_stored_in_one_transaction_before_on_grade():
    # One transaction per item for its analyses and one for its grade were most of what
    # POST /v1/verify added to the model's time (bench/serve/RESULTS.md).
    store = Store(":memory:")
    run = create_grade_run(store, ModelSetup(ModelSettings(provider="sim")), grader="human", rows=_items(6))
    problems = {p.id: p for p in store.problems(run)}
    items = [GradeItem(p.id, problems[p.problem_id].text, p.solution) for p in store.proofs(run)]
    model = ModelSetup(ModelSettings(provider="sim")).resolved().model(store, run, print)  # answers at once
    writes, seen = [], []
    add_records = store.add_records

    def counted(run_id, **records):
        writes.append({k: len(v) for k, v in records.items()})
        add_records(run_id, **records)

    store.add_records = counted  # type: ignore[method-assign]
    on_grade = lambda row: seen.append(row["id"] in {g.id for g in store.grades(run, grader="verifier")})  # noqa: E731
    rows = await grade_items(store, run, items, "verifier", model, n=3, sampling=Sampling(max_tokens=400),
                             on_grade=on_grade)
    assert writes == [{"verifications": 18, "grades": 6}]
    assert seen == [True] * 6  # every grade was stored before anyone was told of it
    assert [g.id for g in store.grades(run, grader="verifier")] == [r["id"] for r in rows]
    assert len(store.verifications(run)) == 18


async def test_autograder_without_reference_or_with_failed_calls_records_the_cause():
    from proofloop.sim.http import Fault, Faults

    store = Store(":memory:")
    run = create_grade_run(store, ModelSetup(ModelSettings(provider="sim")), grader="human", rows=_items(2))
    problems = {p.id: p for p in store.problems(run)}
    no_ref = [GradeItem(p.id, problems[p.problem_id].text, p.solution, None) for p in store.proofs(run)][:1]
    with_ref = [GradeItem(p.id, problems[p.problem_id].text, p.solution, "ref") for p in store.proofs(run)][1:]
    faults = Faults(by_request={i: Fault(kind="bad_request") for i in range(1, 10)})
    with running_server(grading_responder(), faults=faults) as (server, log):
        model = fast_model(server.base_url, namespace=run)
        [a] = await grade_items(store, run, no_ref, "autograder", model, n=1, sampling=Sampling(max_tokens=300))
        [b] = await grade_items(store, run, with_ref, "autograder", model, n=1, sampling=Sampling(max_tokens=300))
    assert a["status"] == "no_reference" and a["grade"] is None
    assert b["status"] == "call_error" and b["grade"] is None and "400" in b["cause"]
    agg = proof_grades(store.grades(run), "autograder")
    assert all(v.normalised is None for v in agg.values())
    m = run_metrics(store, run, n_resamples=50)["graders"]["autograder"]
    assert m["graded"] == 0 and len(m["ungraded"]) == 2 and m["mean_score"]["estimate"] is None


async def test_unknown_grader_and_bad_n_are_user_errors():
    store = Store(":memory:")
    with pytest.raises(UserInputError, match="unknown automatic grader"):
        await grade_items(store, "r", [], "oracle", None, n=1, sampling=Sampling())  # type: ignore[arg-type]
    with pytest.raises(UserInputError, match="n >= 1"):
        await grade_items(store, "r", [], "verifier", None, n=0, sampling=Sampling())  # type: ignore[arg-type]


def test_best_at_k_and_pass_at_1_from_graded_samples():
    """pass@1 and best@k by self score come out of the stored grades and self scores."""
    store = Store(":memory:")
    run = store.create_run("bench", {"grader": {"name": "verifier", "n": 1}})
    for p_i, (trues, selfs) in enumerate([((1.0, 0.0, 0.0), (1.0, 0.5, 0.0)), ((0.0, 1.0, 0.5), (0.0, 0.5, 1.0))]):
        pid = store.add_problem(run, f"P{p_i}", meta={"problem_id": f"P{p_i}", "max_points": 7.0})
        for j, (t, s) in enumerate(zip(trues, selfs)):
            proof_id = hashlib.sha256(f"{p_i}{j}".encode()).hexdigest()[:8]
            store.add_proof(run, proof_id, problem_id=pid, raw="x", solution="x", self_score=s, status="ok")
            store.add_grade(run, f"verifier:{proof_id}", proof_id=proof_id, grader="verifier", raw=None, grade=t,
                            max_grade=1.0, normalised=t, status="ok")
            if j == 0:
                store.add_problem(run, f"P{p_i}", meta={"problem_id": f"P{p_i}", "max_points": 7.0,
                                                       "chosen_proof_id": proof_id})
    bk = run_metrics(store, run, n_resamples=100)["best_at_k"]["verifier"]
    assert bk["k_max"] == 3 and bk["problems"] == 2
    assert bk["pass_at_1"]["estimate"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    # k = 3 always keeps the top self score: problem 0 -> true 1.0, problem 1 -> true 0.5.
    assert bk["best_at_k"]["3"]["estimate"] == pytest.approx(0.75)
    assert bk["best_at_k"]["1"]["estimate"] == pytest.approx(bk["pass_at_1"]["estimate"])

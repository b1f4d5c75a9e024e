"""verify, prove (pool) and meta-verify end to end against a real `transformers serve` on
127.0.0.1 serving the embedded SmolLM2 on CPU, with tiny token limits and no `--max-n`.

The server returns one choice whatever `n` says, so this passes only when the model layer
sends one request per sample to such a server. A 135M model rarely follows the protocol
within 64 tokens: what is checked is that every record is either scored or carries a typed
parse status (truncated, no_final_phrase, ...), never a failed call."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from e2e_support import ServeProcess, smollm2_folder, transformers_server  # noqa: F401 (fixtures)
from proofloop.protocol.types import SCORES, ParseStatus
from proofloop.store import Store
from support.cli import cli_env, run_cli

# The server ignores n and answers one choice: the model layer finds that out on the first
# response and asks for the rest one sample per request, with no --max-n flag. The xdist group keeps the three tests on one worker (`make test` runs --dist loadgroup), so
# the model is converted and served once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("transformers-serve")]

PROBLEM = "Prove that the sum of two even integers is even."
PROOF = "## Solution\n\nLet $a=2m$ and $b=2k$. Then $a+b=2(m+k)$, which is even.\n"
ANALYSIS = ("Here is my evaluation of the solution: the proof is complete and correct.\n\n"
            "Based on my evaluation, the final overall score should be: \\boxed{1}")
TOKENS = ["--verify-max-tokens", "64", "--max-concurrency", "2"]
CLI_BOUND_S = 900  # a bound on a hang, not a speed requirement
TYPED = {s.value for s in ParseStatus} - {ParseStatus.CALL_ERROR.value}


def _run(args: list[str], env: dict[str, str]) -> dict:
    r = run_cli(args + ["--json"], env, timeout=CLI_BOUND_S)
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-4000:]}"
    return json.loads(r.stdout)


def _assert_scored_or_typed(kind: str, records: list[tuple[str, float | None, str | None]]) -> None:
    """Each (status, score, cause): ok with a rubric score, or a typed status without one."""
    assert records, f"no {kind} recorded"
    for status, score, cause in records:
        assert status in TYPED, f"{kind}: status {status!r} ({cause})"
        if status == ParseStatus.OK.value:
            assert score in SCORES, f"{kind}: ok with score {score!r}"
        else:
            assert score is None, f"{kind}: {status} with score {score!r}"


@pytest.fixture
def env(tmp_path: Path, transformers_server: ServeProcess) -> dict[str, str]:  # noqa: F811
    return cli_env(tmp_path / "runs.db", PROOFLOOP_BASE_URL=transformers_server.base_url,
                   PROOFLOOP_MODEL=transformers_server.model, PROOFLOOP_API_KEY="unused")


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    out = {}
    for name, text in {"problem": PROBLEM, "proof": PROOF, "analysis": ANALYSIS}.items():
        (tmp_path / f"{name}.md").write_text(text)
        out[name] = str(tmp_path / f"{name}.md")
    return out


def test_verify_n4(env, files, tmp_path: Path):
    out = _run(["verify", "--problem", files["problem"], "--proof", files["proof"], "-n", "4", "--seed", "1",
                *TOKENS], env)
    assert out["n"] == 4 and len(out["analyses"]) == 4
    _assert_scored_or_typed("analysis", [(a["status"], a["score"], a["cause"]) for a in out["analyses"]])
    stored = Store(tmp_path / "runs.db").verifications(out["run_id"])
    assert len(stored) == 4
    # four samples, not one sample four times: each request had its own seed
    assert len({v.raw for v in stored}) > 1, [v.raw for v in stored]


def test_prove_pool(env, files, tmp_path: Path):
    out = _run(["prove", files["problem"], "--strategy", "pool", "-o", "initial=2", "-o", "verifications=2",
                "-o", "top_k=1", "-o", "rounds=1", "--max-tokens", "64", "--seed", "1", *TOKENS,
                # 64 tokens cut every SmolLM2 proof off; keep them so that the loop verifies too
                "-o", "keep_truncated=true"], env)
    store = Store(tmp_path / "runs.db")
    proofs = store.proofs(out["run_id"])
    assert len(proofs) >= 2
    _assert_scored_or_typed("proof", [(p.status, p.self_score, p.cause) for p in proofs])
    _assert_scored_or_typed("analysis", [(v.status, v.score, v.cause) for v in store.verifications(out["run_id"])])


def test_meta_verify_m2(env, files):
    out = _run(["meta-verify", "--problem", files["problem"], "--proof", files["proof"],
                "--analysis", files["analysis"], "-m", "2", "--seed", "1", *TOKENS], env)
    assert out["m"] == 2 and len(out["ratings"]) == 2
    _assert_scored_or_typed("rating", [(r["status"], r["rating"], r["cause"]) for r in out["ratings"]])

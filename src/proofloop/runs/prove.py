"""The run kinds of one problem: `prove` (a search strategy), `verify` (n analyses of a given
proof) and `meta-verify` (m ratings of a given analysis).

    >>> from proofloop.store import Store
    >>> from proofloop.models.factory import ModelSettings
    >>> from proofloop.runs import execute
    >>> store = Store(":memory:")
    >>> setup = ModelSetup(ModelSettings(provider="sim"), seed=0)
    >>> run_id = create_prove_run(store, "Prove that 2 + 2 = 4.", setup, strategy="single", options={"k": 2})
    >>> summary = execute(store, run_id, notice=lambda line: None)
    >>> summary["kind"], summary["proofs"]
    ('prove', 2)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from proofloop.errors import UserInputError
from proofloop.packs import get_pack, with_evidence
from proofloop.protocol import parse_verification, user_proof
from proofloop.roles import meta_verify, text_id, verify
from proofloop.roles.records import AnalysisRecord, ProofRecord
from proofloop.runs.context import ModelSetup, RunContext, new_run
from proofloop.runs.registry import RunKind, register
from proofloop.runs.render import usage_line
from proofloop.search import make_strategy
from proofloop.store import Store

# Why a search stopped, in words (the summary keeps the code).
STOP_REASONS = {
    "accepted": "a proof was accepted (it passed its verifications, or graded itself 1)",
    "round_limit": "the round limit was reached",
    "attempts_exhausted": "every thread used its attempts",
    "completed": "every proof asked for was generated",
    "nothing_scored": "calls came back but no usable proof could be scored",
    "all_calls_failed": "every model call failed",
    "budget_tokens": "the token budget ran out",
    "budget_cost": "the cost budget ran out",
    "budget_wall": "the wall-time budget ran out",
}


def create_prove_run(store: Store, problem: str, setup: ModelSetup, *, strategy: str = "sequential",
                     options: dict[str, Any] | None = None) -> str:
    setup = setup.resolved()
    make_strategy(strategy, **(options or {}))  # bad options fail before a run exists
    return new_run(store, "prove", setup, problem=problem, strategy=strategy, options=options or {},
                   seed=setup.seed or 0)


def create_verify_run(store: Store, problem: str, proof: str, setup: ModelSetup, *, n: int = 4,
                      symbolic: bool = False) -> str:
    """A `verify` run: n analyses of a proof. `symbolic`: the relations the symbolic checker
    refutes are shown to the verifier, and the checks kept in the run (done once, here, so a
    resume shows the same prompt)."""
    if n < 1:
        raise_count("-n", n)
    shown, evidence = with_evidence(get_pack(setup.pack), problem, proof)
    checks: dict[str, Any] = {}
    if symbolic:
        from proofloop.steps.evidence import symbolic_evidence

        shown, checks["symbolic"] = symbolic_evidence(shown, proof)
    return new_run(store, "verify", setup.resolved(), problem=shown, proof=proof, n=n, **evidence_field(evidence),
                   **checks)


def create_meta_verify_run(store: Store, problem: str, proof: str, analysis: str, setup: ModelSetup, *,
                           m: int = 4) -> str:
    """A `meta-verify` run: m ratings of one verifier analysis of a proof."""
    if m < 1:
        raise_count("-m", m)
    shown, evidence = with_evidence(get_pack(setup.pack), problem, proof)
    return new_run(store, "meta-verify", setup.resolved(), problem=shown, proof=proof, analysis=analysis, m=m,
                   **evidence_field(evidence))


def evidence_field(evidence: dict[str, Any] | None) -> dict[str, Any]:
    """The run-config field holding a pack's evidence record. It is found once, when the run
    is created, so a resumed run shows the verifier the very prompt it showed before."""
    return {"evidence": evidence} if evidence is not None else {}


def raise_count(flag: str, value: int) -> None:
    raise UserInputError(f"{flag} must be at least 1, got {value}")


def given_proof(problem: str, text: str) -> ProofRecord:
    """A proof the user supplied, as a record (text without `## Solution` is the solution)."""
    return ProofRecord(id=text_id(text), problem=problem, raw=text, **user_proof(text).model_dump())


# ---- execute ------------------------------------------------------------------------------


async def execute_prove(ctx: RunContext) -> dict[str, Any]:
    problem = ctx.config["problem"]
    ctx.recorder.problem_id(problem)
    strategy = make_strategy(ctx.config["strategy"], **ctx.config.get("options", {}))
    result = await strategy.solve(problem, ctx.search)
    best = result.best
    return {"kind": "prove", **result.summary(),
            "proof": best.solution if best else None,
            "self_evaluation": best.self_evaluation if best else None,
            "statuses": dict(Counter(p.status.value for p in result.proofs))}


async def execute_verify(ctx: RunContext) -> dict[str, Any]:
    problem, proof_text = ctx.config["problem"], ctx.config["proof"]
    ctx.recorder.proof(problem, given_proof(problem, proof_text), given=True)  # what the analyses point at
    v = await verify(ctx.search.verifier, problem, given_proof(problem, proof_text),
                     sampling=ctx.search.verify_sampling, n=ctx.config["n"], templates=ctx.search.templates)
    for a in v.analyses:
        ctx.recorder.analysis(problem, a)
    return {"kind": "verify", "proof_id": v.proof_id, "n": len(v.analyses), "n_valid": len(v.valid),
            "mean_score": v.mean_score, "issues": v.issues,
            "analyses": [analysis_json(a) for a in v.analyses], **evidence_field(ctx.config.get("evidence")),
            **({"symbolic": ctx.config["symbolic"]} if ctx.config.get("symbolic") else {})}


async def execute_meta_verify(ctx: RunContext) -> dict[str, Any]:
    problem, proof_text, analysis = ctx.config["problem"], ctx.config["proof"], ctx.config["analysis"]
    proof = given_proof(problem, proof_text)
    ctx.recorder.proof(problem, proof, given=True)
    given = parse_verification(analysis)
    ctx.recorder.analysis(problem, AnalysisRecord(id=text_id(analysis), proof_id=proof.id, raw=analysis,
                                                  **given.model_dump()), given=True)
    ratings = await meta_verify(ctx.search.verifier, problem, proof, analysis, sampling=ctx.search.meta_sampling,
                                m=ctx.config["m"], templates=ctx.search.templates)
    for r in ratings:
        ctx.recorder.meta(problem, r)
    valid = [r.rating for r in ratings if r.ok and r.rating is not None]
    return {"kind": "meta-verify", "m": len(ratings), "n_valid": len(valid),
            "mean_rating": sum(valid) / len(valid) if valid else None,
            "ratings": [{"rating": r.rating, "status": r.status.value, "cause": r.cause,
                         "analysis": r.analysis} for r in ratings], **evidence_field(ctx.config.get("evidence"))}


def analysis_json(a: AnalysisRecord) -> dict[str, Any]:
    return {"id": a.id, "score": a.score, "status": a.status.value, "cause": a.cause, "issues": a.issues,
            "analysis": a.analysis, "finish_reason": a.finish_reason}


# ---- render -------------------------------------------------------------------------------


def render_prove(summary: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if summary.get("proof"):
        lines += ["──── best proof ────", summary["proof"], "────"]
    else:
        lines.append(f"no proof with a usable solution; parse statuses: {summary.get('statuses')}")
    if summary.get("best_status") not in (None, "ok"):
        lines.append(f"note: the best proof's output has status {summary['best_status']}: {summary.get('best_cause')}")
    if summary.get("score_kind") == "verification":
        lines.append(f"mean verification score: {summary.get('score')}   self score: {summary.get('self_score')}")
        lines += [f"   - {issue}" for issue in (summary.get("issues") or [])[:5]]
        lineage = (summary.get("report") or {}).get("lineage")
        if lineage:
            lines.append(f"lineage: {len(lineage)} step(s) back to an initial proof")
    else:
        lines.append(f"self score: {summary.get('self_score')}")
    tree = (summary.get("report") or {}).get("tree")
    if tree:  # the tree strategy draws what it explored
        lines += ["──── explored tree ────", *tree]
    reason, detail = summary.get("stop_reason"), summary.get("stop_detail")
    lines.append(f"strategy: {summary.get('strategy')}   proofs: {summary.get('proofs')}   "
                 f"stopped: {STOP_REASONS.get(reason, reason)}" + (f" ({detail})" if detail else ""))
    return lines + [usage_line(summary)]


def render_verify(summary: dict[str, Any]) -> list[str]:
    lines = []
    for i, a in enumerate(summary["analyses"]):
        lines.append(f"analysis {i}: score={a['score']} status={a['status']}"
                     + (f" cause={a['cause']}" if a["cause"] else ""))
        lines += [f"   - {issue}" for issue in a["issues"][:5]]
    unscored = summary["n"] - summary["n_valid"]
    lines.append(f"mean score: {summary['mean_score']} over {summary['n_valid']} scored analyses"
                 + (f" ({unscored} unscored)" if unscored else ""))
    if summary.get("evidence"):
        lines.append(f"evidence: {summary['evidence'].get('summary', summary['evidence'])}")
    if summary.get("symbolic"):
        counts = ", ".join(f"{k} {v}" for k, v in summary["symbolic"]["counts"].items())
        lines.append(f"symbolic checks: {counts}; shown to the verifier: {len(summary['symbolic']['evidence'])}")
        lines += [f"   - {c['relation']['lhs']} {c['relation']['op']} {c['relation']['rhs']}: {c['reason']}"
                  for c in summary["symbolic"]["evidence"]]
    return lines + [usage_line(summary)]


def render_meta_verify(summary: dict[str, Any]) -> list[str]:
    lines = [f"rating {i}: {r['rating']} status={r['status']}" + (f" cause={r['cause']}" if r["cause"] else "")
             for i, r in enumerate(summary["ratings"])]
    lines.append(f"mean rating: {summary['mean_rating']} over {summary['n_valid']} scored ratings of {summary['m']}")
    return lines + [usage_line(summary)]


register(RunKind("prove", execute_prove, render_prove))
register(RunKind("verify", execute_verify, render_verify))
register(RunKind("meta-verify", execute_meta_verify, render_meta_verify))

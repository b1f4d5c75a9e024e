"""Runs: turn a stored run configuration into work, and record everything in the run store.

A run is created from a command (prove, verify, meta-verify) with a config holding all that is
needed to do it again: the problem text, the strategy and its options, the model settings
(never the API key), sampling per role and the template texts. `execute(store, run_id)` does
the work; `resume` is the same call on an existing run. Every LLM call goes through the call
cache keyed on the run id, so a resumed run replays finished calls from the store instantly
and repeats none of them; the records it re-derives carry the same ids, so storing them again
is a no-op.

    >>> from proofloop.store import Store
    >>> store = Store(":memory:")
    >>> run_id = create_prove_run(store, "Prove that 2 + 2 = 4.", ModelSettings(provider="sim"),
    ...                           strategy="single", options={"k": 2})
    >>> execute(store, run_id)["kind"]
    'prove'
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from proofloop.models.base import Sampling
from proofloop.models.factory import ModelSettings, build_provider
from proofloop.models.wrapper import Model, RetryPolicy, Timeouts
from proofloop.protocol import Templates
from proofloop.protocol import parse_proof, parse_verification
from proofloop.roles import meta_verify, text_id, verify
from proofloop.roles.records import AnalysisRecord, MetaRecord, ProofRecord
from proofloop.search import make_strategy
from proofloop.search.base import SearchContext
from proofloop.search.budget import Budget
from proofloop.store import Store


class StoreRecorder:
    """Writes every record to the run store the moment a strategy hands it over. A failed
    call has no text: it is stored with raw "" and its status and cause."""

    def __init__(self, store: Store, run_id: str, on_record: Callable[[str, Any], None] | None = None):
        self.store, self.run_id = store, run_id
        self.on_record = on_record or (lambda kind, record: None)
        self._problem_ids: dict[str, int] = {}

    def problem_id(self, problem: str, **meta: Any) -> int:
        if problem not in self._problem_ids:
            self._problem_ids[problem] = self.store.add_problem(self.run_id, problem, meta=meta or None)
        return self._problem_ids[problem]

    def proof(self, problem: str, record: ProofRecord, **where: Any) -> None:
        self.store.add_proof(
            id=record.id, run_id=self.run_id, problem_id=self.problem_id(problem), raw=record.raw or "",
            reasoning=record.reasoning, solution=record.solution, self_evaluation=record.self_evaluation,
            self_score=record.self_score, status=record.status.value, cause=record.cause,
            finish_reason=record.finish_reason, round=where.get("round"), thread=where.get("thread"),
            attempt=where.get("attempt"), parents=record.parents, refined_from_analyses=record.analyses_used)
        self.on_record("proof", record)

    def analysis(self, problem: str, record: AnalysisRecord) -> None:
        self.store.add_verification(
            id=record.id, run_id=self.run_id, proof_id=record.proof_id, raw=record.raw or "",
            reasoning=record.reasoning, analysis=record.analysis, score=record.score,
            status=record.status.value, cause=record.cause, issues=record.issues)
        self.on_record("analysis", record)

    def meta(self, problem: str, record: MetaRecord) -> None:
        self.store.add_meta_verification(
            id=record.id, run_id=self.run_id, verification_id=record.analysis_id, raw=record.raw or "",
            reasoning=record.reasoning, analysis=record.analysis, rating=record.rating,
            status=record.status.value, cause=record.cause)
        self.on_record("meta", record)


# ---- configuration ------------------------------------------------------------------------


def _config(kind: str, settings: ModelSettings, *, sampling: dict[str, Sampling], templates: Templates | None,
            max_concurrency: int, timeouts: Timeouts | None, **fields: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "model": dataclasses.asdict(settings),
        "sampling": {role: dataclasses.asdict(s) for role, s in sampling.items()},
        "templates": dataclasses.asdict(templates) if templates else None,
        "max_concurrency": max_concurrency,
        "timeouts": dataclasses.asdict(timeouts) if timeouts else None,
        **fields,
    }


def create_prove_run(store: Store, problem: str, settings: ModelSettings, *, strategy: str = "sequential",
                     options: dict[str, Any] | None = None, sampling: dict[str, Sampling] | None = None,
                     templates: Templates | None = None, max_concurrency: int = 8,
                     timeouts: Timeouts | None = None, seed: int = 0, api_key: str | None = None) -> str:
    settings, _ = settings.resolved(api_key)
    make_strategy(strategy, **(options or {}))  # bad options fail before a run exists
    config = _config("prove", settings, sampling=sampling or {}, templates=templates,
                     max_concurrency=max_concurrency, timeouts=timeouts, problem=problem,
                     strategy=strategy, options=options or {}, seed=seed)
    return store.create_run("prove", config)


def create_verify_run(store: Store, problem: str, proof: str, settings: ModelSettings, *, n: int = 4,
                      analysis: str | None = None, m: int = 1, sampling: dict[str, Sampling] | None = None,
                      templates: Templates | None = None, max_concurrency: int = 8,
                      timeouts: Timeouts | None = None, api_key: str | None = None) -> str:
    """A `verify` run (n analyses of a proof) or, with `analysis`, a `meta-verify` run."""
    settings, _ = settings.resolved(api_key)
    kind = "meta-verify" if analysis is not None else "verify"
    config = _config(kind, settings, sampling=sampling or {}, templates=templates,
                     max_concurrency=max_concurrency, timeouts=timeouts, problem=problem, proof=proof,
                     analysis=analysis, n=n, m=m)
    return store.create_run(kind, config)


def build_context(store: Store, run_id: str, config: dict[str, Any], *, api_key: str | None = None,
                  on_record=None, notice=print) -> SearchContext:
    settings = ModelSettings(**config["model"])
    timeouts = Timeouts(**config["timeouts"]) if config.get("timeouts") else Timeouts()
    provider = build_provider(settings, api_key, timeouts=timeouts, notice=notice)
    model = Model(provider, namespace=run_id, cache=store, timeouts=timeouts, retry=RetryPolicy(),
                  max_concurrency=config.get("max_concurrency", 8), endpoint=settings.endpoint)
    sampling = {role: Sampling(**s) for role, s in (config.get("sampling") or {}).items()}
    templates = Templates(**config["templates"]) if config.get("templates") else None
    # A run budget is shared by all problems of the run (each problem may have its own too).
    budget = Budget(scope="run", **config["run_budget"]) if config.get("run_budget") else None
    return SearchContext(generator=model, templates=templates, recorder=StoreRecorder(store, run_id, on_record),
                         seed=config.get("seed", 0), budget=budget,
                         **{f"{role}_sampling": s for role, s in sampling.items()})


# ---- execution ----------------------------------------------------------------------------


async def _execute(store: Store, run_id: str, config: dict[str, Any], ctx: SearchContext) -> dict[str, Any]:
    if config["kind"] == "label":  # many problems per run: label.py owns it (imported here: it imports us)
        from proofloop.label import execute_label

        return await execute_label(store, run_id, config, ctx)
    if config["kind"] in ("bench", "bench-grade"):  # many problems per run: bench/runs.py owns them
        from proofloop.bench.runs import execute_bench

        return await execute_bench(store, run_id, config, ctx)
    kind, problem = config["kind"], config["problem"]
    recorder: StoreRecorder = ctx.recorder  # type: ignore[assignment]
    recorder.problem_id(problem)
    if kind == "prove":
        strategy = make_strategy(config["strategy"], **config.get("options", {}))
        result = await strategy.solve(problem, ctx)
        best = result.best
        return {"kind": kind, **result.summary(),
                "proof": best.solution if best else None,
                "self_evaluation": best.self_evaluation if best else None,
                "statuses": _count(p.status.value for p in result.proofs)}
    if kind in ("verify", "meta-verify"):
        # The user's proof (and analysis) become records too, so everything derived from
        # them in the store points at something.
        proof = _given_proof(problem, config["proof"])
        recorder.proof(problem, proof)
    if kind == "verify":
        v = await verify(ctx.verifier, problem, config["proof"], sampling=ctx.verify_sampling, n=config["n"],
                         templates=ctx.templates)
        for a in v.analyses:
            recorder.analysis(problem, a)
        return {"kind": kind, "proof_id": v.proof_id, "n": len(v.analyses), "n_valid": len(v.valid),
                "mean_score": v.mean_score, "issues": v.issues,
                "analyses": [_analysis_json(a) for a in v.analyses]}
    if kind == "meta-verify":
        given = parse_verification(config["analysis"])
        recorder.analysis(problem, AnalysisRecord(id=text_id(config["analysis"]), proof_id=proof.id,
                                                  raw=config["analysis"], **given.model_dump()))
        ratings = await meta_verify(ctx.verifier, problem, config["proof"], config["analysis"],
                                    sampling=ctx.meta_sampling, m=config["m"], templates=ctx.templates)
        for r in ratings:
            recorder.meta(problem, r)
        valid = [r.rating for r in ratings if r.ok]
        return {"kind": kind, "m": len(ratings), "n_valid": len(valid),
                "mean_rating": sum(valid) / len(valid) if valid else None,
                "ratings": [{"rating": r.rating, "status": r.status.value, "cause": r.cause,
                             "analysis": r.analysis} for r in ratings]}
    raise ValueError(f"unknown run kind {kind!r}")


async def _execute_and_close(store: Store, run_id: str, config: dict[str, Any], ctx: SearchContext) -> dict[str, Any]:
    """Run the work, then close the provider's HTTP client inside the same event loop."""
    try:
        return await _execute(store, run_id, config, ctx)
    finally:
        for model in {id(m): m for m in (ctx.generator, ctx.verifier)}.values():
            close = getattr(model.provider, "aclose", None)
            if close is not None:
                await close()


def _given_proof(problem: str, text: str) -> ProofRecord:
    """A proof the user supplied, as a record: parsed like generator output when it has the
    sections, else taken whole as the solution."""
    parsed = parse_proof(text)
    fields = parsed.model_dump()
    if not parsed.solution:
        fields["solution"] = text
    return ProofRecord(id=text_id(text), problem=problem, raw=text, **fields)


def _count(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _analysis_json(a: AnalysisRecord) -> dict[str, Any]:
    return {"id": a.id, "score": a.score, "status": a.status.value, "cause": a.cause, "issues": a.issues,
            "analysis": a.analysis, "finish_reason": a.finish_reason}


def execute(store: Store, run_id: str, *, api_key: str | None = None, on_record=None, notice=print) -> dict[str, Any]:
    """Do (or finish) the work of a run; return its summary, which is also stored on the run.
    Whatever happens, every finished call and record stays in the store."""
    run = store.get_run(run_id)
    ctx = build_context(store, run_id, run.config, api_key=api_key, on_record=on_record, notice=notice)
    store.set_run_status(run_id, "running")
    try:
        summary = asyncio.run(_execute_and_close(store, run_id, run.config, ctx))
    except KeyboardInterrupt:
        store.set_run_status(run_id, "interrupted", error="interrupted by the user")
        raise
    except BaseException as e:
        store.set_run_status(run_id, "failed", error=str(e) or type(e).__name__)
        raise
    summary = {"run_id": run_id, **summary, "usage": _usage(store, run_id, ctx)}
    store.set_run_status(run_id, "finished", summary=summary)
    return summary


def _usage(store: Store, run_id: str, ctx: SearchContext) -> dict[str, Any]:
    totals = store.run_usage(run_id)
    acc = ctx.generator.accounting
    return {"calls": totals.calls, "failures": totals.failures, "prompt_tokens": totals.prompt_tokens,
            "completion_tokens": totals.completion_tokens, "cached_prompt_tokens": totals.cached_prompt_tokens,
            "cost_usd": getattr(acc, "cost_usd", None) if not callable(getattr(acc, "cost_usd", None)) else None}

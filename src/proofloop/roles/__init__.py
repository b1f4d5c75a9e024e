"""The paper's four roles as async functions over a model (models.wrapper.Model).

Each role renders its prompt (protocol.templates), asks the model for n samples (the wrapper
handles retries, caching and accounting) and parses every sample into a typed record that
keeps the raw text. A failed call becomes a record with status CALL_ERROR and its cause.

    >>> import asyncio
    >>> from proofloop.models.wrapper import Model
    >>> from proofloop.sim.provider import SimProvider
    >>> model = Model(SimProvider(seed=1))
    >>> proof = asyncio.run(generate(model, "Prove that 1 + 1 = 2.", sampling=Sampling(max_tokens=200_000)))[0]
    >>> proof.status.value, proof.self_score in (0.0, 0.5, 1.0)
    ('ok', True)
    >>> v = asyncio.run(verify(model, "Prove that 1 + 1 = 2.", proof, n=4, sampling=Sampling(max_tokens=200_000)))
    >>> len(v.valid), all(a.score in (0.0, 0.5, 1.0) for a in v.valid)
    (4, True)
"""

from __future__ import annotations

import hashlib

from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model, Sample
from proofloop.protocol import (
    Templates,
    generation_messages,
    meta_verification_messages,
    parse_meta_verification,
    parse_proof,
    parse_verification,
    proof_for_verification,
    refinement_messages,
    verification_messages,
)
from proofloop.protocol.types import ParseStatus
from proofloop.roles.records import AnalysisRecord, MetaRecord, ProofRecord, RoleRecord, Verification

__all__ = ["generate", "verify", "meta_verify", "refine", "text_id",
           "RoleRecord", "ProofRecord", "AnalysisRecord", "MetaRecord", "Verification", "Sampling"]

DEFAULT_SAMPLING = Sampling()


def text_id(text: str) -> str:
    """A stable id for a proof or analysis given as plain text (not produced by a call)."""
    return "t-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def record_fields(sample: Sample, parse) -> dict:
    """The record fields of one sample: a failed call keeps its cause (status CALL_ERROR, no
    score); a finished one its raw text and what `parse` reads from it."""
    if sample.error is not None:
        return {"id": sample.key, "status": ParseStatus.CALL_ERROR, "cause": str(sample.error),
                "usage": sample.usage}
    c = sample.completion
    parsed = parse(c.text, reasoning=c.reasoning, finish_reason=c.finish_reason)
    return {"id": sample.key, "raw": c.text, "finish_reason": c.finish_reason,
            "completion_tokens": c.completion_tokens, "usage": sample.usage, **parsed.model_dump()}


def _proof_records(problem: str, samples: list[Sample], parents: list[str], analyses: list[str]):
    return [ProofRecord(problem=problem, parents=parents, analyses_used=analyses, **record_fields(s, parse_proof))
            for s in samples]


async def generate(model: Model, problem: str, *, sampling: Sampling = DEFAULT_SAMPLING, n: int = 1,
                   start: int = 0, templates: Templates | None = None) -> list[ProofRecord]:
    """n proofs of `problem`, each with its self evaluation and self score."""
    samples = await model.sample(generation_messages(problem, templates), sampling, n,
                                 start=start, tag="generate")
    return _proof_records(problem, samples, [], [])


async def refine(model: Model, problem: str, candidates: list[tuple[ProofRecord, list[AnalysisRecord]]],
                 *, sampling: Sampling = DEFAULT_SAMPLING, n: int = 1, start: int = 0,
                 templates: Templates | None = None) -> list[ProofRecord]:
    """n new proofs from one or more earlier proofs, each shown with some of its analyses.
    An analysis may also be a proof's own self evaluation (sequential refinement)."""
    rendered = [(proof_for_verification(p.solution or p.raw or ""),
                 [a.analysis or a.raw or "" for a in analyses]) for p, analyses in candidates]
    messages = refinement_messages(problem, rendered, templates)
    samples = await model.sample(messages, sampling, n, start=start, tag="refine")
    parents = [p.id for p, _ in candidates]
    used = [a.id for _, analyses in candidates for a in analyses]
    return _proof_records(problem, samples, parents, used)


async def verify(model: Model, problem: str, proof: ProofRecord | str, *,
                 sampling: Sampling = DEFAULT_SAMPLING, n: int = 1, start: int = 0,
                 templates: Templates | None = None) -> Verification:
    """n verifier analyses of one proof. The verifier sees the solution only: no reasoning and
    no self evaluation."""
    if isinstance(proof, str):
        proof_id, text = text_id(proof), proof_for_verification(proof)
    else:
        proof_id, text = proof.id, proof_for_verification(proof.solution or proof.raw or "")
    samples = await model.sample(verification_messages(problem, text, templates), sampling, n,
                                 start=start, tag="verify")
    analyses = [AnalysisRecord(proof_id=proof_id, **record_fields(s, parse_verification)) for s in samples]
    return Verification(proof_id=proof_id, analyses=analyses)


async def meta_verify(model: Model, problem: str, proof: ProofRecord | str, analysis: AnalysisRecord | str,
                      *, sampling: Sampling = DEFAULT_SAMPLING, m: int = 1, start: int = 0,
                      templates: Templates | None = None) -> list[MetaRecord]:
    """m meta-verifier ratings of one analysis: are the issues it claims real?"""
    proof_text = proof if isinstance(proof, str) else (proof.solution or proof.raw or "")
    if isinstance(analysis, str):
        analysis_id, analysis_text = text_id(analysis), analysis
    else:
        analysis_id, analysis_text = analysis.id, analysis.analysis or analysis.raw or ""
    messages = meta_verification_messages(problem, proof_for_verification(proof_text), analysis_text, templates)
    samples = await model.sample(messages, sampling, m, start=start, tag="meta_verify")
    records = []
    for s in samples:
        fields = record_fields(s, parse_meta_verification)
        fields["rating"] = fields.pop("score", None)  # the meta-verifier rates an analysis
        records.append(MetaRecord(analysis_id=analysis_id, **fields))
    return records

"""A domain pack's executable evidence inside searches and labelling: for a pack that has
evidence (the code pack's sandboxed test run), each candidate's evidence is computed once,
shown to that candidate's verifier and meta-verifier, and kept in the proof's meta.

`evidence_view` gives the runner the search.base / label hook (roles.records.ProblemView), or
None for a pack without evidence: mathematics sends the very same prompts as before. A resume
reads the kept evidence back before anything is replayed, so a replayed verification sends
the same prompt (a call-cache hit) and the sandbox does not run again.

    >>> from proofloop.packs import get_pack
    >>> evidence_view(get_pack("math"), None, "r", {}) is None   # no evidence: no hook at all
    True
"""

from __future__ import annotations

import asyncio
from typing import Any

from proofloop.packs import Pack, shown_with_evidence
from proofloop.roles.records import ProofRecord
from proofloop.store import Store

RECORD, TEXT = "evidence", "evidence_text"  # the keys of a proof's meta that hold its evidence


class ProofEvidence:
    """The problem as each proof's verifier sees it (a ProblemView), the evidence computed once
    per proof (concurrent verifications of one proof share the run) and stored with the proof.
    `kept` (proof id -> meta) is shared with the StoreRecorder, which keeps these keys when it
    records a proof again (a resume replays the search and re-records every proof)."""

    def __init__(self, pack: Pack, store: Store, run_id: str, kept: dict[str, dict[str, Any]]):
        self.pack, self.store, self.run_id, self.kept = pack, store, run_id, kept
        self.texts: dict[str, str | None] = {}
        self.pending: dict[str, asyncio.Task[None]] = {}
        for proof in store.proofs(run_id):  # what an earlier execution found
            if RECORD in proof.meta:
                self.texts[proof.id] = proof.meta.get(TEXT)
                kept[proof.id] = {RECORD: proof.meta[RECORD], TEXT: proof.meta.get(TEXT)}

    async def __call__(self, problem: str, proof: ProofRecord) -> str:
        if proof.id not in self.texts:
            if proof.id not in self.pending:
                self.pending[proof.id] = asyncio.create_task(self.compute(problem, proof))
            await asyncio.shield(self.pending[proof.id])
        return shown_with_evidence(problem, self.texts[proof.id])

    async def compute(self, problem: str, proof: ProofRecord) -> None:
        # In a thread: a sandboxed test run takes up to its time limit, and other calls go on.
        assert self.pack.evidence is not None
        found = await asyncio.to_thread(self.pack.evidence, problem, proof.solution or proof.raw or "")
        meta = {RECORD: found.record if found else None, TEXT: found.text if found else None}
        self.kept[proof.id] = meta
        self.store.merge_proof_meta(self.run_id, proof.id, meta)
        self.texts[proof.id] = meta[TEXT]


def evidence_view(pack: Pack, store: Store | None, run_id: str,
                  kept: dict[str, dict[str, Any]]) -> ProofEvidence | None:
    """The hook for a run of `pack` (None when the pack has no evidence)."""
    if pack.evidence is None or store is None:
        return None
    return ProofEvidence(pack, store, run_id, kept)

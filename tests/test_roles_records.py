"""The three record types of the roles share RoleRecord: the same fields, the same `ok`, and
the sample's usage, whether the call succeeded or failed."""

from __future__ import annotations

import asyncio

import pytest

from proofloop.errors import ServerError
from proofloop.models.base import Sampling, Usage
from proofloop.models.base import RetryPolicy
from proofloop.models.pricing import Price
from proofloop.models.wrapper import Model
from proofloop.protocol.types import ParseStatus
from proofloop.roles import generate, meta_verify, verify
from proofloop.roles.records import AnalysisRecord, MetaRecord, ProofRecord, RoleRecord
from proofloop.sim.provider import SimProvider

SHARED = ["id", "status", "cause", "raw", "reasoning", "finish_reason", "completion_tokens", "usage"]
SAMPLING = Sampling(seed=0, max_tokens=200_000)


@pytest.mark.parametrize("record", [ProofRecord, AnalysisRecord, MetaRecord])
def test_each_record_is_a_role_record_with_the_shared_fields_first(record):
    assert issubclass(record, RoleRecord)
    assert list(record.model_fields)[:len(SHARED)] == SHARED


@pytest.mark.parametrize("status,ok", [(s, s is ParseStatus.OK) for s in ParseStatus])
def test_ok_means_status_ok_for_every_record(status, ok):
    made = [ProofRecord(id="p", problem="x", status=status), AnalysisRecord(id="a", proof_id="p", status=status),
            MetaRecord(id="m", analysis_id="a", status=status)]
    assert [r.ok for r in made] == [ok, ok, ok]


def test_records_made_by_calls_carry_their_samples_usage():
    model = Model(SimProvider(seed=3), pricing=Price(1.0, 0.1, 2.0))
    problem = "Prove that 1 + 1 = 2."
    proofs = asyncio.run(generate(model, problem, sampling=SAMPLING, n=3))
    analyses = asyncio.run(verify(model, problem, proofs[0], sampling=SAMPLING, n=2)).analyses
    metas = asyncio.run(meta_verify(model, problem, proofs[0], analyses[0], sampling=SAMPLING, m=2))
    records = [*proofs, *analyses, *metas]
    assert all(r.usage.completion_tokens == r.completion_tokens > 0 and r.usage.cost_usd > 0 for r in records)
    total = model.accounting.total
    assert sum(r.usage.prompt_tokens for r in records) == total.prompt_tokens
    assert sum(r.usage.cost_usd for r in records) == pytest.approx(total.cost_usd, rel=1e-9)


def test_a_failed_call_is_a_record_with_its_cause_and_nothing_spent():
    class Failing:
        name, model, max_n = "failing", "f-1", None

        async def complete(self, messages, sampling, n):
            raise ServerError("boom", status=500)

    model = Model(Failing(), retry=RetryPolicy(max_attempts=1), pricing=Price(1.0, 0.1, 2.0))
    [record] = asyncio.run(generate(model, "Prove that 1 + 1 = 2.", sampling=SAMPLING))
    assert record.status is ParseStatus.CALL_ERROR and "boom" in record.cause and not record.ok
    assert record.raw is None and record.usage == Usage(cost_usd=0.0)


def test_the_usage_survives_a_dump():
    r = AnalysisRecord(id="a", proof_id="p", status=ParseStatus.OK, usage=Usage(3, 4, 1, 0.5))
    assert AnalysisRecord.model_validate(r.model_dump()).usage == Usage(3, 4, 1, 0.5)

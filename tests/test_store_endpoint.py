"""Which server answered each call (llm_calls.endpoint, revision 0006): stored and read back,
summed per prompt by Store.served_by, and added to a store written before 0006 without
touching its calls (theirs stay NULL); on SQLite and on PostgreSQL (the `db` fixture).
affinity_share (models/replicas.py) over those sums is checked against a direct count."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from proofloop.models.base import Completion
from proofloop.models.cache import CallRecord
from proofloop.models.replicas import affinity_share
from proofloop.store import Store
from proofloop.store.migrate import HEAD
from proofloop.store.schema import SCHEMA_VERSION, Base


def call(key: str, prompt: str, endpoint: str | None, tag: str = "verify", namespace: str = "r-1") -> CallRecord:
    return CallRecord(key=key, namespace=namespace, model="m", provider="openai", sampling={}, index=0,
                      messages=[{"role": "user", "content": prompt}], completion=Completion(text="x"), tag=tag,
                      endpoint=endpoint)


def test_the_endpoint_is_stored_and_summed_per_prompt(db):
    with Store(db) as store:
        store.put_many([call("k1", "proof A", "http://a/v1"), call("k2", "proof A", "http://a/v1"),
                        call("k3", "proof A", "http://b/v1"), call("k4", "proof B", "http://b/v1"),
                        call("k5", "problem", "http://a/v1", tag="generate"),
                        call("k6", "proof A", "http://b/v1", namespace="r-other"), call("k7", "proof C", None)])
        assert [c.endpoint for c in store.calls(keys=["k1", "k4", "k7"])] == ["http://a/v1", "http://b/v1", None]
        verify = store.served_by("r-1", tag="verify")
        assert sorted(verify.values(), key=len) == [{"http://b/v1": 1}, {"http://a/v1": 2, "http://b/v1": 1}]
        assert len(store.served_by("r-1")) == 3  # the generation prompt too; proof C has no endpoint
        assert affinity_share(verify.values()) == pytest.approx(2 / 3)
        assert store.served_by("r-none") == {}


def test_a_store_at_revision_0005_gets_the_endpoint_column(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with Store(db) as store:
        store.put_many([call("old", "proof A", "http://a/v1")])
        sqlite = store.engine.dialect.name == "sqlite"
        with store.engine.begin() as con:  # as a store written before revision 0006 left it
            con.execute(text("ALTER TABLE llm_calls DROP COLUMN endpoint"))
            con.execute(text("UPDATE alembic_version SET version_num = '0005'"))
            if sqlite:
                con.execute(text("PRAGMA user_version = 5"))
    with Store(db) as store:
        assert [c.endpoint for c in store.calls()] == [None]  # the old call kept, its server unknown
        store.put_many([call("new", "proof A", "http://b/v1")])
        assert store.served_by("r-1") != {} and list(store.served_by("r-1").values()) == [{"http://b/v1": 1}]
        with store.engine.connect() as con:
            assert con.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD == "0006"
            assert compare_metadata(MigrationContext.configure(con), Base.metadata) == []
            if sqlite:
                assert con.execute(text("PRAGMA user_version")).scalar_one() == SCHEMA_VERSION == 6
        assert store.integrity_check() == "ok"


@given(st.lists(st.dictionaries(st.sampled_from("abc"), st.integers(1, 5), min_size=1), max_size=8))
def test_affinity_share_is_the_share_of_repeated_prompts_on_their_most_used_replica(served):
    samples = [(i, endpoint) for i, counts in enumerate(served) for endpoint, n in counts.items() for _ in range(n)]
    repeated = [i for i, counts in enumerate(served) if sum(counts.values()) >= 2]
    home = {i: max(served[i], key=lambda e: (served[i][e], e)) for i in repeated}  # a most-used replica
    on_home = sum(1 for i, endpoint in samples if home.get(i) == endpoint)
    share = affinity_share(served)
    if not repeated:
        assert share is None
    else:
        assert share == pytest.approx(on_home / sum(1 for i, _ in samples if i in repeated))
        assert 1 / 3 <= share <= 1.0

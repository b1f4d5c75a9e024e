"""Baseline: the store's schema as SQLite store v3 had it (PRAGMA user_version = 3).

Written down here, not taken from the models, so that later revisions start from a fixed point.
Every table and index is created only when missing: a file from before Alembic (v1 to v3,
brought to v3's columns by schema.MIGRATIONS first) gets the tables it lacks, the rest stays.

Revision ID: 0003
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = None
branch_labels = None
depends_on = None


def key(length: int) -> sa.types.TypeEngine:
    """A short string compared byte by byte on PostgreSQL too (schema.Key)."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def column(name: str, type_: sa.types.TypeEngine, nullable: bool = False, **kw) -> sa.Column:
    return sa.Column(name, type_, nullable=nullable, **kw)


def created_at() -> sa.Column:
    return column("created_at", sa.DateTime(timezone=True))


def from_call() -> sa.Column:
    return column("from_call", sa.Boolean(), server_default="0")


def of_proof(column_name: str = "proof_id") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id", column_name], ["proofs.run_id", "proofs.id"], ondelete="CASCADE")


def of_verification() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id", "verification_id"], ["verifications.run_id", "verifications.id"],
                                   ondelete="CASCADE")


def of_run() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE")


def table(name: str, *items: sa.schema.SchemaItem) -> None:
    op.create_table(name, *items, if_not_exists=True)


def index(name: str, table_name: str, *columns: str) -> None:
    op.create_index(name, table_name, list(columns), if_not_exists=True)


def upgrade() -> None:
    table("call_failures",
          column("id", sa.Integer(), autoincrement=True), column("key", key(200)), column("namespace", key(200)),
          column("model", key(200), True), column("tag", key(200), True), column("keys", sa.JSON(), True),
          column("n_keys", sa.Integer(), server_default="1"), column("attempt", sa.Integer()),
          column("kind", key(40)), column("status", sa.Integer(), True), column("message", sa.Text()),
          column("retryable", sa.Boolean(), True), column("retry_after", sa.Float(), True),
          column("latency_s", sa.Float(), True), column("created_at", sa.Float()),
          sa.PrimaryKeyConstraint("id"))
    index("ix_call_failures_key", "call_failures", "key")
    index("ix_call_failures_namespace", "call_failures", "namespace")
    table("prompts", column("sha", key(64)), column("messages", sa.JSON()), sa.PrimaryKeyConstraint("sha"))
    table("runs",
          column("id", key(40)), column("kind", key(40)), column("status", key(20)), created_at(),
          column("updated_at", sa.DateTime(timezone=True)), column("config", sa.JSON()),
          column("summary", sa.JSON(), True), column("error", sa.Text(), True), column("owner", key(200), True),
          column("expires_at", sa.Float(), True), sa.PrimaryKeyConstraint("id"))
    table("llm_calls",
          column("key", key(200)), column("namespace", key(200)), column("model", key(200)),
          column("provider", key(40)), column("sampling", sa.JSON()), column("prompt_sha", key(64)),
          column("sample_index", sa.Integer()), column("text", sa.Text()), column("reasoning", sa.Text(), True),
          column("finish_reason", key(40), True), column("sample_tokens", sa.Integer(), True),
          column("prompt_tokens", sa.Integer()), column("completion_tokens", sa.Integer()),
          column("cached_prompt_tokens", sa.Integer()), column("latency_s", sa.Float(), True),
          column("tag", key(200), True), column("cost_usd", sa.Float(), True), column("attempt", sa.Integer()),
          column("request_size", sa.Integer()), column("created_at", sa.Float()),
          sa.ForeignKeyConstraint(["prompt_sha"], ["prompts.sha"]), sa.PrimaryKeyConstraint("key"))
    index("ix_llm_calls_namespace", "llm_calls", "namespace")
    index("ix_llm_calls_usage", "llm_calls", "namespace", "tag", "prompt_tokens", "completion_tokens",
          "cached_prompt_tokens", "latency_s", "cost_usd")
    table("problems",
          column("id", sa.Integer(), autoincrement=True), column("run_id", key(40)), column("text_sha", key(64)),
          column("name", key(200), True), column("text", sa.Text()), column("meta", sa.JSON()), created_at(),
          of_run(), sa.PrimaryKeyConstraint("id"), sa.UniqueConstraint("run_id", "text_sha"))
    table("proofs",
          column("run_id", key(40)), column("id", key(200)), column("problem_id", sa.Integer()),
          column("raw", sa.Text()), column("reasoning", sa.Text(), True), column("solution", sa.Text(), True),
          column("self_evaluation", sa.Text(), True), column("self_score", sa.Float(), True),
          column("status", key(40)), column("cause", sa.Text(), True), column("finish_reason", key(40), True),
          column("round", sa.Integer(), True), column("thread", sa.Integer(), True),
          column("attempt", sa.Integer(), True), from_call(), column("meta", sa.JSON()), created_at(),
          sa.ForeignKeyConstraint(["problem_id"], ["problems.id"], ondelete="CASCADE"), of_run(),
          sa.PrimaryKeyConstraint("run_id", "id"))
    index("ix_proofs_problem", "proofs", "run_id", "problem_id")
    table("grades",
          column("run_id", key(40)), column("id", key(200)), column("proof_id", key(200)),
          column("grader", key(40)), column("raw", sa.Text(), True), column("grade", sa.Float(), True),
          column("max_grade", sa.Float()), column("normalised", sa.Float(), True), column("status", key(40)),
          column("cause", sa.Text(), True), column("meta", sa.JSON()), created_at(), of_proof(), of_run(),
          sa.PrimaryKeyConstraint("run_id", "id"))
    index("ix_grades_proof", "grades", "run_id", "proof_id")
    table("proof_lineage",
          column("run_id", key(40)), column("proof_id", key(200)), column("parent_proof_id", key(200)),
          of_proof("parent_proof_id"), of_proof(), sa.PrimaryKeyConstraint("run_id", "proof_id", "parent_proof_id"))
    table("verifications",
          column("run_id", key(40)), column("id", key(200)), column("proof_id", key(200)),
          column("raw", sa.Text()), column("reasoning", sa.Text(), True), column("analysis", sa.Text(), True),
          column("score", sa.Float(), True), column("status", key(40)), column("cause", sa.Text(), True),
          column("issues", sa.JSON()), from_call(), column("meta", sa.JSON()), created_at(), of_proof(), of_run(),
          sa.PrimaryKeyConstraint("run_id", "id"))
    index("ix_verifications_proof", "verifications", "run_id", "proof_id")
    table("meta_verifications",
          column("run_id", key(40)), column("id", key(200)), column("verification_id", key(200)),
          column("raw", sa.Text()), column("reasoning", sa.Text(), True), column("analysis", sa.Text(), True),
          column("rating", sa.Float(), True), column("status", key(40)), column("cause", sa.Text(), True),
          from_call(), column("meta", sa.JSON()), created_at(), of_verification(), of_run(),
          sa.PrimaryKeyConstraint("run_id", "id"))
    index("ix_meta_verifications_verification", "meta_verifications", "run_id", "verification_id")
    table("proof_refined_from_analyses",
          column("run_id", key(40)), column("proof_id", key(200)), column("verification_id", key(200)),
          of_proof(), of_verification(),
          sa.PrimaryKeyConstraint("run_id", "proof_id", "verification_id"))


def downgrade() -> None:
    for name in ("proof_refined_from_analyses", "meta_verifications", "verifications", "proof_lineage", "grades",
                 "proofs", "problems", "llm_calls", "runs", "prompts", "call_failures"):
        op.drop_table(name)

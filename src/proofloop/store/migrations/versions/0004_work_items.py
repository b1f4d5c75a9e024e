"""Work items: units of a run's work that several worker processes claim with an expiring lease.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def key(length: int) -> sa.types.TypeEngine:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table("work_items",
                    sa.Column("run_id", key(40), nullable=False), sa.Column("item", key(200), nullable=False),
                    sa.Column("owner", key(200), nullable=True), sa.Column("expires_at", sa.Float(), nullable=True),
                    sa.Column("claims", sa.Integer(), server_default="0", nullable=False),
                    sa.Column("done_by", key(200), nullable=True),
                    sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
                    sa.PrimaryKeyConstraint("run_id", "item"))


def downgrade() -> None:
    op.drop_table("work_items")

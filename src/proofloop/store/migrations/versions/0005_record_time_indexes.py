"""Each run's records in the order they were stored (proofs, verifications, meta-verifications,
grades by run_id, created_at): what a run's event stream reads each time it looks for news.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

from proofloop.store.schema import TIME_INDEXES

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table, name in TIME_INDEXES.items():
        op.create_index(name, table, ["run_id", "created_at"], if_not_exists=True)


def downgrade() -> None:
    for table, name in TIME_INDEXES.items():
        op.drop_index(name, table_name=table)

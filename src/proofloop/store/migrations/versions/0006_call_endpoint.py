"""Which server (replica base URL) answered each call: llm_calls.endpoint, NULL for the calls
stored before. With it a run's affinity share (the calls of one prompt served by one replica)
is read from the store, whichever processes made the calls.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Added only when missing, as the earlier revisions create what is missing: a store whose
    # recorded revision was set back (tests do that to replay 0005) may have it already.
    if "endpoint" in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("llm_calls")}:
        return
    endpoint = sa.String(500).with_variant(sa.String(500, collation="C"), "postgresql")
    op.add_column("llm_calls", sa.Column("endpoint", endpoint, nullable=True))


def downgrade() -> None:
    op.drop_column("llm_calls", "endpoint")

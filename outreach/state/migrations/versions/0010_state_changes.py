"""state changes: a customer-state table loaded from a file, for a running daemon to notice

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

from outreach.state.types import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "state_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("state_changes")

"""record versions: the earlier versions of customer-state records, kept as they are replaced

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

from outreach.state.types import JSONDocument, UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "record_versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("replaced_at", UTCDateTime(), nullable=False),
        sa.Column("data", JSONDocument, nullable=False),
    )
    op.create_index("ix_record_versions_record", "record_versions", ["table_name", "record_id", "replaced_at"])


def downgrade() -> None:
    op.drop_index("ix_record_versions_record", "record_versions")
    op.drop_table("record_versions")

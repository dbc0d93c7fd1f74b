"""test sends: messages sent to allow-listed addresses by send-test and the studio

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from outreach.state.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "test_sends",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("template", sa.String(), nullable=False),
        sa.Column("customer_id", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=True),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("locale", sa.String(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("provider_id", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_test_sends_sent_at", "test_sends", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_test_sends_sent_at", "test_sends")
    op.drop_table("test_sends")

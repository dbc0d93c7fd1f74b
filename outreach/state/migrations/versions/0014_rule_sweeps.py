"""rule sweeps: the last evaluation of each rule over every record, for the next to build on

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

from outreach.state.types import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_sweeps",
        sa.Column("rule", sa.String(), primary_key=True),
        sa.Column("condition", sa.String(), nullable=False),
        sa.Column("swept_at", UTCDateTime(), nullable=False),
        sa.Column("horizon", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rule_sweeps")

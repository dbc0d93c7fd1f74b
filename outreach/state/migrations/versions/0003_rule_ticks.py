"""rule ticks

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from outreach.state.types import UTCDateTime

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rule_ticks',
    sa.Column('rule', sa.String(), nullable=False),
    sa.Column('slot', UTCDateTime(), nullable=False),
    sa.Column('ticked_at', UTCDateTime(), nullable=False),
    sa.Column('worker', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('rule')
    )


def downgrade() -> None:
    op.drop_table('rule_ticks')

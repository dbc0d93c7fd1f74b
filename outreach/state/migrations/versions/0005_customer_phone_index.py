"""index customers by phone, for inbound SMS (STOP/START) from a number

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_customers_phone", "customers", ["phone"])


def downgrade() -> None:
    op.drop_index("ix_customers_phone", "customers")

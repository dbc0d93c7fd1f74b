"""sweep database: which database a rule sweep's horizon counts the transactions of

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A sweep recorded before this names no database, so it is not used: the next tick sweeps whole.
    with op.batch_alter_table("rule_sweeps") as batch:
        batch.add_column(sa.Column("database", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("rule_sweeps") as batch:
        batch.drop_column("database")

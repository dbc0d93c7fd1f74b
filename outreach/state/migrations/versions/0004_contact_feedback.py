"""contact feedback: the provider's delivery status and when a rule's goal was met

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from outreach.state.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("provider_status", sa.String(), nullable=True))
        batch.add_column(sa.Column("goal_met_at", UTCDateTime(), nullable=True))
    op.create_index("ix_contacts_provider_id", "contacts", ["provider_id"])
    op.create_index("ix_contacts_rule_decided", "contacts", ["rule", "decided_at"])


def downgrade() -> None:
    op.drop_index("ix_contacts_rule_decided", "contacts")
    op.drop_index("ix_contacts_provider_id", "contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("goal_met_at")
        batch.drop_column("provider_status")

"""respect between decision and send: when held contacts are decided again, feedback seen
once, tasks that carry what a person needs and can be closed

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from outreach.state.types import JSONDocument, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("recheck_at", UTCDateTime(), nullable=True))
    op.create_index("ix_contacts_recheck", "contacts", ["state", "recheck_at"])
    op.create_index("ix_contacts_rule_entity", "contacts", ["rule", "entity_id"])

    op.create_table(
        "inbound_events",
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", "event_id"),
    )

    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("detail", JSONDocument, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("closed_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("note", sa.String(), nullable=True))
        batch.add_column(sa.Column("webhook_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("webhook_next_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("webhook_next_at")
        batch.drop_column("webhook_attempts")
        batch.drop_column("note")
        batch.drop_column("closed_at")
        batch.drop_column("detail")
    op.drop_table("inbound_events")
    op.drop_index("ix_contacts_rule_entity", "contacts")
    op.drop_index("ix_contacts_recheck", "contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("recheck_at")

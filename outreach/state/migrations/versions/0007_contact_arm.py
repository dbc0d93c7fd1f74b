"""contact arm: the group of a rule's experiment (message or holdout) a match was assigned to

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from outreach.state.types import JSONDocument

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Every state a contact reaches only after policy drew it for the message (pending and after).
_MESSAGE_STATES = ("pending", "claimed", "sending", "sent", "failed", "cancelled", "unknown", "grouped")


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("arm", sa.String(), nullable=True))
    contacts = sa.table(
        "contacts", sa.column("id", sa.String()), sa.column("state", sa.String()),
        sa.column("arm", sa.String()), sa.column("steps", JSONDocument),
    )
    op.execute(contacts.update().where(contacts.c.state == "holdout").values(arm="holdout"))
    op.execute(contacts.update().where(contacts.c.state.in_(_MESSAGE_STATES)).values(arm="message"))
    # An expired row went past the holdout draw when policy dropped it for quiet hours or a delay
    # running past `expires` (its steps name the draw); held back until it expired, it did not.
    connection = op.get_bind()
    expired = connection.execute(sa.select(contacts.c.id, contacts.c.steps).where(contacts.c.state == "expired"))
    drawn = [cid for cid, steps in expired if any(step and step[0] == "holdout" for step in steps or [])]
    for start in range(0, len(drawn), 500):
        op.execute(contacts.update().where(contacts.c.id.in_(drawn[start : start + 500])).values(arm="message"))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("arm")

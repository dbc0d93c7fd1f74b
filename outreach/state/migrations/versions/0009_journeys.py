"""journeys: the step of a rule's journey a contact is, and the message a grouped match joined

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("step", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("group_key", sa.String(), nullable=True))
    op.create_index("ix_contacts_group_key", "contacts", ["group_key"])


def downgrade() -> None:
    op.drop_index("ix_contacts_group_key", "contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("group_key")
        batch.drop_column("step")

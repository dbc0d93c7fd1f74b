"""the ledger's per-match probes answered from an index alone

A tick's rule query carries "this rule has decided nothing about this record yet" for every
record whose condition holds (10^5 at a million customers): a search of (rule, entity_id),
then a read of each row found for its step. The index now holds the step, so the probe never
leaves it. And the goals of a tick were read from every contact of the rule; the contacts
still waiting for their goal now have an index of their own, by decision time, which a met
goal leaves.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

GOAL_OPEN = sa.text("arm IS NOT NULL AND goal_met_at IS NULL")


def upgrade() -> None:
    op.create_index("ix_contacts_rule_entity_step", "contacts", ["rule", "entity_id", "step"])
    op.drop_index("ix_contacts_rule_entity", "contacts")
    op.create_index(
        "ix_contacts_goal_open",
        "contacts",
        ["rule", "decided_at"],
        sqlite_where=GOAL_OPEN,
        postgresql_where=GOAL_OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_contacts_goal_open", "contacts")
    op.create_index("ix_contacts_rule_entity", "contacts", ["rule", "entity_id"])
    op.drop_index("ix_contacts_rule_entity_step", "contacts")

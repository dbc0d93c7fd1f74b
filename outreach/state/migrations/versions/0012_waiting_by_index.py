"""held-back contacts and journeys' next steps: found by index, so what waits costs nothing

A contact held back for want of a channel used to be looked at on every tick, against the
customer's addresses, consent and suppressions, and one held without a recheck time on every
tick too. From here on a held contact is found by its recheck time alone (one index search): a
change of the customer's reach marks the first kind due (`ledger.reachable_again`), and every
other held contact has a recheck time. The rows held so far without one are made due at once:
the next tick decides each again, and each then waits with a recheck time, or for a change.

A journey's next step used to be looked for among all the rule's sent contacts; now a sent
contact keeps its sent time in `next_step_from` until its next step is decided, and only those
are read. The contacts sent so far whose next step is not decided get theirs.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

from outreach.clock import EARLIEST
from outreach.state.types import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

contacts = sa.table(
    "contacts",
    sa.column("state", sa.String()),
    sa.column("recheck_at", UTCDateTime()),
    sa.column("rule", sa.String()),
    sa.column("entity_id", sa.String()),
    sa.column("step", sa.Integer()),
    sa.column("sent_at", UTCDateTime()),
    sa.column("next_step_from", UTCDateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("next_step_from", UTCDateTime(), nullable=True))
    later = contacts.alias("later")
    op.execute(
        sa.update(contacts)
        .where(
            contacts.c.state == "sent",
            contacts.c.sent_at.is_not(None),
            ~sa.exists().where(
                later.c.rule == contacts.c.rule,
                later.c.entity_id == contacts.c.entity_id,
                later.c.step == contacts.c.step + 1,
            ),
        )
        .values(next_step_from=contacts.c.sent_at)
    )
    only_open = sa.text("next_step_from IS NOT NULL")
    op.create_index(
        "ix_contacts_next_step",
        "contacts",
        ["rule", "step", "next_step_from"],
        sqlite_where=only_open,
        postgresql_where=only_open,
    )
    op.execute(
        sa.update(contacts)
        .where(contacts.c.state.in_(["skipped", "suppressed"]), contacts.c.recheck_at.is_(None))
        .values(recheck_at=sa.bindparam("due", EARLIEST, type_=UTCDateTime()))
    )


def downgrade() -> None:
    # The recheck times written stay valid: a due row is decided again as before.
    op.drop_index("ix_contacts_next_step", "contacts")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("next_step_from")

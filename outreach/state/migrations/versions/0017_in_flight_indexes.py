"""in-flight indexes: the due index holds only pending contacts; leases and failures their own

Revision ID: 0017
Revises: 0016

`ix_contacts_due` on (state, send_at) held an entry for every contact in every state, and every
change of state adds one (the update is not HOT: `state` is indexed). Marking a chunk `sending`
and recording its outcomes name their rows by id, but the planner, estimating few `claimed` or
`sending` rows, read them through that index instead: on PostgreSQL every entry a row left
behind in those states stays until vacuum, so the longer a send ran the more each chunk read
(30,000 messages: 1.4 ms a chunk to record outcomes at the start, 5.4 ms at the end). Now the
due index holds pending contacts only, in the order the claim takes them (highest priority,
then the earliest due), so a claim reads the batch it takes rather than every due contact
and a sort of them (81 ms a claim of 128 with 70,000 due); the lease index the rows a
dispatcher holds (what recovery and renewal read); the failed index what a reload revives.
A query that names only `state = 'claimed'` (or `sending`) can use none of them, so a chunk's
rows are found by their primary key. The queries compare `state` with a literal, which both
databases need to use an index of one state.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# (index, columns, rows indexed)
PARTIAL: tuple[tuple[str, list[str | sa.TextClause], str], ...] = (
    ("ix_contacts_due", [sa.text("priority DESC"), "send_at"], "state = 'pending'"),
    ("ix_contacts_leased", ["lease_until"], "lease_until IS NOT NULL"),
    ("ix_contacts_failed", ["last_error"], "state = 'failed'"),
)


def upgrade() -> None:
    op.drop_index("ix_contacts_due", "contacts")
    for name, columns, where in PARTIAL:
        predicate = sa.text(where)
        op.create_index(name, "contacts", columns, sqlite_where=predicate, postgresql_where=predicate)


def downgrade() -> None:
    for name, _columns, _where in PARTIAL:
        op.drop_index(name, "contacts")
    op.create_index("ix_contacts_due", "contacts", ["state", "send_at"])

"""partial contact indexes: the provider id, group key and recheck time indexed where set

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# (index, columns, the column that is NULL in most rows)
PARTIAL = (
    ("ix_contacts_provider_id", ["provider_id"], "provider_id"),
    ("ix_contacts_group_key", ["group_key"], "group_key"),
    ("ix_contacts_recheck", ["state", "recheck_at"], "recheck_at"),
)


def upgrade() -> None:
    # Every query these serve compares the column (=, IN, <=), which implies IS NOT NULL on both
    # databases, so the planner still uses them; a decision row without the value adds no entry.
    for name, columns, column in PARTIAL:
        op.drop_index(name, "contacts")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "contacts", columns, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for name, columns, _column in PARTIAL:
        op.drop_index(name, "contacts")
        op.create_index(name, "contacts", columns)

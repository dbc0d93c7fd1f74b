"""customer state: customers, orders, checkouts, survey responses

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from outreach.state.types import JSONDocument, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json() -> sa.Column[Any]:
    return sa.Column("attributes", JSONDocument, nullable=False)


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("phone", sa.String(), nullable=True),
        sa.Column("locale", sa.String(), nullable=False),
        sa.Column("timezone", sa.String(), nullable=False),
        sa.Column("preferred_channel", sa.String(), nullable=True),
        sa.Column("email_opt_in", sa.Boolean(), nullable=False),
        sa.Column("sms_opt_in", sa.Boolean(), nullable=False),
        _json(),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("customer_id", sa.String(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("placed_at", UTCDateTime(), nullable=True),
        sa.Column("promised_at", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("total", sa.Float(), nullable=True),
        sa.Column("currency", sa.String(), nullable=True),
        sa.Column("carrier", sa.String(), nullable=True),
        sa.Column("tracking_url", sa.String(), nullable=True),
        _json(),
    )
    op.create_index("ix_orders_customer_id", "orders", ["customer_id"])
    op.create_index(
        "ix_orders_undelivered_promised_at",
        "orders",
        ["promised_at"],
        sqlite_where=sa.text("delivered_at IS NULL"),
        postgresql_where=sa.text("delivered_at IS NULL"),
    )
    op.create_table(
        "checkouts",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("customer_id", sa.String(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("cart_value", sa.Float(), nullable=True),
        sa.Column("currency", sa.String(), nullable=True),
        sa.Column("items", JSONDocument, nullable=False),
        sa.Column("recovery_url", sa.String(), nullable=True),
        _json(),
    )
    op.create_index("ix_checkouts_customer_id", "checkouts", ["customer_id"])
    op.create_index(
        "ix_checkouts_open_started_at",
        "checkouts",
        ["started_at"],
        sqlite_where=sa.text("completed_at IS NULL"),
        postgresql_where=sa.text("completed_at IS NULL"),
    )
    op.create_table(
        "survey_responses",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("customer_id", sa.String(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("comment", sa.String(), nullable=True),
        sa.Column("responded_at", UTCDateTime(), nullable=True),
        _json(),
    )
    op.create_index("ix_survey_responses_customer_id", "survey_responses", ["customer_id"])
    op.create_index("ix_survey_responses_responded_at", "survey_responses", ["responded_at"])


def downgrade() -> None:
    op.drop_table("survey_responses")
    op.drop_table("checkouts")
    op.drop_table("orders")
    op.drop_table("customers")

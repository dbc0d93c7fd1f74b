"""Customer state: the four tables of the contract, as SQLModel classes.

Instants are `UTCDateTime` (aware UTC in Python). Money is stored as double precision: the rule
language compares amounts as numbers and templates format them with the currency's rounding.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, text
from sqlmodel import Field, SQLModel

from outreach.state.types import JSONDocument, UTCDateTime

ORDER_STATUSES = ("placed", "shipped", "delivered", "cancelled")
SURVEY_KINDS = ("nps", "csat", "ces")
CHANNELS = ("email", "sms")


def _json_column() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSONDocument, nullable=False))


def _instant(nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


class Customer(SQLModel, table=True):
    __tablename__ = "customers"

    id: str = Field(primary_key=True)
    name: str = ""
    email: str | None = None
    phone: str | None = Field(default=None, index=True)  # inbound SMS finds its customer by number
    locale: str = "en"
    timezone: str = "UTC"
    preferred_channel: str | None = None
    email_opt_in: bool = False
    sms_opt_in: bool = False
    attributes: dict[str, Any] = _json_column()


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        # late-delivery: undelivered orders by promise date.
        Index(
            "ix_orders_undelivered_promised_at",
            "promised_at",
            sqlite_where=text("delivered_at IS NULL"),
            postgresql_where=text("delivered_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    status: str = "placed"
    placed_at: datetime | None = _instant()
    promised_at: datetime | None = _instant()
    delivered_at: datetime | None = _instant()
    total: float | None = None
    currency: str | None = None
    carrier: str | None = None
    tracking_url: str | None = None
    attributes: dict[str, Any] = _json_column()


class Checkout(SQLModel, table=True):
    __tablename__ = "checkouts"
    __table_args__ = (
        # stalled-checkout: open checkouts by start time.
        Index(
            "ix_checkouts_open_started_at",
            "started_at",
            sqlite_where=text("completed_at IS NULL"),
            postgresql_where=text("completed_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    started_at: datetime | None = _instant()
    completed_at: datetime | None = _instant()
    cart_value: float | None = None
    currency: str | None = None
    items: list[Any] = Field(default_factory=list, sa_column=Column(JSONDocument, nullable=False))
    recovery_url: str | None = None
    attributes: dict[str, Any] = _json_column()


class SurveyResponse(SQLModel, table=True):
    __tablename__ = "survey_responses"
    __table_args__ = (
        # detractor-follow-up: recent responses of a kind.
        Index("ix_survey_responses_responded_at", "responded_at"),
    )

    id: str = Field(primary_key=True)
    customer_id: str = Field(foreign_key="customers.id", index=True)
    kind: str = "nps"
    score: int | None = None
    comment: str | None = None
    responded_at: datetime | None = _instant()
    attributes: dict[str, Any] = _json_column()


STATE_TABLES: dict[str, type[SQLModel]] = {
    "customers": Customer,
    "orders": Order,
    "checkouts": Checkout,
    "survey_responses": SurveyResponse,
}

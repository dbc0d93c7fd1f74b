"""Customer state: the four tables of the contract, as SQLModel classes.

Instants are `UTCDateTime` (aware UTC in Python). Money is stored as double precision: the rule
language compares amounts as numbers and templates format them with the currency's rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Column, Index, text
from sqlmodel import Field, SQLModel

from outreach.state.types import JSONDocument, UTCDateTime
from outreach.vocabulary import About

ORDER_STATUSES = ("placed", "shipped", "delivered", "cancelled")
SURVEY_KINDS = ("nps", "csat", "ces")


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


class StateChange(SQLModel, table=True):
    """A customer-state table was loaded from a file (`outreach ingest`): a running daemon, which
    reads these every dispatch round, evaluates at once the rules about that table."""

    __tablename__ = "state_changes"

    id: int | None = Field(default=None, primary_key=True)
    table_name: str
    changed_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class RecordVersion(SQLModel, table=True):
    """An earlier version of a customer-state record, kept when an ingest or `POST /events`
    replaced it: what the record held until `replaced_at` (`outreach.state.history`)."""

    __tablename__ = "record_versions"
    __table_args__ = (Index("ix_record_versions_record", "table_name", "record_id", "replaced_at"),)

    id: int | None = Field(default=None, primary_key=True)
    table_name: str
    record_id: str
    replaced_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    data: dict[str, Any] = _json_column()  # every field of the record, as JSON (instants in ISO 8601)


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a table model (SQLModel sets `__table__` at class creation, untyped)."""
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]  # set by SQLModel's metaclass


@dataclass(frozen=True)
class StateTable:
    """One table of customer state: what rules call it (`about`), its name, its model."""

    about: About
    name: str
    model: type[SQLModel]

    @property
    def table(self) -> sa.Table:
        return table_of(self.model)


# The one registry of the customer-state tables, in load order (customers first).
STATE_TABLES: tuple[StateTable, ...] = (
    StateTable(About.CUSTOMER, "customers", Customer),
    StateTable(About.ORDER, "orders", Order),
    StateTable(About.CHECKOUT, "checkouts", Checkout),
    StateTable(About.SURVEY, "survey_responses", SurveyResponse),
)
BY_ABOUT: dict[About, StateTable] = {t.about: t for t in STATE_TABLES}
BY_NAME: dict[str, StateTable] = {t.name: t for t in STATE_TABLES}
TABLE_NAMES: tuple[str, ...] = tuple(BY_NAME)


def entity_table(about: str) -> sa.Table:
    """The table of the records a rule about ABOUT matches (`order` → orders)."""
    return BY_ABOUT[About(about)].table


def named_table(name: str) -> sa.Table:
    """A customer-state table by its name (`orders`)."""
    return BY_NAME[name].table

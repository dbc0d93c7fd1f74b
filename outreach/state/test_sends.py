"""Test sends: messages a marketer sent to an allow-listed address with `send-test` or the studio.

Kept apart from the contacts ledger on purpose: a test is no contact, so it is never counted
against a customer's caps, never deduplicated against real contacts, and never retried.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from outreach.state.models import table_of
from outreach.state.types import UTCDateTime


class TestSend(SQLModel, table=True):
    """One test message: what was rendered as whom, where it went and what the provider said."""

    __test__ = False  # not a pytest test class, whatever its name
    __tablename__ = "test_sends"

    id: str = Field(primary_key=True)
    sent_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    rule: str  # the rule, or the template when a template no rule uses was tested
    template: str
    customer_id: str  # as whom it was rendered (a customer of the database or a bundled sample)
    record_id: str | None = None
    channel: str
    recipient: str  # the allow-listed address it was sent to
    locale: str
    outcome: str  # "sent" | "failed"
    provider: str | None = None
    provider_id: str | None = None
    error: str | None = None


test_sends = table_of(TestSend)


def record_test_send(connection: Connection, **fields: Any) -> None:
    """Write one test send."""
    connection.execute(sa.insert(test_sends).values(**fields))


def recent_test_sends(connection: Connection, limit: int = 20) -> list[dict[str, Any]]:
    """The newest test sends first."""
    query = sa.select(test_sends).order_by(test_sends.c.sent_at.desc(), test_sends.c.id).limit(limit)
    return [dict(row) for row in connection.execute(query).mappings()]

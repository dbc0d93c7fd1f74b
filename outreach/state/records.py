"""Customer state as delivery reads and feedback changes it: records by id as plain values, consent."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from outreach.memory import collector_paused
from outreach.state.among import among
from outreach.state.models import StateChange, entity_table, table_of

Record = dict[str, Any]


def rows_by_id(
    connection: Connection, about: str, ids: Iterable[str], fields: Sequence[str] | None = None
) -> dict[str, Record]:
    """Rows of the `about` entity's table (customer, order, …) by id, as plain dicts: every
    column, or only `id` and FIELDS (a customer's attributes are JSON, decoded for each row)."""
    table = entity_table(about)
    wanted = sorted(set(ids))
    found: dict[str, Record] = {}
    if not wanted:
        return found
    columns = (
        list(table.c) if fields is None else [table.c.id, *(table.c[name] for name in fields if name != "id")]
    )
    names = [column.name for column in columns]
    with collector_paused():
        query = sa.select(*columns).where(among(connection.dialect.name, table.c.id, wanted))
        for row in connection.execute(query).all():  # one driver call
            found[row[0]] = dict(zip(names, row, strict=True))
    return found


# What deciding reads of a customer: how to reach them, with what consent, in which time zone.
RECIPIENT_FIELDS = ("id", "timezone", "preferred_channel", "email", "phone", "email_opt_in", "sms_opt_in")


def recipients_by_id(connection: Connection, ids: Iterable[str]) -> dict[str, Record]:
    """The RECIPIENT_FIELDS of these customers, by id (not their attributes: a tick reads
    every matched customer, and decoding JSON it does not use would cost it)."""
    return rows_by_id(connection, "customer", ids, RECIPIENT_FIELDS)


def records_of_customer(connection: Connection, about: str, customer_id: str) -> list[Record]:
    """Every record of kind ABOUT that belongs to CUSTOMER_ID (the customer itself for `customer`), by id."""
    table = entity_table(about)
    owner = table.c.id if about == "customer" else table.c.customer_id
    query = sa.select(table).where(owner == customer_id).order_by(table.c.id)
    return [dict(row) for row in connection.execute(query).mappings()]


def customers_with_phone(connection: Connection, phone: str) -> list[str]:
    """Ids of the customers whose phone (E.164) is PHONE."""
    customers = entity_table("customer")
    query = sa.select(customers.c.id).where(customers.c.phone == phone).order_by(customers.c.id)
    return [str(customer_id) for customer_id in connection.execute(query).scalars()]


def customers_with_email(connection: Connection, email: str) -> list[str]:
    """Ids of the customers whose email address is EMAIL (compared without case)."""
    customers = entity_table("customer")
    query = (
        sa.select(customers.c.id)
        .where(sa.func.lower(customers.c.email) == email.strip().lower())
        .order_by(customers.c.id)
    )
    return [str(customer_id) for customer_id in connection.execute(query).scalars()]


def set_sms_consent(connection: Connection, customer_id: str, consent: bool) -> None:
    """Grant or withdraw a customer's SMS consent (STOP, START, an unsubscribed number)."""
    customers = entity_table("customer")
    connection.execute(sa.update(customers).where(customers.c.id == customer_id).values(sms_opt_in=consent))


def note_change(connection: Connection, table: str, now: datetime) -> None:
    """Record that TABLE was loaded (in the loading transaction)."""
    connection.execute(sa.insert(table_of(StateChange)).values(table_name=table, changed_at=now))


def changes_since(connection: Connection, after: int | None) -> tuple[int, set[str]]:
    """The newest change id and the tables loaded since AFTER (all of them: None reads only the id)."""
    changes = table_of(StateChange)
    newest = connection.execute(sa.select(sa.func.max(changes.c.id))).scalar_one_or_none() or 0
    if after is None or newest <= after:
        return int(newest), set()
    query = sa.select(changes.c.table_name).where(changes.c.id > after).distinct()
    return int(newest), {str(name) for name in connection.execute(query).scalars()}

"""Reading customer state for delivery: the records of matched customers, by id, as plain values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from outreach.memory import collector_paused
from outreach.state.models import entity_table

Record = dict[str, Any]


def rows_by_id(connection: Connection, about: str, ids: Iterable[str]) -> dict[str, Record]:
    """Rows of the `about` entity's table (customer, order, …) by id, as plain dicts."""
    table = entity_table(about)
    wanted = sorted(set(ids))
    found: dict[str, Record] = {}
    with collector_paused():
        for start in range(0, len(wanted), 500):
            rows = connection.execute(sa.select(table).where(table.c.id.in_(wanted[start : start + 500])))
            for row in rows.mappings().all():
                found[row["id"]] = dict(row)
    return found


def records_of_customer(connection: Connection, about: str, customer_id: str) -> list[Record]:
    """Every record of kind ABOUT that belongs to CUSTOMER_ID (the customer itself for `customer`), by id."""
    table = entity_table(about)
    owner = table.c.id if about == "customer" else table.c.customer_id
    query = sa.select(table).where(owner == customer_id).order_by(table.c.id)
    return [dict(row) for row in connection.execute(query).mappings()]

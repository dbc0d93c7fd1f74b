"""The earlier versions of customer-state records, kept as outreach loads them.

When a load (`outreach ingest`, `POST /events`) changes a record that is already stored, the
row as it was is kept in `record_versions` with the instant it was replaced. From the first
time outreach stored a record, its versions then say exactly what it held at any instant:
`outreach backtest` replays past ticks on them. A record loaded again unchanged keeps nothing,
so a daily full export costs one lookup per record and no rows.

Versions hold every field of the row as JSON, instants as ISO 8601 text (`encode`/`decode`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from outreach.state.models import RecordVersion, named_table, table_of
from outreach.state.types import UTCDateTime

record_versions = table_of(RecordVersion)

Row = dict[str, Any]


def keep_replaced(
    connection: Connection, table: str, rows: Sequence[Mapping[str, Any]], at: datetime
) -> list[str]:
    """Before ROWS (clean records, each with the fields it gives) are written to TABLE, keep the
    stored version of each record they change, replaced at AT. Returns the ids of those records.

    A record given twice in ROWS keeps one version, the one stored before them.
    """
    given = sorted({name for row in rows for name in row})
    # Only the fields given are compared, as plain tuples; the whole row is read for the
    # records that changed.
    stored = _stored(connection, table, [row["id"] for row in rows], given)
    position = {name: index for index, name in enumerate(given)}
    changed: list[str] = []
    for row in rows:
        old = stored.get(row["id"])
        if old is not None and any(old[position[name]] != value for name, value in row.items()):
            changed.append(row["id"])
            del stored[row["id"]]
    if not changed:
        return changed
    names = list(named_table(table).c.keys())
    whole = {
        record_id: dict(zip(names, values, strict=True))
        for record_id, values in _stored(connection, table, changed, names).items()
    }
    connection.execute(
        sa.insert(record_versions),
        [
            {"table_name": table, "record_id": record_id, "replaced_at": at, "data": encode(whole[record_id])}
            for record_id in changed
        ],
    )
    return changed


def versions(connection: Connection, table: str) -> dict[str, list[tuple[datetime, Row]]]:
    """Every kept version of TABLE's records: id → [(replaced_at, row)], oldest first."""
    query = (
        sa.select(record_versions.c.record_id, record_versions.c.replaced_at, record_versions.c.data)
        .where(record_versions.c.table_name == table)
        .order_by(record_versions.c.record_id, record_versions.c.replaced_at, record_versions.c.id)
    )
    found: dict[str, list[tuple[datetime, Row]]] = {}
    for record_id, replaced_at, data in connection.execute(query):
        found.setdefault(record_id, []).append((replaced_at, decode(table, data)))
    return found


def current_rows(connection: Connection, table: str, *, chunk: int = 5000) -> Iterator[Row]:
    """TABLE's rows as they are now, streamed in id order."""
    target = named_table(table)
    result = connection.execution_options(stream_results=True, yield_per=chunk).execute(
        sa.select(target).order_by(target.c.id)
    )
    for row in result.mappings():
        yield dict(row)


def encode(row: Mapping[str, Any]) -> dict[str, Any]:
    """ROW as JSON values: instants as ISO 8601 text, the rest as they are."""
    return {name: value.isoformat() if isinstance(value, datetime) else value for name, value in row.items()}


def decode(table: str, data: Mapping[str, Any]) -> Row:
    """A row of TABLE from `encode`'s JSON: instants back to aware datetimes."""
    instants = _instant_columns(table)
    return {
        name: datetime.fromisoformat(value) if name in instants and isinstance(value, str) else value
        for name, value in data.items()
    }


@lru_cache(maxsize=8)
def _instant_columns(table: str) -> frozenset[str]:
    return frozenset(c.name for c in named_table(table).c if isinstance(c.type, UTCDateTime))


def _stored(
    connection: Connection, table: str, ids: Sequence[str], columns: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """The COLUMNS (in that order) of the stored rows among IDS, by id: one query, the ids as one
    parameter (as ingest looks up customers)."""
    if not ids:
        return {}
    target = named_table(table)
    wanted = sorted(set(ids))
    if connection.dialect.name == "postgresql":
        condition = target.c.id == sa.any_(sa.bindparam("ids", wanted, type_=postgresql.ARRAY(sa.String)))
    else:
        condition = target.c.id.in_(
            sa.select(sa.column("value")).select_from(
                sa.func.json_each(sa.bindparam("ids", json.dumps(wanted)))
            )
        )
    query = sa.select(target.c.id, *(target.c[name] for name in columns)).where(condition)
    return {row[0]: tuple(row[1:]) for row in connection.execute(query)}

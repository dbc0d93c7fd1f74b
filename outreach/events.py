"""Customer-state records that arrive while the daemon runs (`POST /events`): read, checked, loaded.

A request is validated with the same rules as `outreach ingest` and loaded whole or not at all.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from outreach.errors import Problem
from outreach.state.ingest import FIELDS, TABLES, Numbered, load_records

MAX_EVENT_RECORDS = 10_000


def bearer_ok(expected: str, authorization: str | None) -> bool:
    """True if the Authorization header carries EXPECTED as a bearer token (compared in constant time)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


@dataclass(frozen=True)
class EventsBatch:
    """The records of one `POST /events`, numbered from 0; LABEL names them in problems."""

    table: str
    records: tuple[Numbered, ...]
    label: str


def parse_events(document: Any) -> EventsBatch | list[str]:
    """`{"table": T, "records": [...]}` or one record with its `table` → a batch, or what is wrong."""
    if not isinstance(document, dict):
        return ['the body must be a JSON object: {"table": "orders", "records": [...]}']
    table = document.get("table")
    if not isinstance(table, str) or table not in FIELDS:
        said = "is missing" if table is None else f"{table!r} is not a table"
        return [f"table {said} (one of {', '.join(TABLES)})"]
    if "records" in document:
        records = document["records"]
        extra = sorted(set(document) - {"table", "records"})
        if extra:
            return [f"unknown field {name!r} next to records" for name in extra]
        if not isinstance(records, list):
            return ["records must be a list of objects"]
        if len(records) > MAX_EVENT_RECORDS:
            return [f"records: {len(records):,} records in one request; send at most {MAX_EVENT_RECORDS:,}"]
        label = "records"
    else:
        records = [{key: value for key, value in document.items() if key != "table"}]
        label = "record"
    numbered: list[Numbered] = []
    for index, record in enumerate(records):
        if isinstance(record, dict):
            numbered.append((index, record))
        else:
            numbered.append((index, Problem(label, index, None, "a record must be a JSON object")))
    return EventsBatch(table, tuple(numbered), label)


_FIELD_MESSAGE = re.compile(r"^([a-z_]+)(: | is | cannot )")


def problem_text(label: str, problem: Problem) -> str:
    """An ingest problem located in the request: `records[3].phone: …` (`record.phone: …` for one)."""
    where = label if label == "record" else f"{label}[{problem.line}]"
    match = _FIELD_MESSAGE.match(problem.message)
    if match:
        separator = ":" if match.group(2) == ": " else ""
        return f"{where}.{match.group(1)}{separator}{problem.message[match.end(1) + len(separator) :]}"
    return f"{where}: {problem.message}"


def load_events(engine: Engine, batch: EventsBatch, now: datetime | None = None) -> list[str]:
    """Validate and upsert a batch, all or nothing, with the ingest rules; every problem, or [] once
    written. NOW (default: the current time) stamps the versions of the records it replaces."""
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            report = load_records(
                connection, batch.table, batch.records, source=batch.label, max_problems=0, now=now
            )
        except BaseException:
            transaction.rollback()
            raise
        if report.rejected:
            transaction.rollback()
            return [problem_text(batch.label, problem) for problem in report.problems]
        transaction.commit()
    return []


def record_ids(batch: EventsBatch) -> list[str]:
    """The ids of a loaded batch's records (as ingest stored them)."""
    return [
        str(record["id"]) for _index, record in batch.records if isinstance(record, dict) and "id" in record
    ]

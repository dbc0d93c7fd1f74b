"""Bundled sample customers for `outreach demo`: English and Arabic names, five time zones.

The JSONL files here are ordinary ingest files whose times are written as if it were
`ANCHOR` (2025-01-01T12:00:00Z). `load_sample` shifts every instant by `now - ANCHOR`, so
whenever the demo runs the same records are late, stalled or recent: six late orders, five
stalled checkouts and four recent NPS detractors match the canonical rules, next to orders on
time, delivered or cancelled, completed or too fresh checkouts, and promoters. Each record's
`attributes.sample` says which case it is.

Phone numbers are in ranges reserved for drama where the numbering plan has them (London
020 7946 0xxx, New York 212 555 01xx); the Gulf and Egyptian plans have none, so those are
valid-looking numbers that only ever reach the outbox file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from sqlalchemy.engine import Engine

from outreach.errors import IngestError, Problem
from outreach.state.ingest import TABLES, upsert_rows, validate_record

ANCHOR = datetime(2025, 1, 1, 12, tzinfo=UTC)


@dataclass(frozen=True)
class SampleCounts:
    """How many records of each table the sample loaded."""

    customers: int
    orders: int
    checkouts: int
    survey_responses: int


def _records(table: str) -> Iterator[tuple[int, dict[str, Any]]]:
    text = resources.files(__package__).joinpath(f"{table}.jsonl").read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield number, json.loads(line)


def _shifted(row: dict[str, Any], delta: timedelta) -> dict[str, Any]:
    return {name: value + delta if isinstance(value, datetime) else value for name, value in row.items()}


def sample_rows(now: datetime) -> dict[str, list[dict[str, Any]]]:
    """The sample's clean rows per table, with times moved so that ANCHOR becomes NOW."""
    delta = now - ANCHOR
    rows: dict[str, list[dict[str, Any]]] = {}
    problems: list[Problem] = []
    for table in TABLES:
        rows[table] = []
        for number, record in _records(table):
            result = validate_record(table, record)
            if isinstance(result, list):
                problems += [Problem(f"outreach/sample/{table}.jsonl", number, None, m) for m in result]
            else:
                rows[table].append(_shifted(result, delta))
    if problems:  # only an edit to the bundled files can cause this
        raise IngestError(problems=problems)
    return rows


def load_sample(engine: Engine, now: datetime) -> SampleCounts:
    """Upsert the sample customers and their orders, checkouts and surveys, timed relative to NOW."""
    rows = sample_rows(now)
    with engine.begin() as connection:
        for table in TABLES:
            upsert_rows(connection, table, rows[table])
    return SampleCounts(**{table: len(rows[table]) for table in TABLES})

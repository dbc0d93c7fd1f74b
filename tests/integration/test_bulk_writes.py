"""Large writes of decisions and tasks, on SQLite and PostgreSQL: what is stored is each row as
given, and the upsert rules hold — whether the rows go through one executemany or, on
PostgreSQL, through COPY into a temporary table and one INSERT … SELECT."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from outreach.database_url import normalise_url
from outreach.state import bulk, ledger
from outreach.state.db import make_engine
from outreach.state.ingest import ingest_file, state_table
from outreach.state.migrate import upgrade
from tests.conftest import POSTGRES_URL
from tests.integration.test_ingest import write_jsonl

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
# More rows than a staged write needs, so that PostgreSQL takes that path.
ROWS = 2 * bulk.STAGED_FROM
# What COPY's text format must escape, and what JSON must carry.
AWKWARD = 'tab\there, newline\nthere, back\\slash, "quotes", \\N, تأخر الطلب'


def decision(n: int, **changes: Any) -> dict[str, Any]:
    row = {
        "id": ledger.new_id(),
        "dedupe_key": f"late-delivery:order:o-{n}",
        "rule": "late-delivery",
        "about": "order",
        "entity_id": f"o-{n}",
        "customer_id": f"c-{n % 97}",
        "channel": None if n % 5 == 0 else "sms",
        "state": "skipped" if n % 3 == 0 else "pending",
        "reason": f"{AWKWARD} #{n}",
        "priority": n % 4,
        "decided_at": NOW,
        "send_at": None if n % 3 == 0 else NOW + timedelta(seconds=n),
        "expires_at": NOW + timedelta(days=1),
        "recheck_at": NOW + timedelta(days=1) if n % 3 == 0 else None,
        "updated_at": NOW,
        "attempts": 0,
        "steps": [["dedupe", "first"], ["reason", AWKWARD]],
        "arm": None if n % 3 == 0 else "message",
        "step": 1,
        "group_key": None,
    }
    return row | changes


def stored(connection: sa.Connection) -> dict[str, dict[str, Any]]:
    rows = connection.execute(sa.select(ledger.contacts)).mappings()
    return {row["dedupe_key"]: dict(row) for row in rows}


def test_a_large_write_of_decisions_stores_each_row_as_given_and_decides_again_only_held_back_ones(
    engine: sa.Engine,
) -> None:
    first = [decision(n) for n in range(ROWS)]
    held = {row["dedupe_key"] for row in first if row["state"] == "skipped"}
    with engine.begin() as connection:  # twice in one transaction: nothing of the first is written again
        assert ledger.record_decisions(connection, first) == ROWS
        again = [decision(n, id=ledger.new_id(), reason=f"again #{n}", arm=None) for n in range(ROWS)]
        assert ledger.record_decisions(connection, again) == len(held)
        after = stored(connection)
    assert len(after) == ROWS
    for row in first:
        got = after[row["dedupe_key"]]
        if row["dedupe_key"] in held:
            assert got["reason"] == f"again {row['reason'].rpartition(' ')[2]}"
        else:
            assert {name: got[name] for name in row} == row


def test_a_write_naming_a_dedupe_key_twice_ends_as_one_row_after_the_other(engine: sa.Engine) -> None:
    rows = [decision(n) for n in range(ROWS)]
    # The same match twice: held back first, then decided again by the second row.
    rows[7] = decision(7, state="skipped", reason="first of two")
    rows[8] = decision(7, state="pending", reason="second of two", send_at=NOW)
    with engine.begin() as connection:
        assert ledger.record_decisions(connection, rows) == ROWS
        after = stored(connection)
    assert len(after) == ROWS - 1
    assert (after[rows[8]["dedupe_key"]]["state"], after[rows[8]["dedupe_key"]]["reason"]) == (
        "pending",
        "second of two",
    )


def test_a_large_write_of_tasks_opens_only_those_not_open_already_in_order(engine: sa.Engine) -> None:
    def task(n: int) -> dict[str, Any]:
        return ledger.task_row(
            f"detractor-follow-up:survey_response:s-{n}",
            "detractor-follow-up",
            f"c-{n}",
            f"s-{n}",
            f"NPS 2: {AWKWARD}",
            NOW,
            detail={"comment": AWKWARD, "score": 2},
        )

    with engine.begin() as connection:
        assert len(ledger.open_tasks(connection, [task(n) for n in range(0, ROWS, 4)])) == ROWS // 4
    rows = [task(n) for n in range(ROWS)]
    with engine.begin() as connection:
        opened = ledger.open_tasks(connection, rows)
        details = {t.dedupe_key: t.detail for t in ledger.list_tasks(connection)}
    assert opened == [row["id"] for n, row in enumerate(rows) if n % 4]
    assert len(details) == ROWS
    assert all(detail == {"comment": AWKWARD, "score": 2} for detail in details.values())


@pytest.mark.postgres
def test_a_role_that_may_not_create_temporary_tables_still_writes_large_batches(tmp_path: Path) -> None:
    """Where an administrator revoked TEMPORARY from PUBLIC, large writes are not staged: the
    same rows are written one statement each, and nothing fails."""
    if not POSTGRES_URL:
        pytest.skip("set OUTREACH_TEST_POSTGRES_URL to run the PostgreSQL tests")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        connection.exec_driver_sql(f'CREATE ROLE "{name}" LOGIN')
        connection.exec_driver_sql(f'REVOKE TEMPORARY ON DATABASE "{name}" FROM PUBLIC')
    url = sa.make_url(normalise_url(POSTGRES_URL)).set(database=name, username=name, password=None)
    owner = sa.create_engine(url.set(username=sa.make_url(normalise_url(POSTGRES_URL)).username))
    with owner.begin() as connection:
        connection.exec_driver_sql(f'GRANT ALL ON SCHEMA public TO "{name}"')
    owner.dispose()
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        upgrade(engine)
        people = write_jsonl(
            tmp_path / "customers.jsonl", [{"id": f"c-{n}", "name": AWKWARD} for n in range(ROWS)]
        )
        assert not ingest_file(engine, people).rejected
        with engine.begin() as connection:
            assert ledger.record_decisions(connection, [decision(n) for n in range(ROWS)]) == ROWS
            assert len(stored(connection)) == ROWS
            names = {row.name for row in connection.execute(sa.select(state_table("customers")))}
        assert names == {AWKWARD}
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            connection.exec_driver_sql(f'DROP ROLE "{name}"')
        admin.dispose()

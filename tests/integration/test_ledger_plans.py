"""How the database finds the rows of a send, on SQLite and PostgreSQL: a chunk's rows by their
primary key however long the send has run, and due, leased and failed contacts each by an index
of only those rows (migration 0017).

Each row changes state at every step of a send, and on PostgreSQL each change leaves an index
entry behind until vacuum. With an index on `state` the planner read a chunk's rows through
those entries, so the longer a send ran the more each chunk cost. The ledger here is what a
send leaves: thousands of rows that went through `claimed` and `sending`, analysed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from outreach.state import ledger
from tests.integration.test_bulk_writes import NOW, decision

WORKER = "w"
LEASE = timedelta(minutes=5)


@pytest.fixture
def sent_through(engine: Engine) -> Engine:
    """4,000 contacts due; 3,000 of them claimed, marked and recorded sent a chunk of 8 at a time."""
    rows = [decision(n, state="pending", send_at=NOW, recheck_at=None) for n in range(4000)]
    with engine.begin() as connection:
        connection.execute(sa.insert(ledger.contacts), rows)
        for _ in range(3000 // 120):
            claimed = ledger.claim_due(connection, WORKER, NOW, LEASE, 120)
            for start in range(0, len(claimed), 8):
                chunk = claimed[start : start + 8]
                ledger.mark_sending(connection, WORKER, [c.id for c in chunk], NOW, NOW + LEASE)
                ledger.finish(connection, WORKER, [ledger.Outcome(c, "sent", "sent") for c in chunk], NOW)
        failed = ledger.claim_due(connection, WORKER, NOW, LEASE, 20)
        ledger.finish(
            connection,
            WORKER,
            [ledger.Outcome(c, "failed", "no", last_error="render: x") for c in failed],
            NOW,
        )
        connection.execute(sa.text("ANALYZE contacts"))
    return engine


def plans_of(connection: Connection, run: Callable[[Connection], object]) -> list[str]:
    """The plans of the statements RUN executes on the contacts, as the database chose them for
    the statements and values given (RUN's own changes are rolled back)."""
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "contacts" in statement and not statement.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            # An executemany (SQLite) is planned the same for each row: the first stands for all.
            seen.append((statement, parameters[0] if many else parameters))

    event.listen(connection, "before_cursor_execute", capture)
    try:
        savepoint = connection.begin_nested()
        run(connection)
        savepoint.rollback()
    finally:
        event.remove(connection, "before_cursor_execute", capture)
    assert seen, "RUN executed nothing on the contacts"
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    plans = []
    try:
        for statement, parameters in seen:
            if connection.dialect.name == "postgresql":
                cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
                plans.append(json.dumps(cursor.fetchone()[0]))
            else:
                cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
                plans.append("\n".join(str(row[-1]) for row in cursor.fetchall()))
    finally:
        cursor.close()
    return plans


def plan_of(connection: Connection, run: Callable[[Connection], object]) -> str:
    """The plan of the one statement RUN executes on the contacts."""
    plans = plans_of(connection, run)
    assert len(plans) == 1, plans
    return plans[0]


def indexes_in(plan: str, connection: Connection) -> set[str]:
    if connection.dialect.name == "postgresql":
        found: set[str] = set()

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if "Index Name" in node:
                    found.add(node["Index Name"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(json.loads(plan))
        return found
    names = {"PRIMARY KEY": "contacts_pkey", "sqlite_autoindex_contacts_1": "contacts_pkey"}
    found = set()
    for line in plan.splitlines():
        if not line.startswith(("SEARCH contacts", "SCAN contacts")):
            continue
        if "USING" not in line:
            found.add("(table scan)")
        for key, name in names.items():
            if key in line:
                found.add(name)
        for word in line.replace("(", " ").split():
            if word.startswith("ix_contacts_"):
                found.add(word)
    return found


@pytest.fixture
def connection(sent_through: Engine) -> Iterator[Connection]:
    with sent_through.connect() as connection, connection.begin():
        yield connection


def claim(connection: Connection, count: int) -> list[ledger.Claimed]:
    return ledger.claim_due(connection, WORKER, NOW, LEASE, count)


def test_a_chunk_is_marked_sending_by_primary_key(connection: Connection) -> None:
    ids = [c.id for c in claim(connection, 8)]
    plan = plan_of(connection, lambda c: ledger.mark_sending(c, WORKER, ids, NOW, NOW + LEASE))
    assert indexes_in(plan, connection) == {"contacts_pkey"}, plan


def test_a_chunks_outcomes_are_recorded_by_primary_key(connection: Connection) -> None:
    chunk = claim(connection, 8)
    ledger.mark_sending(connection, WORKER, [c.id for c in chunk], NOW, NOW + LEASE)
    outcomes = [ledger.Outcome(c, "sent", "sent", provider="p", provider_id=c.id) for c in chunk]
    plan = plan_of(connection, lambda c: ledger.finish(c, WORKER, outcomes, NOW))
    assert indexes_in(plan, connection) == {"contacts_pkey"}, plan


def test_due_contacts_are_claimed_in_the_order_of_the_index_of_pending_ones(connection: Connection) -> None:
    """A claim reads the batch it takes: highest priority first, then the earliest due, as the
    index holds them — not every due contact and a sort of them."""
    claim = plan_of(connection, lambda c: ledger.claim_due(c, WORKER, NOW, LEASE, 100))
    assert "ix_contacts_due" in indexes_in(claim, connection), claim
    sorted_anew = '"Node Type": "Sort"' if connection.dialect.name == "postgresql" else "TEMP B-TREE"
    assert sorted_anew not in claim, claim


def test_leases_are_recovered_and_renewed_from_the_index_of_leased_rows(connection: Connection) -> None:
    claim(connection, 100)
    renew = plan_of(connection, lambda c: ledger.renew_lease(c, WORKER, NOW + LEASE, NOW))
    assert indexes_in(renew, connection) == {"ix_contacts_leased"}, renew
    # Leases run out: the claimed rows go back, the sending ones become unknown; one statement each.
    recover = plans_of(connection, lambda c: ledger.recover_leases(c, NOW + LEASE * 2))
    assert len(recover) == 2
    for plan in recover:
        assert indexes_in(plan, connection) == {"ix_contacts_leased"}, plan


def test_contacts_that_failed_to_render_are_found_from_the_index_of_failed_ones(
    connection: Connection,
) -> None:
    plan = plan_of(connection, lambda c: ledger.revive(c, "render: ", NOW))
    assert indexes_in(plan, connection) == {"ix_contacts_failed"}, plan

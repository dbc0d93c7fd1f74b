"""What a dispatcher records when its contacts end an attempt (`ledger.finish`), on SQLite and
PostgreSQL: each outcome exactly as given, on the rows the worker still owns and no others —
whether the outcomes go as one executemany (SQLite) or as one JSON document (PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from outreach.state import ledger
from tests.integration.test_bulk_writes import AWKWARD, decision

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SENT_AT = datetime(2026, 12, 7, 15, 0, 0, 123457, tzinfo=ZoneInfo("Asia/Riyadh"))  # 12:00:00.123457 UTC


def claimed(engine: Engine, count: int, worker: str = "w") -> list[ledger.Claimed]:
    rows = [
        decision(
            n, state="claimed", claimed_by=worker, channel="email", provider="earlier", last_error="before"
        )
        for n in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(ledger.contacts), rows)
    return [
        ledger.Claimed(
            id=row["id"],
            dedupe_key=row["dedupe_key"],
            rule=row["rule"],
            about=row["about"],
            entity_id=row["entity_id"],
            customer_id=row["customer_id"],
            channel=row["channel"],
            attempts=0,
            expires_at=row["expires_at"],
            step=1,
        )
        for row in rows
    ]


def rows_by_id(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.begin() as connection:
        return {row["id"]: dict(row) for row in connection.execute(sa.select(ledger.contacts)).mappings()}


def test_each_outcome_is_stored_exactly_and_unset_values_keep_the_row(engine: Engine) -> None:
    sent, failed, retried, skipped, moved = claimed(engine, 5)
    later = NOW + timedelta(minutes=7, microseconds=11)
    with engine.begin() as connection:
        ledger.finish(
            connection,
            "w",
            [
                ledger.Outcome(
                    sent, "sent", "sent by sendgrid", provider="sendgrid", provider_id="SG.1", sent_at=SENT_AT
                ),
                ledger.Outcome(failed, "failed", f"refused: {AWKWARD}", last_error=AWKWARD, code="21610"),
                ledger.Outcome(retried, "pending", "provider busy", send_at=later, last_error="429"),
                ledger.Outcome(skipped, "skipped", "over the daily cap"),
                ledger.Outcome(
                    moved, "sent", "sent on sms", provider="twilio", provider_id="SM1", channel="sms"
                ),
            ],
            NOW,
        )
    rows = rows_by_id(engine)

    assert rows[sent.id]["state"] == "sent"
    assert rows[sent.id]["sent_at"] == SENT_AT  # the same instant, to the microsecond
    assert rows[sent.id]["next_step_from"] == SENT_AT
    assert (rows[sent.id]["provider"], rows[sent.id]["provider_id"]) == ("sendgrid", "SG.1")
    assert rows[sent.id]["last_error"] == "before"  # unset: kept
    assert rows[sent.id]["channel"] == "email"

    assert rows[failed.id]["reason"] == f"refused: {AWKWARD}"
    assert rows[failed.id]["last_error"] == AWKWARD
    assert rows[failed.id]["provider"] == "earlier"

    assert rows[retried.id]["state"] == "pending"
    assert rows[retried.id]["send_at"] == later

    # Held back by the gate: decided again from now, unless the outcome says when.
    assert rows[skipped.id]["recheck_at"] == NOW

    assert rows[moved.id]["channel"] == "sms"

    for row in rows.values():
        assert row["claimed_by"] is None and row["lease_until"] is None
        assert row["updated_at"] == NOW


def test_rows_another_worker_took_over_are_left_alone(engine: Engine) -> None:
    (mine,) = claimed(engine, 1)
    with engine.begin() as connection:
        connection.execute(
            sa.update(ledger.contacts).where(ledger.contacts.c.id == mine.id).values(claimed_by="other")
        )
        ledger.finish(connection, "w", [ledger.Outcome(mine, "sent", "sent", provider_id="late")], NOW)
    row = rows_by_id(engine)[mine.id]
    assert (row["state"], row["claimed_by"], row["provider_id"]) == ("claimed", "other", None)


def test_a_contact_given_twice_gets_its_last_outcome(engine: Engine) -> None:
    (contact,) = claimed(engine, 1)
    with engine.begin() as connection:
        ledger.finish(
            connection,
            "w",
            [
                ledger.Outcome(contact, "pending", "provider busy", send_at=NOW),
                ledger.Outcome(contact, "failed", "gave up", last_error="timeout"),
            ],
            NOW,
        )
    row = rows_by_id(engine)[contact.id]
    assert (row["state"], row["reason"], row["last_error"]) == ("failed", "gave up", "timeout")


def test_a_naive_instant_is_refused_and_nothing_is_written(engine: Engine) -> None:
    (contact,) = claimed(engine, 1)
    naive = datetime(2026, 12, 7, 12, 0)
    with pytest.raises((ValueError, sa.exc.StatementError), match="aware"), engine.begin() as connection:
        ledger.finish(connection, "w", [ledger.Outcome(contact, "sent", "sent", sent_at=naive)], NOW)
    assert rows_by_id(engine)[contact.id]["state"] == "claimed"


def sending(engine: Engine, contacts: list[ledger.Claimed], worker: str = "w") -> None:
    with engine.begin() as connection:
        ledger.mark_sending(connection, worker, [c.id for c in contacts], NOW, NOW + timedelta(minutes=5))


@pytest.mark.postgres
def test_a_chunks_outcomes_and_the_next_chunks_marks_commit_as_one_statement(postgres_engine: Engine) -> None:
    """What the dispatcher commits between two chunks on PostgreSQL: the answers of the chunk on
    the wire and the marks of the next, together, on a connection in autocommit."""
    engine = postgres_engine
    contacts = claimed(engine, 6)
    answered, refused, marked, taken = contacts[:2], contacts[2], contacts[3:5], contacts[5]
    sending(engine, answered)
    with engine.begin() as connection:
        connection.execute(
            sa.update(ledger.contacts).where(ledger.contacts.c.id == taken.id).values(claimed_by="other")
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        owned = ledger.finish_and_mark_sending(
            connection,
            "w",
            [ledger.Outcome(c, "sent", "sent by sendgrid", provider_id=f"SG.{c.id}") for c in answered]
            + [ledger.Outcome(refused, "failed", f"refused: {AWKWARD}", last_error=AWKWARD)],
            [c.id for c in marked] + [taken.id],
            NOW,
            NOW + timedelta(minutes=5),
        )
    rows = rows_by_id(engine)

    assert owned == {c.id for c in marked}  # not the contact another worker holds
    for contact in answered:
        row = rows[contact.id]
        assert (row["state"], row["provider_id"], row["claimed_by"]) == ("sent", f"SG.{contact.id}", None)
    assert (rows[refused.id]["state"], rows[refused.id]["last_error"]) == ("failed", AWKWARD)
    for contact in marked:
        row = rows[contact.id]
        assert (row["state"], row["attempts"], row["lease_until"]) == (
            "sending",
            1,
            NOW + timedelta(minutes=5),
        )
    assert (rows[taken.id]["state"], rows[taken.id]["claimed_by"]) == ("claimed", "other")


@pytest.mark.postgres
def test_when_the_one_statement_fails_neither_the_outcomes_nor_the_marks_are_written(
    postgres_engine: Engine,
) -> None:
    engine = postgres_engine
    answered, marked = claimed(engine, 2)
    sending(engine, [answered])
    # The server refuses it part way: a trigger (in this test's schema) refuses the finish's row.
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
            )
        )
        connection.execute(
            sa.text(
                "CREATE TRIGGER refuse BEFORE UPDATE ON contacts FOR EACH ROW"
                " WHEN (NEW.provider_id = 'refuse me') EXECUTE FUNCTION refuse()"
            )
        )
    outcome = ledger.Outcome(answered, "sent", "sent", provider_id="refuse me")
    with (
        pytest.raises(sa.exc.DBAPIError, match="refused by the test"),
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
    ):
        ledger.finish_and_mark_sending(
            connection, "w", [outcome], [marked.id], NOW, NOW + timedelta(minutes=5)
        )
    rows = rows_by_id(engine)
    assert rows[answered.id]["state"] == "sending"
    assert rows[marked.id]["state"] == "claimed"


@pytest.mark.postgres
def test_a_contact_is_never_finished_and_marked_in_the_same_statement(postgres_engine: Engine) -> None:
    (contact,) = claimed(postgres_engine, 1)
    with (
        postgres_engine.connect() as connection,
        pytest.raises(ValueError, match="cannot be finished and marked"),
    ):
        ledger.finish_and_mark_sending(
            connection, "w", [ledger.Outcome(contact, "sent", "sent")], [contact.id], NOW, NOW
        )

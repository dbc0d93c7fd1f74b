"""The arm of a rule's experiment a contact was assigned to: kept for good once drawn, and given by
migration 0006 to the contacts already in the ledger, so `outreach report` covers the time
before the upgrade too."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from outreach.state import ledger
from outreach.state.db import make_engine
from outreach.state.migrate import SCHEMA_HEAD, current_revision, upgrade

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PAST_THE_DRAW = [
    ["dedupe", "first"],
    ["holdout", "no holdout"],
    ["expires", "would be sent after it expires"],
]
HELD_BACK = [["dedupe", "decided again: skipped"], ["expires", "held back until it expired"]]


def test_upgrading_assigns_existing_contacts_to_the_arm_their_state_and_steps_show(database_url: str) -> None:
    engine = make_engine(database_url, migrate_sqlite=False)
    upgrade(engine, "0005")
    rows = {
        "sent": ("sent", []),
        "cancelled": ("cancelled", []),
        "pending": ("pending", []),
        "holdout": ("holdout", []),
        "skipped": ("skipped", []),
        "suppressed": ("suppressed", []),
        "expired-after-draw": ("expired", PAST_THE_DRAW),
        "expired-held-back": ("expired", HELD_BACK),
    }
    with engine.begin() as connection:
        # Only the columns of revision 0005 are given: the table has no `arm` yet.
        connection.execute(
            sa.insert(ledger.contacts),
            [
                {
                    "id": key,
                    "dedupe_key": key,
                    "rule": "r",
                    "about": "order",
                    "entity_id": key,
                    "customer_id": "c",
                    "state": state,
                    "reason": "",
                    "priority": 0,
                    "decided_at": NOW,
                    "updated_at": NOW,
                    "attempts": 0,
                    "steps": steps,
                }
                for key, (state, steps) in rows.items()
            ],
        )
    upgrade(engine)
    assert current_revision(engine) == SCHEMA_HEAD
    with engine.connect() as connection:
        arms = dict(connection.execute(sa.text("SELECT id, arm FROM contacts")).all())
    engine.dispose()
    assert arms == {
        "sent": "message",
        "cancelled": "message",
        "pending": "message",
        "holdout": "holdout",
        "skipped": None,
        "suppressed": None,
        "expired-after-draw": "message",
        "expired-held-back": None,
    }


def test_a_match_drawn_for_the_message_stays_in_its_arm_when_it_is_held_back_again(engine: sa.Engine) -> None:
    """A match held back is assigned when a later decision draws it; and once assigned it stays:
    a contact displaced by a higher-priority one and decided again (skipped, no arm in the new
    decision) was assigned to the message and stays counted there (intention to treat)."""
    row = {
        "id": "x",
        "dedupe_key": "r:order:o-1",
        "rule": "r",
        "about": "order",
        "entity_id": "o-1",
        "customer_id": "c",
        "channel": "email",
        "state": "skipped",
        "reason": "displaced",
        "priority": 0,
        "decided_at": NOW,
        "send_at": None,
        "expires_at": None,
        "updated_at": NOW,
        "attempts": 0,
        "steps": [],
        "arm": None,
    }
    with engine.begin() as connection:
        connection.execute(sa.insert(ledger.contacts), [row])
        drawn = {**row, "id": "z", "state": "pending", "reason": "sms", "arm": "message", "send_at": NOW}
        assert ledger.record_decisions(connection, [drawn]) == 1
        connection.execute(sa.update(ledger.contacts).values(state="skipped", reason="displaced"))
        again = {**row, "id": "y", "reason": "daily cap reached", "arm": None}
        assert ledger.record_decisions(connection, [again]) == 1
        state, reason, arm = connection.execute(
            sa.select(ledger.contacts.c.state, ledger.contacts.c.reason, ledger.contacts.c.arm)
        ).one()
    assert (state, reason, arm) == ("skipped", "daily cap reached", "message")

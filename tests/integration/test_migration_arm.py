"""Migration 0006 gives the contacts already in the ledger the arm they were assigned to, so the
goal comparison of `outreach report` covers the period before the upgrade too."""

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

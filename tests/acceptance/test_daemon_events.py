"""An event is answered in seconds, not at the next tick: a record posted to a running daemon's
`POST /events` — or loaded by `outreach ingest` into its database — is evaluated at once and its
message sent, though the rule's own cadence is an hour."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from outreach.testing.fakeproviders import FakeProviders
from tests.acceptance.daemons import Workspace, sent_outbox_ids

pytestmark = pytest.mark.slow

TOKEN = "events-token"
RULES = """rules:
  - name: detractor
    about: survey
    when: survey.kind == "nps" and survey.score <= 6
    channels: [email]
    template: notice
    every: 1h
    quiet_hours: "off"
"""


def survey(survey_id: str, customer_id: str) -> dict[str, object]:
    return {
        "id": survey_id,
        "customer_id": customer_id,
        "kind": "nps",
        "score": 2,
        "responded_at": datetime.now(UTC).isoformat(),
    }


def test_a_posted_record_and_an_ingested_file_are_answered_in_seconds_under_an_hourly_rule(
    tmp_path: Path, database_url: str, fake_providers: FakeProviders
) -> None:
    workspace = Workspace(
        tmp_path, database_url, {**fake_providers.environ(), "OUTREACH_EVENTS_TOKEN": TOKEN}, RULES
    )
    ids = workspace.add_customers(2)
    daemon = workspace.start()
    try:
        daemon.event("started")
        daemon.wait_for(lambda: any(e.get("event") == "tick" for e in daemon.events()), what="the first tick")
        posted = time.monotonic()
        with httpx.Client(trust_env=False, timeout=10) as client:
            answer = client.post(
                daemon.url + "/events",
                json={"table": "survey_responses", **survey("s-1", ids[0])},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        assert answer.status_code == 200, answer.text
        daemon.wait_for(
            lambda: len(sent_outbox_ids(fake_providers.requests())) == 1, timeout=10, what="a send"
        )
        assert time.monotonic() - posted < 5, "answered in seconds, not at the next hourly tick"

        workspace.add_records("survey_responses", [survey("s-2", ids[1])])  # as `outreach ingest` does
        daemon.wait_for(
            lambda: len(sent_outbox_ids(fake_providers.requests())) == 2, timeout=10, what="a send"
        )
    finally:
        assert daemon.terminate() == 0
    ticks = [e for e in daemon.events() if e.get("event") == "tick"]
    assert len(ticks) == 1, "no tick ran: the messages went out on the events"
    assert datetime.now(UTC) - datetime.fromisoformat(ticks[0]["now"]) < timedelta(hours=1)
    workspace.close()

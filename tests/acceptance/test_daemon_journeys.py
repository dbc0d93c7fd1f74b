"""Journeys in real `outreach run` processes — killed with SIGKILL at random instants, and
several at once on one PostgreSQL database: a follow-up step and a grouped message are each sent
once, after restarts between the steps and inside a group's wait, and none is lost."""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outreach.testing.fakeproviders import FakeProviders
from outreach.vocabulary import FINAL_STATES
from tests.acceptance.daemons import Workspace

pytestmark = pytest.mark.slow

RULES = """rules:
  - name: welcome
    about: customer
    when: customer.email_opt_in
    channels: [email]
    template: welcome
    every: 1s
    quiet_hours: "off"
    steps:
      - after: 2s
        template: welcome

  - name: parcels
    about: order
    when: order.delivered_at is null and order.promised_at < now() - 1d
    channels: [email]
    template: parcels
    every: 1s
    quiet_hours: "off"
    group: customer
    group_wait: 2s
"""
PARCELS = (
    '---\nsubject: "Late: {% for m in matches %}{{ m.id }} {% endfor %}"\n---\n<p>{{ step.number }}</p>\n'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n'
)


def sent_subjects(fake: FakeProviders) -> list[tuple[str, str]]:
    """(outbox id, subject) of every email the fake provider accepted."""
    found = []
    for request in fake.requests("sendgrid"):
        if request.outcome != "accepted":
            continue
        for personalization in request.json.get("personalizations", []):
            found.append((personalization["custom_args"]["outbox_id"], str(request.json.get("subject", ""))))
    return found


def journeys_workspace(tmp_path: Path, database_url: str, fake: FakeProviders, customers: int) -> Workspace:
    """A workspace with RULES, CUSTOMERS customers and two late orders for each."""
    workspace = Workspace(
        tmp_path,
        database_url,
        {
            **fake.environ(),
            "OUTREACH_DELIVERY__CONCURRENCY": "2",
            "OUTREACH_DAEMON__LEASE_SECONDS": "1.5",
            "OUTREACH_SENDGRID__TIMEOUT": "0.7",
            "OUTREACH_TWILIO__TIMEOUT": "0.7",
        },
        RULES,
        {"parcels": PARCELS},
    )
    fake.delay_fraction("sendgrid", 1.0, 0.01)
    ids = workspace.add_customers(customers)
    promised = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    workspace.add_records(
        "orders",
        [
            {"id": f"{cid}-o{n}", "customer_id": cid, "status": "shipped", "promised_at": promised}
            for cid in ids
            for n in (1, 2)
        ],
    )
    return workspace


def journeys_done(workspace: Workspace, customers: int) -> bool:
    contacts = workspace.contacts()
    return (
        len([c for c in contacts if c["rule"] == "welcome"]) == 2 * customers
        and all(c["state"] in FINAL_STATES for c in contacts)
        and len([c for c in contacts if c["rule"] == "parcels"]) == 2 * customers
    )


def assert_each_journey_sent_once(workspace: Workspace, fake: FakeProviders) -> None:
    """Each step of each welcome journey once, one message naming both late orders per customer."""
    contacts = workspace.contacts()
    ids = sorted({c["customer_id"] for c in contacts})
    sent = sent_subjects(fake)
    assert max(Counter(outbox_id for outbox_id, _ in sent).values()) == 1, (
        "a message reached the provider twice"
    )
    welcome = Counter((c["customer_id"], c["step"]) for c in contacts if c["rule"] == "welcome")
    assert welcome == Counter({(cid, step): 1 for cid in ids for step in (1, 2)}), (
        "a step was lost or doubled"
    )
    for c in contacts:
        if c["rule"] == "welcome" and c["step"] == 2:
            assert c["state"] in ("sent", "unknown")
    parcels = [c for c in contacts if c["rule"] == "parcels"]
    leads = [c for c in parcels if c["state"] in ("sent", "unknown")]
    assert len(leads) == len(ids), "one message per customer for their two late orders"
    assert {c["state"] for c in parcels} <= {"sent", "unknown", "grouped"}
    subjects = dict(sent)
    for lead in leads:
        if lead["state"] == "sent":
            cid = lead["customer_id"]
            assert f"{cid}-o1" in subjects[lead["id"]] and f"{cid}-o2" in subjects[lead["id"]]


def test_steps_and_groups_survive_sigkill_at_random_instants_without_duplicates_or_losses(
    tmp_path: Path, database_url: str, fake_providers: FakeProviders
) -> None:
    workspace = journeys_workspace(tmp_path, database_url, fake_providers, 12)
    rng = random.Random(11)

    def done() -> bool:
        return journeys_done(workspace, 12)

    # Killed three times whatever happened meanwhile: a fast machine may finish a journey between
    # two kills, and the restarts after it must not send anything again either.
    interrupted = 0
    for attempt in range(3):
        daemon = workspace.start(f"run{attempt}")
        daemon.event("started")
        time.sleep(rng.uniform(0.5, 2.5))  # inside a group's wait, or between two steps
        interrupted += not done()
        daemon.kill()
        time.sleep(1.6)  # past the lease
    assert interrupted >= 1, "no kill came before the journeys were done"
    daemon = workspace.start("last")
    daemon.event("started")  # its SIGTERM handler is in place: the journeys may be done already
    daemon.wait_for(done, timeout=60, what="every journey finished")
    assert daemon.terminate() == 0

    assert_each_journey_sent_once(workspace, fake_providers)
    workspace.close()


@pytest.mark.postgres
def test_three_workers_on_one_postgresql_database_send_each_step_and_group_once_one_killed(
    tmp_path: Path, postgres_url: str, fake_providers: FakeProviders
) -> None:
    # More customers than a worker claims at once (a batch of 100), so that each wave of sends
    # (first steps, grouped messages, second steps) is split between the workers.
    customers = 120
    workspace = journeys_workspace(tmp_path, postgres_url, fake_providers, customers)
    workers = [workspace.start(f"worker{n}") for n in range(3)]
    for worker in workers:
        worker.event("started")
    time.sleep(1.5)  # inside the groups' wait, before the second steps
    workers[0].kill()
    survivors = workers[1:]
    survivors[0].wait_for(
        lambda: journeys_done(workspace, customers), timeout=90, what="every journey finished"
    )
    assert [worker.terminate() for worker in survivors] == [0, 0]
    assert_each_journey_sent_once(workspace, fake_providers)
    senders = {w.process.pid for w in workers if any(e.get("event") == "contact" for e in w.events())}
    assert len(senders) >= 2, "the workers shared the sends"
    workspace.close()

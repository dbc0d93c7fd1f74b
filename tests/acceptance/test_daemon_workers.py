"""Several `outreach run` processes on one database, and daemons killed mid-send: each contact is
sent at most once, and none is lost."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import pytest

from outreach.state.ledger import FINAL_STATES
from outreach.testing.fakeproviders import FakeProviders
from tests.acceptance.daemons import Workspace, sent_outbox_ids

pytestmark = pytest.mark.slow


@pytest.mark.postgres
def test_three_workers_on_one_postgresql_database_send_every_contact_exactly_once(
    tmp_path: Path, postgres_url: str, fake_providers: FakeProviders
) -> None:
    workspace = Workspace(
        tmp_path, postgres_url, {**fake_providers.environ(), "OUTREACH_DELIVERY__CONCURRENCY": "4"}
    )
    fake_providers.delay_fraction("sendgrid", 1.0, 0.005)
    ids = workspace.add_customers(300)
    workers = [workspace.start(f"worker{n}") for n in range(3)]
    try:
        for worker in workers:
            worker.event("started")
        workers[0].wait_for(
            lambda: sum(c["state"] == "sent" for c in workspace.contacts()) == len(ids),
            timeout=60,
            what="300 sends",
        )
    finally:
        codes = [worker.terminate() for worker in workers]
    assert codes == [0, 0, 0]
    contacts = workspace.contacts()
    assert sorted(c["customer_id"] for c in contacts) == ids
    sent = sent_outbox_ids(fake_providers.requests())
    assert Counter(sent).most_common(1)[0][1] == 1, "an outbox id reached the provider twice"
    assert sorted(sent) == sorted(c["id"] for c in contacts)
    # The rule's first tick was evaluated by one worker; the others found the slot taken.
    evaluated = [e for w in workers for e in w.events() if e.get("event") == "tick"]
    assert len(evaluated) == 1
    # The work was shared.
    senders = {w.process.pid for w in workers if any(e.get("event") == "contact" for e in w.events())}
    assert len(senders) >= 2
    workspace.close()


def test_a_daemon_killed_at_random_instants_never_sends_a_contact_twice_and_loses_none(
    tmp_path: Path, database_url: str, fake_providers: FakeProviders
) -> None:
    workspace = Workspace(
        tmp_path,
        database_url,
        {
            **fake_providers.environ(),
            "OUTREACH_DELIVERY__CONCURRENCY": "4",
            "OUTREACH_DAEMON__LEASE_SECONDS": "1.5",
            # A lease must outlast two provider timeouts (settings refuse less).
            "OUTREACH_SENDGRID__TIMEOUT": "0.7",
            "OUTREACH_TWILIO__TIMEOUT": "0.7",
        },
    )
    # Slow answers, so that kills land while requests are on the wire.
    fake_providers.delay_fraction("sendgrid", 1.0, 0.02)
    ids = workspace.add_customers(150)
    rng = random.Random(7)

    def all_final() -> bool:
        contacts = workspace.contacts()
        return len(contacts) == len(ids) and all(c["state"] in FINAL_STATES for c in contacts)

    kills = 0
    for attempt in range(4):
        daemon = workspace.start(f"run{attempt}")
        daemon.event("started")
        # Kill while sending: a moment after this daemon's first send (or once all is done).
        daemon.wait_for(
            lambda daemon=daemon: all_final() or any(e.get("event") == "contact" for e in daemon.events()),
            what="a send",
        )
        time.sleep(rng.uniform(0.0, 0.3))
        if all_final():
            assert daemon.terminate() == 0
            break
        daemon.kill()
        kills += 1
        time.sleep(1.6)  # past the lease: the next daemon recovers what this one held
    else:
        daemon = workspace.start("last")
        daemon.event("started")
        daemon.wait_for(all_final, timeout=60, what="every contact final")
        assert daemon.terminate() == 0
    assert kills >= 2

    contacts = {c["id"]: c for c in workspace.contacts()}
    assert sorted(c["customer_id"] for c in contacts.values()) == ids, "a contact was lost or decided twice"
    states = Counter(c["state"] for c in contacts.values())
    # Only requests on the wire when a kill landed can be unknown: the dispatcher marks a chunk
    # of `concurrency` contacts sending at a time, at most two chunks at once.
    assert states["unknown"] <= kills * 2 * 4, states
    assert set(states) <= {"sent", "unknown"}, states
    sent = sent_outbox_ids(fake_providers.requests())
    assert Counter(sent).most_common(1)[0][1] == 1, "an outbox id reached the provider twice"
    for outbox_id in sent:
        assert contacts[outbox_id]["state"] in ("sent", "unknown")
    assert {i for i, c in contacts.items() if c["state"] == "sent"} <= set(sent)
    workspace.close()

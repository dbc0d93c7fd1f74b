"""Two rules on the same cadence compete for the same customers under a cap of one a day, in real
`outreach run` processes: no customer gets two messages in a local day, and the higher priority
wins every time — one daemon on SQLite, three workers on one PostgreSQL database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outreach.testing.fakeproviders import FakeProviders
from tests.acceptance.daemons import Workspace, sent_outbox_ids

pytestmark = pytest.mark.slow

RULES = """rules:
  - name: late-delivery
    about: order
    when: order.delivered_at is null and order.promised_at < now() - 1d
    channels: [email]
    template: notice
    every: 1m
    priority: 20
    quiet_hours: "off"

  - name: stalled-checkout
    about: checkout
    when: checkout.completed_at is null and checkout.started_at < now() - 2h
    channels: [email]
    template: notice
    every: 1m
    priority: 10
    quiet_hours: "off"
"""
CUSTOMERS = 40


def competing(workspace: Workspace) -> list[str]:
    ids = workspace.add_customers(CUSTOMERS)
    now = datetime.now(UTC)
    workspace.add_records(
        "orders",
        [
            {
                "id": f"o-{cid}",
                "customer_id": cid,
                "status": "shipped",
                "promised_at": (now - timedelta(days=2)).isoformat(),
            }
            for cid in ids
        ],
    )
    workspace.add_records(
        "checkouts",
        [
            {
                "id": f"k-{cid}",
                "customer_id": cid,
                "started_at": (now - timedelta(hours=3)).isoformat(),
                "cart_value": 20,
            }
            for cid in ids
        ],
    )
    return ids


def check(workspace: Workspace, fake: FakeProviders, ids: list[str]) -> None:
    contacts = workspace.contacts()
    sent = [c for c in contacts if c["state"] == "sent"]
    assert Counter(c["customer_id"] for c in sent) == Counter(ids), "a customer got two messages, or none"
    assert {c["rule"] for c in sent} == {"late-delivery"}, "the lower priority took a customer's only slot"
    assert {c["state"] for c in contacts if c["rule"] == "stalled-checkout"} == {"skipped"}
    outbox = sent_outbox_ids(fake.requests())
    assert sorted(outbox) == sorted(c["id"] for c in sent), (
        "what reached the provider is what the ledger says"
    )


def environ(fake: FakeProviders) -> dict[str, str]:
    return {
        **fake.environ(),
        "OUTREACH_DELIVERY__MAX_PER_DAY": "1",
        "OUTREACH_DELIVERY__MAX_PER_WEEK": "5",
        "OUTREACH_DELIVERY__CONCURRENCY": "4",
    }


def test_one_daemon_on_sqlite_lets_only_the_higher_priority_rule_take_each_customer_s_day(
    tmp_path: Path, fake_providers: FakeProviders
) -> None:
    workspace = Workspace(
        tmp_path, f"sqlite:///{tmp_path / 'var' / 'outreach.db'}", environ(fake_providers), RULES
    )
    ids = competing(workspace)
    daemon = workspace.start()
    try:
        daemon.wait_for(
            lambda: sum(c["state"] == "sent" for c in workspace.contacts()) >= CUSTOMERS,
            timeout=60,
            what="sends",
        )
        daemon.wait_for(
            lambda: any(e.get("event") == "dispatched" for e in daemon.events()), what="a dispatch round"
        )
    finally:
        assert daemon.terminate() == 0
    check(workspace, fake_providers, ids)
    workspace.close()


@pytest.mark.postgres
def test_three_workers_on_postgresql_never_give_a_customer_two_messages_in_a_day(
    tmp_path: Path, postgres_url: str, fake_providers: FakeProviders
) -> None:
    workspace = Workspace(tmp_path, postgres_url, environ(fake_providers), RULES)
    ids = competing(workspace)
    workers = [workspace.start(f"worker{n}") for n in range(3)]
    try:
        for worker in workers:
            worker.event("started")
        workers[0].wait_for(
            lambda: sum(c["state"] == "sent" for c in workspace.contacts()) >= CUSTOMERS,
            timeout=60,
            what="sends",
        )
    finally:
        codes = [worker.terminate() for worker in workers]
    assert codes == [0, 0, 0]
    check(workspace, fake_providers, ids)
    ticks = [e for w in workers for e in w.events() if e.get("event") == "tick"]
    assert ticks and all(sorted(t["rules"]) == ["late-delivery", "stalled-checkout"] for t in ticks), (
        "the rules due together were taken and decided together by one worker"
    )
    minutes = Counter(t["now"][:16] for t in ticks)
    assert max(minutes.values()) == 1, "a slot was ticked by two workers"
    workspace.close()

"""`outreach run` on SQLite, as a real process: it sends, reports its health, reloads, stops cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.testing.fakeproviders import FakeProviders
from tests.acceptance.daemons import TEMPLATE, Workspace, sent_outbox_ids

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(tmp_path: Path, fake_providers: FakeProviders) -> Workspace:
    url = f"sqlite:///{tmp_path / 'var' / 'outreach.db'}"
    workspace = Workspace(tmp_path, url, fake_providers.environ())
    yield workspace
    workspace.close()


def test_the_daemon_sends_due_contacts_answers_health_and_metrics_and_exits_0_on_sigterm(
    workspace: Workspace, fake_providers: FakeProviders
) -> None:
    workspace.add_customers(6)
    daemon = workspace.start()
    try:
        daemon.wait_for(lambda: sum(c["state"] == "sent" for c in workspace.contacts()) == 6, what="6 sends")
        health = daemon.get("/healthz")
        assert health.status_code == 200
        assert health.json()["scheduler_running"] and health.json()["database_reachable"]
        assert health.json()["last_tick_age_seconds"] is not None
        metrics = daemon.get("/metrics").text
        assert 'outreach_sends_total{channel="email",outcome="sent"} 6.0' in metrics
        assert 'outreach_matches_total{rule="welcome"} 6.0' in metrics
        assert "outreach_queue_depth 0.0" in metrics
        assert 'outreach_provider_latency_seconds_count{channel="email",provider="sendgrid"} 6.0' in metrics
        assert "outreach_tick_duration_seconds_count" in metrics
    finally:
        code = daemon.terminate()
    assert code == 0, daemon.output()
    assert daemon.events()[-1]["event"] == "stopped"
    ledger_ids = sorted(c["id"] for c in workspace.contacts())
    assert sorted(sent_outbox_ids(fake_providers.requests())) == ledger_ids


def test_a_second_daemon_on_the_same_sqlite_file_refuses_to_start_with_exit_code_1(
    workspace: Workspace,
) -> None:
    first = workspace.start("first")
    try:
        first.event("started")
        second = workspace.start("second")
        assert second.process.wait(30) == 1
        second.terminate()
        assert "another `outreach run`" in second.output()
        assert f"pid {first.process.pid}" in second.output()
        assert "use PostgreSQL to run several workers" in second.output()
        assert first.process.poll() is None
    finally:
        assert first.terminate() == 0


def test_a_broken_rules_edit_is_logged_and_the_last_good_rules_keep_running(workspace: Workspace) -> None:
    daemon = workspace.start()
    try:
        daemon.event("started")
        rules = workspace.root / "rules" / "rules.yaml"
        rules.write_text(rules.read_text().replace("customer.email_opt_in", "customer.emial_opt_in"))
        rejected = daemon.event("reload_rejected")
        assert any("emial_opt_in" in problem for problem in rejected["problems"])
        assert rejected["keeping"] == ["welcome"]
        workspace.add_customers(3)
        daemon.get("/healthz").raise_for_status()
        assert "outreach_rules_reload_failures_total 1.0" in daemon.get("/metrics").text

        # A valid edit is picked up: the renamed rule is scheduled and ticks at once.
        rules.write_text(
            rules.read_text().replace("emial_opt_in", "email_opt_in").replace("name: welcome", "name: hello")
        )
        daemon.event("reloaded")
        daemon.wait_for(
            lambda: any(
                e.get("event") == "rule_unscheduled" and e["rule"] == "welcome" for e in daemon.events()
            ),
            what="welcome unscheduled",
        )
        daemon.wait_for(
            lambda: sum(c["rule"] == "hello" and c["state"] == "sent" for c in workspace.contacts()) == 3,
            what="hello sends",
        )
    finally:
        assert daemon.terminate() == 0


def test_a_message_that_failed_to_render_is_sent_after_the_template_is_fixed(workspace: Workspace) -> None:
    """A value the data lacks stops that message (failed, never "Dear ,"), but not for good:
    once a reload accepts a fixed template, the contact goes out (unless it expired)."""
    template = workspace.root / "templates" / "welcome" / "email.en.html"
    template.write_text(TEMPLATE.replace("{{ customer.name }}", "{{ customer.attributes.nickname }}"))
    workspace.add_customers(2)
    daemon = workspace.start()
    try:
        daemon.wait_for(
            lambda: sum(c["state"] == "failed" for c in workspace.contacts()) == 2, what="2 render failures"
        )
        assert all("could not render" in c["reason"] for c in workspace.contacts())
        template.write_text(
            TEMPLATE.replace(
                "{{ customer.name }}", "{{ customer.attributes.nickname|default(customer.name) }}"
            )
        )
        daemon.wait_for(lambda: sum(c["state"] == "sent" for c in workspace.contacts()) == 2, what="2 sends")
        assert any(e.get("event") == "reloaded" and e.get("revived") == 2 for e in daemon.events())
    finally:
        assert daemon.terminate() == 0

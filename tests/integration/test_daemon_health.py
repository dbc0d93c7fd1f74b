"""The daemon's health and reload, in process: /healthz turns red naming a rule whose ticks keep
failing or an edit refused for too long, and the reload accepts exactly what `check` accepts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from outreach.daemon.process import Daemon
from tests.worlds import World, build_world


@pytest.fixture
def daemon(tmp_path: Path, sqlite_url: str) -> Iterator[Daemon]:
    world: World = build_world(tmp_path, sqlite_url)
    running = Daemon(world.app)
    yield running
    world.app.close()


def test_a_rule_whose_ticks_keep_failing_makes_the_daemon_unhealthy_and_says_which(daemon: Daemon) -> None:
    daemon.last_tick = time.monotonic()
    daemon._failed("late-delivery", "OperationalError: no such column: orders.promised_at")
    assert daemon.health().detail["failing_rules"] == {}, "one failure is not yet a pattern"
    for _ in range(2):
        daemon._failed("late-delivery", "OperationalError: no such column: orders.promised_at")
    report = daemon.health()
    assert report.detail["failing_rules"] == {
        "late-delivery": {"failures": 3, "last_error": "OperationalError: no such column: orders.promised_at"}
    }
    assert not report.healthy


def test_an_edit_check_refuses_is_not_reloaded_and_a_long_refusal_turns_health_red(
    daemon: Daemon, tmp_path: Path
) -> None:
    template = tmp_path / "templates" / "notice" / "sms.en.txt"
    template.write_text("Hello {{ customer.name }}, about {{ order.idd }}.\n", encoding="utf-8")
    assert daemon.reload() is False
    problems = daemon.health().detail["reload_problems"]
    assert any("idd" in problem for problem in problems), problems
    assert daemon._renderer is not None and daemon._rules.names()  # the last good set runs on
    daemon._rejected_since = time.monotonic() - daemon.options.unhealthy_after_rejected_reload_seconds - 1
    daemon.last_tick = time.monotonic()
    assert not daemon.health().healthy
    template.write_text("Hello {{ customer.name }}.\n", encoding="utf-8")
    assert daemon.reload() is True
    assert daemon.health().detail["reload_problems"] == []

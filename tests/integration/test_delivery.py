"""Delivery end to end on SQLite and PostgreSQL: rules and state → decisions → outbox → sends.

Each test builds a small world in tmp_path (rules, templates, settings), inserts customers and
their records with SQLAlchemy Core, evaluates at an explicit instant and dispatches through the
outbox channel, then reads what was written and what the ledger recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from rich.console import Console
from sqlalchemy.engine import Engine

from outreach import controls
from outreach.app import App
from outreach.channels import Channel, make_channels
from outreach.cli import cli
from outreach.delivery import DispatchStats, Dispatcher, TickResult, evaluate, limits_of
from outreach.rendering import Renderer
from outreach.settings import Settings
from outreach.state import ledger
from outreach.state.models import Checkout, Customer, Order, SurveyResponse

# 12:00 UTC: daytime for customers in UTC, so quiet hours only matter where a test says so.
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

RULES = """\
rules:
  - name: late-delivery
    about: order
    when: >
      order.status != "cancelled" and order.delivered_at is null
      and order.promised_at < now() - 1d
    channels: [sms, email]
    template: notice
    priority: 20

  - name: stalled-checkout
    about: checkout
    when: checkout.completed_at is null and checkout.started_at < now() - 2h
    channels: [sms, email]
    template: notice
    priority: 10

  - name: detractor-follow-up
    about: survey
    when: survey.kind == "nps" and survey.score <= 6
    channels: [email]
    template: notice
    escalate: true
    priority: 30

  - name: vip-welcome
    about: customer
    when: customer.attributes.tier == "vip"
    channels: [email]
    template: notice
    holdout: 100%
"""

TEMPLATES = {
    "notice/email.en.html": '---\nsubject: "News for {{ customer.name }}"\n---\n<p>Hello {{ customer.name }}, about {{ rule.name }}.</p>\n',
    "notice/sms.en.txt": "Hello {{ customer.name }}, about {{ rule.name }}.\n",
}


def write_world(root: Path, rules: str = RULES) -> None:
    (root / "rules").mkdir(parents=True, exist_ok=True)
    (root / "rules" / "rules.yaml").write_text(rules, encoding="utf-8")
    for name, text in TEMPLATES.items():
        path = root / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def make_settings(root: Path, database_url: str, **delivery: Any) -> Settings:
    return Settings.model_validate({
        "database": {"url": database_url},
        "paths": {"rules": str(root / "rules"), "templates": str(root / "templates"), "outbox": str(root / "var" / "outbox.jsonl")},
        "delivery": {"max_per_day": 10, "max_per_week": 10, "concurrency": 1, **delivery},
        "base_dir": root,
    })


def insert(engine: Engine, model: type[Any], **values: Any) -> None:
    with engine.begin() as connection:
        connection.execute(sa.insert(model.__table__).values(**values))  # type: ignore[attr-defined]


def customer(engine: Engine, cid: str, *, timezone: str = "UTC", email_opt_in: bool = True, sms_opt_in: bool = True,
             phone: str | None = "+447700900123", email: str | None = None, **extra: Any) -> None:
    insert(
        engine, Customer, id=cid, name=f"Customer {cid}", email=email or f"{cid}@example.com", phone=phone,
        locale="en", timezone=timezone, preferred_channel=None, email_opt_in=email_opt_in,
        sms_opt_in=sms_opt_in, attributes=extra.pop("attributes", {}), **extra,
    )


def late_order(engine: Engine, oid: str, cid: str, now: datetime = NOON) -> None:
    insert(
        engine, Order, id=oid, customer_id=cid, status="shipped", placed_at=now - timedelta(days=5),
        promised_at=now - timedelta(days=2), delivered_at=None, total=40.0, currency="GBP", attributes={},
    )


def stalled_checkout(engine: Engine, chid: str, cid: str, now: datetime = NOON) -> None:
    insert(
        engine, Checkout, id=chid, customer_id=cid, started_at=now - timedelta(hours=3), completed_at=None,
        cart_value=25.0, currency="GBP", items=[], attributes={},
    )


def contact_rows(engine: Engine) -> list[ledger.Contact]:
    with engine.connect() as connection:
        return [ledger.Contact(**row) for row in connection.execute(sa.select(ledger.contacts).order_by(ledger.contacts.c.rule)).mappings()]


def contact_of(engine: Engine, rule: str, entity_id: str) -> ledger.Contact:
    [row] = [c for c in contact_rows(engine) if c.rule == rule and c.entity_id == entity_id]
    return row


@dataclass
class World:
    """One tmp_path deployment: settings, app (its engine is the test's database), dispatcher."""

    root: Path
    settings: Settings
    app: App
    channels: dict[str, Channel]

    @property
    def engine(self) -> Engine:
        return self.app.engine

    def evaluate(self, now: datetime) -> TickResult:
        rules = [rule for rule in self.app.load_rules() if rule.enabled]
        return evaluate(self.engine, rules, now, limits_of(self.settings))

    def dispatch(self, now: datetime) -> DispatchStats:
        rule_set = self.app.load_rules()
        renderer = Renderer(self.settings)
        dispatcher = Dispatcher(
            self.engine, rules=lambda: rule_set, renderer=lambda: renderer, channels=self.channels,
            worker="test-worker", concurrency=1,
        )
        try:
            return dispatcher.dispatch_once(now)
        finally:
            dispatcher.close()

    def tick(self, now: datetime) -> DispatchStats:
        self.evaluate(now)
        return self.dispatch(now)

    def outbox(self) -> list[dict[str, Any]]:
        path = self.root / "var" / "outbox.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def build_world(root: Path, database_url: str, channels: dict[str, Channel] | None = None, **delivery: Any) -> World:
    write_world(root)
    settings = make_settings(root, database_url, **delivery)
    app = App(settings)
    return World(root, settings, app, channels if channels is not None else make_channels(settings))


@pytest.fixture
def world(tmp_path: Path, database_url: str, engine: Engine) -> Iterator[World]:
    """A deployment in outbox mode on the migrated test database."""
    built = build_world(tmp_path, database_url)
    yield built
    built.app.close()


def test_repeated_ticks_send_each_contact_once(world: World) -> None:
    for cid in ("c1", "c2", "c3"):
        customer(world.engine, cid)
        late_order(world.engine, f"o-{cid}", cid)
    for minutes in (0, 15, 30):
        world.tick(NOON + timedelta(minutes=minutes))
    sent = world.outbox()
    assert sorted(m["customer_id"] for m in sent) == ["c1", "c2", "c3"]
    assert {c.state for c in contact_rows(world.engine)} == {"sent"}
    assert all(c.provider_id for c in contact_rows(world.engine))


def test_a_daily_cap_of_one_lets_only_the_higher_priority_rule_contact_out(tmp_path: Path, database_url: str, engine: Engine) -> None:
    world = build_world(tmp_path, database_url, max_per_day=1)
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    stalled_checkout(world.engine, "k1", "c1")
    world.tick(NOON)
    world.tick(NOON + timedelta(hours=1))
    assert [m["rule"] for m in world.outbox()] == ["late-delivery"]
    assert contact_of(world.engine, "stalled-checkout", "k1").state == "skipped"
    world.app.close()


def test_quiet_hours_defer_a_contact_to_nine_in_the_morning_local_time(world: World) -> None:
    customer(world.engine, "dubai", timezone="Asia/Dubai")
    late_order(world.engine, "o1", "dubai")
    eleven_pm_dubai = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
    nine_am_dubai = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
    world.tick(eleven_pm_dubai)
    row = contact_of(world.engine, "late-delivery", "o1")
    assert (row.state, row.send_at) == ("pending", nine_am_dubai)
    world.tick(nine_am_dubai - timedelta(minutes=1))
    assert world.outbox() == []
    world.tick(nine_am_dubai)
    assert [m["customer_id"] for m in world.outbox()] == ["dubai"]


def test_without_sms_consent_the_contact_falls_back_to_email(world: World) -> None:
    customer(world.engine, "c1", sms_opt_in=False)
    late_order(world.engine, "o1", "c1")
    world.tick(NOON)
    [message] = world.outbox()
    assert (message["channel"], message["to"]) == ("email", "c1@example.com")


def test_without_any_consent_the_contact_is_suppressed_and_nothing_is_sent(world: World) -> None:
    customer(world.engine, "c1", sms_opt_in=False, email_opt_in=False)
    late_order(world.engine, "o1", "c1")
    world.tick(NOON)
    assert world.outbox() == []
    row = contact_of(world.engine, "late-delivery", "o1")
    assert row.state == "suppressed" and row.reason


def test_a_holdout_contact_is_recorded_and_never_sent(world: World) -> None:
    customer(world.engine, "c1", attributes={"tier": "vip"})
    world.tick(NOON)
    world.tick(NOON + timedelta(days=1))
    assert world.outbox() == []
    assert contact_of(world.engine, "vip-welcome", "c1").state == "holdout"


def test_a_contact_whose_condition_cleared_before_sending_is_cancelled(world: World) -> None:
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    world.evaluate(NOON)
    with world.engine.begin() as connection:
        connection.execute(sa.update(Order.__table__).values(delivered_at=NOON, status="delivered"))  # type: ignore[attr-defined]
    stats = world.dispatch(NOON + timedelta(minutes=1))
    assert stats.cancelled == 1 and world.outbox() == []
    row = contact_of(world.engine, "late-delivery", "o1")
    assert row.state == "cancelled" and "no longer holds" in row.reason


def test_pause_holds_all_sending_but_records_matches_and_resume_releases_them(world: World) -> None:
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    controls.pause(world.app, "incident", NOON)
    stats = world.tick(NOON)
    assert stats.paused and world.outbox() == []
    assert contact_of(world.engine, "late-delivery", "o1").state == "pending"
    assert controls.resume(world.app)
    world.tick(NOON + timedelta(minutes=15))
    assert [m["rule"] for m in world.outbox()] == ["late-delivery"]


def test_silence_holds_one_rule_only_until_it_ends(world: World) -> None:
    customer(world.engine, "c1")
    customer(world.engine, "c2")
    late_order(world.engine, "o1", "c1")
    stalled_checkout(world.engine, "k2", "c2")
    until = controls.silence(world.app, "late-delivery", "6h", "carrier outage", NOON)
    world.tick(NOON)
    assert [m["rule"] for m in world.outbox()] == ["stalled-checkout"]
    assert contact_of(world.engine, "late-delivery", "o1").state == "pending"
    world.tick(until + timedelta(minutes=1))
    assert sorted(m["rule"] for m in world.outbox()) == ["late-delivery", "stalled-checkout"]


def test_an_escalating_rule_opens_one_task_listed_by_outreach_tasks(world: World, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    customer(world.engine, "c1")
    insert(world.engine, SurveyResponse, id="s1", customer_id="c1", kind="nps", score=3, comment="slow", responded_at=NOON - timedelta(hours=1), attributes={})
    first = world.tick(NOON)
    world.tick(NOON + timedelta(minutes=15))
    assert len(world.evaluate(NOON).tasks) == 0 and first.sent == 1
    with world.engine.connect() as connection:
        [task] = ledger.list_tasks(connection)
    assert (task.rule, task.customer_id, task.entity_id) == ("detractor-follow-up", "c1", "s1")
    environment = {
        "OUTREACH_DATABASE__URL": database_url,
        "OUTREACH_PATHS__RULES": str(world.root / "rules"),
        "OUTREACH_PATHS__TEMPLATES": str(world.root / "templates"),
        "OUTREACH_SETTINGS": "",
    }
    monkeypatch.setattr("outreach.cli.out_console", Console(highlight=False, width=200))
    result = CliRunner().invoke(cli, ["tasks"], env=environment)
    assert result.exit_code == 0, result.output
    assert "1 task(s)" in result.output and "detractor-follow-up" in result.output and "c1" in result.output

"""Small deployments for delivery tests: rules, templates and settings in a folder, customers
and their records inserted with SQLAlchemy Core, a dispatcher over the outbox or given channels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from outreach.app import App
from outreach.channels import Channel, make_channels
from outreach.delivery.decide import TickResult, evaluate, limits_of
from outreach.delivery.dispatch import Dispatcher, DispatchStats
from outreach.rendering import Renderer
from outreach.settings import Settings
from outreach.state import ledger
from outreach.state.models import Checkout, Customer, Order
from outreach.tick import run_tick

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
    "notice/email.en.html": '---\nsubject: "News for {{ customer.name }}"\n---\n<p>Hello {{ customer.name }}, about {{ rule.name }}.</p>\n'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n',
    "notice/sms.en.txt": "Hello {{ customer.name }}, about {{ rule.name }}.\n",
    # Says which step of a journey it is and which records a grouped message is about.
    "journey/email.en.html": '---\nsubject: "Step {{ step.number }} of {{ step.of }}"\n---\n'
    "<p>{% for m in matches %}{{ m.id }} {% endfor %}</p>\n"
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n',
    "journey/sms.en.txt": "Step {{ step.number }} of {{ step.of }}: {% for m in matches %}{{ m.id }} {% endfor %}\n",
}


def write_world(root: Path, rules: str = RULES) -> None:
    (root / "rules").mkdir(parents=True, exist_ok=True)
    (root / "rules" / "rules.yaml").write_text(rules, encoding="utf-8")
    for name, text in TEMPLATES.items():
        path = root / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def make_settings(root: Path, database_url: str, **delivery: Any) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": database_url},
            "paths": {
                "rules": str(root / "rules"),
                "templates": str(root / "templates"),
                "outbox": str(root / "var" / "outbox.jsonl"),
            },
            "delivery": {
                "max_per_day": 10,
                "max_per_week": 10,
                "concurrency": 1,
                "locales": ["en"],
                **delivery,
            },
            "base_dir": root,
        }
    )


def insert(engine: Engine, model: type[Any], **values: Any) -> None:
    with engine.begin() as connection:
        connection.execute(sa.insert(model.__table__).values(**values))  # type: ignore[attr-defined]


def customer(
    engine: Engine,
    cid: str,
    *,
    timezone: str = "UTC",
    email_opt_in: bool = True,
    sms_opt_in: bool = True,
    phone: str | None = "+447700900123",
    email: str | None = None,
    **extra: Any,
) -> None:
    insert(
        engine,
        Customer,
        id=cid,
        name=f"Customer {cid}",
        email=email or f"{cid}@example.com",
        phone=phone,
        locale="en",
        timezone=timezone,
        preferred_channel=None,
        email_opt_in=email_opt_in,
        sms_opt_in=sms_opt_in,
        attributes=extra.pop("attributes", {}),
        **extra,
    )


def late_order(engine: Engine, oid: str, cid: str, now: datetime = NOON) -> None:
    insert(
        engine,
        Order,
        id=oid,
        customer_id=cid,
        status="shipped",
        placed_at=now - timedelta(days=5),
        promised_at=now - timedelta(days=2),
        delivered_at=None,
        total=40.0,
        currency="GBP",
        attributes={},
    )


def stalled_checkout(engine: Engine, chid: str, cid: str, now: datetime = NOON) -> None:
    insert(
        engine,
        Checkout,
        id=chid,
        customer_id=cid,
        started_at=now - timedelta(hours=3),
        completed_at=None,
        cart_value=25.0,
        currency="GBP",
        items=[],
        attributes={},
    )


def contact_rows(engine: Engine) -> list[ledger.Contact]:
    with engine.connect() as connection:
        return [
            ledger.Contact(**row)
            for row in connection.execute(
                sa.select(ledger.contacts).order_by(ledger.contacts.c.rule)
            ).mappings()
        ]


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

    def dispatcher(self, worker: str = "test-worker", **options: Any) -> Dispatcher:
        """A dispatcher over this world's rules, templates and channels (close it when done)."""
        rule_set = self.app.load_rules()
        renderer = Renderer(self.settings)
        return Dispatcher(
            self.engine,
            rules=lambda: rule_set,
            renderer=lambda: renderer,
            channels=self.channels,
            worker=worker,
            limits=limits_of(self.settings),
            **{"concurrency": 1, **options},
        )

    def dispatch(self, now: datetime) -> DispatchStats:
        dispatcher = self.dispatcher()
        try:
            return dispatcher.dispatch_once(now)
        finally:
            dispatcher.close()

    def tick(self, now: datetime) -> DispatchStats:
        """One tick as `outreach run --once --now NOW` runs it, through this world's channels."""
        dispatcher = self.dispatcher()
        try:
            rules = [rule for rule in self.app.load_rules() if rule.enabled]
            stats = run_tick(self.app, rules, now, dispatcher=dispatcher).dispatch
            assert stats is not None
            return stats
        finally:
            dispatcher.close()

    def outbox(self) -> list[dict[str, Any]]:
        path = self.root / "var" / "outbox.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def build_world(
    root: Path,
    database_url: str,
    channels: dict[str, Channel] | None = None,
    *,
    rules: str = RULES,
    **delivery: Any,
) -> World:
    write_world(root, rules)
    settings = make_settings(root, database_url, **delivery)
    app = App(settings)
    return World(root, settings, app, channels if channels is not None else make_channels(settings))

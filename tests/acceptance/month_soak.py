"""A month of churning customer state through the real pipeline, checked against what the providers
received.

`run_soak` opens a deployment of the shipped rules and templates in live mode, its SDKs pointed
at the fake Twilio and SendGrid, and walks simulated time forward: between ticks, customers in
time zones around the world (fractional offsets, both hemispheres' clock changes) place orders
that arrive late or are cancelled, leave baskets and come back for them, answer surveys, move
to another time zone, withdraw and restore consent by ingest, reply STOP and START (signed,
through the daemon's Twilio webhook, in English, Arabic and French, with a replayed START now
and then), and bounce (a signed SendGrid event). Every hour, at uneven minutes,
`Outreach.tick(now)` decides and sends; a share of provider requests fails with 429 or 503.
Time and randomness are arguments: the same `SoakConfig` builds the same world, whatever
outreach does with it (which requests the fake fails depends on the order they arrive in).

After each tick the requests the fake providers accepted are checked against the simulation's
own model of the world at that instant (not against the ledger's opinion of it): no customer
over `max_per_day` / `max_per_week` in their local day and ISO week (in the zone they live in
when the message arrives, every earlier message counted in that zone), nothing inside quiet hours
in the customer's time zone, nothing on a channel whose consent was withdrawn or that bounced or
said STOP, nothing past its expiry, nothing whose rule's condition no longer held, nothing sent
twice. At the end the ledger and the providers are reconciled: every accepted request is one
`sent` contact and the reverse, nothing is left claimed or due or failed for want of a template,
and every match that still holds was decided.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from outreach import Outreach
from outreach.delivery.dispatch import RENDER_ERROR
from outreach.feedback import Secrets
from outreach.quiet_hours import OFF, QuietHours
from outreach.state import ledger
from outreach.state.db import make_engine
from outreach.testing.fakeproviders import SENDGRID, TWILIO, FakeProviders
from outreach.vocabulary import FINAL_STATES, HELD_STATES, State
from tests.integration.http_app import SendGridKey
from tests.studio_world import write_workspace

PUBLIC_URL = "https://outreach.example.com"
# Half-hour and quarter-hour offsets, both hemispheres, zones that change clocks in March and
# April 2027 (New York 14 March, Berlin and London 28 March, Auckland, Chatham and Sydney 4 April)
# and zones that never do.
ZONES = (
    "Asia/Kolkata",
    "Pacific/Auckland",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Asia/Riyadh",
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/Sao_Paulo",
    "Asia/Tokyo",
)
STOP_WORDS = ("STOP", "stop", "Stop.", "إيقاف", "ايقاف", "توقف", "ARRET", "arrêt", "UNSUBSCRIBE")
START_WORDS = ("START", "start", "UNSTOP")
LATE, STALLED, DETRACTOR = "late-delivery", "stalled-checkout", "detractor-follow-up"


@dataclass(frozen=True)
class SoakConfig:
    """What to simulate: how many customers, from when, for how long, ticking how often."""

    customers: int = 40
    days: float = 31
    start: datetime = datetime(2027, 3, 10, 0, 0, tzinfo=UTC)
    tick_every: timedelta = timedelta(hours=1)
    seed: int = 8
    # Of the provider requests, the share answered 503 or 429 (retried, through quiet hours too).
    fault_fraction: float = 0.02


@dataclass
class SoakResult:
    """What a soak did and every violation it found (empty when the promises held)."""

    config: SoakConfig
    ticks: int = 0
    seconds: float = 0.0
    sends: Counter[str] = field(default_factory=Counter)  # rule/channel → accepted requests
    events: Counter[str] = field(default_factory=Counter)  # what churned: stop, start, bounce, move, …
    states: Counter[str] = field(default_factory=Counter)  # the ledger's contacts at the end
    provider_faults: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def total_sends(self) -> int:
        return sum(self.sends.values())

    def summary(self) -> str:
        return json.dumps(
            {
                "customers": self.config.customers,
                "days": self.config.days,
                "start": self.config.start.isoformat(),
                "ticks": self.ticks,
                "seconds": round(self.seconds, 1),
                "sends": self.total_sends,
                "sends_by": dict(sorted(self.sends.items())),
                "events": dict(sorted(self.events.items())),
                "provider_faults": self.provider_faults,
                "contacts": dict(sorted(self.states.items())),
                "violations": len(self.violations),
            },
            ensure_ascii=False,
        )


# -- the simulation's model of the world ------------------------------------------------------------


@dataclass
class Person:
    id: str
    name: str
    email: str
    phone: str
    locale: str
    timezone: str
    preferred_channel: str
    email_opt_in: bool
    sms_opt_in: bool
    stopped: bool = False  # replied STOP and not START since: only START lifts it
    bounced: bool = False  # a hard bounce: the address is suppressed for good
    moves: int = 0

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
            "locale": self.locale,
            "timezone": self.timezone,
            "preferred_channel": self.preferred_channel,
            "email_opt_in": self.email_opt_in,
            "sms_opt_in": self.sms_opt_in,
            "attributes": {},
        }

    def reachable(self, channel: str) -> bool:
        if channel == "email":
            return self.email_opt_in and not self.bounced
        return self.sms_opt_in and not self.stopped


@dataclass
class OrderState:
    id: str
    customer_id: str
    placed_at: datetime
    promised_at: datetime
    status: str = "shipped"
    delivered_at: datetime | None = None

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "status": self.status,
            "placed_at": _iso(self.placed_at),
            "promised_at": _iso(self.promised_at),
            "delivered_at": _iso(self.delivered_at),
            "total": 42.5,
            "currency": "GBP",
            "carrier": "Royal Mail",
            "tracking_url": f"https://track.example.com/{self.id}",
            "attributes": {},
        }

    def late(self, now: datetime) -> bool:
        return self.status != "cancelled" and self.delivered_at is None and self.promised_at < now - _DAY


@dataclass
class CheckoutState:
    id: str
    customer_id: str
    started_at: datetime
    cart_value: float
    completed_at: datetime | None = None

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "cart_value": self.cart_value,
            "currency": "GBP",
            "items": [{"sku": "TEA-001", "name": "Earl Grey tea", "qty": 1, "price": self.cart_value}],
            "recovery_url": f"https://shop.example.com/cart/{self.id}",
            "attributes": {},
        }

    def stalled(self, now: datetime) -> bool:
        return (
            self.completed_at is None
            and self.cart_value > 0
            and now - 3 * _DAY < self.started_at < now - timedelta(hours=2)
        )


@dataclass
class SurveyState:
    id: str
    customer_id: str
    kind: str
    score: int
    responded_at: datetime

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "kind": self.kind,
            "score": self.score,
            "comment": "The parcel was late.",
            "responded_at": _iso(self.responded_at),
            "attributes": {},
        }

    def detractor(self, now: datetime) -> bool:
        return self.kind == "nps" and self.score <= 6 and self.responded_at > now - 7 * _DAY


_DAY = timedelta(days=1)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Sent:
    at: datetime
    timezone: str


class Soak:
    """One run: the deployment, the fake providers, the model of the world and the checks."""

    def __init__(self, root: Path, database_url: str, fake: FakeProviders, config: SoakConfig) -> None:
        self.config = config
        self.fake = fake
        self.rng = random.Random(config.seed)
        settings = write_workspace(
            root,
            database_url,
            delivery={"mode": "live", "concurrency": 4},
            twilio={"base_url": fake.url, "timeout": 5.0, "messaging_service_sid": "MG" + "5" * 32},
            sendgrid={"host": fake.url, "timeout": 5.0},
            server={"public_url": PUBLIC_URL},
        )
        self.outreach = Outreach.open(settings)
        self.engine = make_engine(database_url)
        self.limits = self.outreach.settings.delivery
        self.quiet = {
            rule.name: _quiet(rule.quiet_hours or self.limits.quiet_hours) for rule in self.outreach.rules()
        }
        self.key = SendGridKey()
        self.now = config.start
        self.http = TestClient(
            self.outreach.http_app(
                clock=lambda: self.now,
                secrets=Secrets(
                    twilio_auth_token=fake.twilio_auth_token, sendgrid_public_key=self.key.public_base64
                ),
            ),
            base_url="http://127.0.0.1:8080",
        )
        self.result = SoakResult(config)
        self.people: dict[str, Person] = {}
        self.orders: dict[str, OrderState] = {}
        self.checkouts: dict[str, CheckoutState] = {}
        self.surveys: dict[str, SurveyState] = {}
        self.later: list[tuple[datetime, str, str]] = []  # (when, kind, id): deliveries, completions
        self.sent: dict[str, list[Sent]] = {}  # customer → its messages as received
        self.sent_keys: set[str] = set()
        self.emails_sent: dict[str, str] = {}  # customer → an outbox id of an email it received
        self.starts: dict[str, dict[str, str]] = {}  # customer → its last START, replayed later
        self.seen_requests = 0
        self.sequence = 0

    # -- driving --------------------------------------------------------------------------------

    def run(self) -> SoakResult:
        started = time.monotonic()
        config = self.config
        self.people = {p.id: p for p in (self._person(i) for i in range(config.customers))}
        self._ingest("customers", [p.record() for p in self.people.values()])
        end = config.start + timedelta(days=config.days)
        tick = config.start + timedelta(minutes=self.rng.randrange(60))
        previous = config.start
        if config.fault_fraction:
            half = config.fault_fraction / 2
            self.fake.fail_fraction(TWILIO, half, status=503)
            self.fake.fail_fraction(SENDGRID, half, status=503)
            self.fake.fail_fraction(TWILIO, half, status=429, headers={"Retry-After": "120"})
            self.fake.fail_fraction(SENDGRID, half, status=429)
        last_tick = tick
        while tick < end:
            self._churn(previous, tick)
            self.now = tick
            self.outreach.tick(tick)
            self.result.ticks += 1
            self._check_sends(tick)
            last_tick = tick
            previous = tick
            # Ticks land at any minute, so sends meet quiet hours' edges in every offset.
            jitter = timedelta(minutes=self.rng.randrange(-20, 21))
            tick = (
                tick
                + config.tick_every
                + (jitter if config.tick_every > timedelta(minutes=40) else timedelta())
            )
        self.fake.clear_faults()
        self._check_ledger(last_tick)
        self.result.seconds = time.monotonic() - started
        return self.result

    def close(self) -> None:
        self.http.close()
        self.outreach.close()
        self.engine.dispose()

    def _person(self, index: int) -> Person:
        zone = self.rng.choice(ZONES)
        locale = "ar" if zone == "Asia/Riyadh" or self.rng.random() < 0.15 else "en"
        return Person(
            id=f"c-{index:05d}",
            name=f"Customer {index}",
            email=f"c{index:05d}@example.com",
            phone=f"+4479111{index:05d}",
            locale=locale,
            timezone=zone,
            preferred_channel=self.rng.choice(("email", "sms")),
            email_opt_in=self.rng.random() < 0.9,
            sms_opt_in=self.rng.random() < 0.8,
        )

    def _churn(self, start: datetime, end: datetime) -> None:
        """What happens to the world between two ticks, each thing at its own instant."""
        rng, hours = self.rng, (end - start).total_seconds() / 3600
        span = max(int((end - start).total_seconds()), 1)

        def at() -> datetime:
            return start + timedelta(seconds=rng.randrange(span))

        changes: dict[str, dict[str, dict[str, Any]]] = {"customers": {}, "orders": {}, "checkouts": {}}
        surveys: list[dict[str, Any]] = []
        hooks: list[tuple[datetime, str, Person]] = []
        moved_or_changed: set[str] = set()  # customers whose record is loaded again, as it is then
        for person in self.people.values():
            if rng.random() < 0.010 * hours:
                self._new_order(person, at(), changes["orders"])
            if rng.random() < 0.012 * hours:
                self._new_checkout(person, at(), changes["checkouts"])
            if rng.random() < 0.003 * hours:
                survey = SurveyState(
                    f"s-{self._next()}",
                    person.id,
                    rng.choice(("nps", "nps", "csat")),
                    rng.randrange(11),
                    at(),
                )
                self.surveys[survey.id] = survey
                surveys.append(survey.record())
            if rng.random() < 0.002 * hours:
                person.timezone = rng.choice([z for z in ZONES if z != person.timezone])
                person.moves += 1
                moved_or_changed.add(person.id)
                self.result.events["move"] += 1
            if rng.random() < 0.003 * hours:
                which = rng.choice(("email_opt_in", "sms_opt_in"))
                setattr(person, which, not getattr(person, which))
                moved_or_changed.add(person.id)
                self.result.events[f"ingest {which}={getattr(person, which)}"] += 1
            if rng.random() < 0.002 * hours:
                person.preferred_channel = "sms" if person.preferred_channel == "email" else "email"
                moved_or_changed.add(person.id)
            if rng.random() < 0.003 * hours:
                hooks.append((at(), "start" if person.stopped else "stop", person))
            # Drawn whatever the state, so the world does not depend on what outreach sent.
            if rng.random() < 0.0015 * hours and not person.bounced:
                hooks.append((at(), "bounce", person))
            if rng.random() < 0.004 * hours and person.id in self.starts and person.stopped:
                hooks.append((at(), "replay start", person))
        for when, kind, oid in self.later:
            if when < end:
                self._happen(kind, oid, when, changes)
        self.later = [item for item in self.later if item[0] >= end]
        # Records land in one load at an instant between the ticks; webhooks come at their own.
        load_at = at()
        work: list[tuple[datetime, int, Any]] = [(load_at, 0, None)]
        work.extend((when, 1 + n, (kind, person)) for n, (when, kind, person) in enumerate(hooks))
        for when, _order, item in sorted(work, key=lambda w: (w[0], w[1])):
            self.now = when
            if item is None:
                for pid in sorted(moved_or_changed):
                    changes["customers"][pid] = self.people[pid].record()
                for table in ("customers", "orders", "checkouts"):
                    if changes[table]:
                        self._ingest(table, list(changes[table].values()))
                if surveys:
                    self._ingest("survey_responses", surveys)
            else:
                self._webhook(*item)

    def _next(self) -> int:
        self.sequence += 1
        return self.sequence

    def _new_order(self, person: Person, when: datetime, out: dict[str, dict[str, Any]]) -> None:
        rng = self.rng
        placed = when - timedelta(hours=rng.uniform(0, 96))
        order = OrderState(
            f"o-{self._next()}", person.id, placed, placed + timedelta(hours=rng.uniform(24, 72))
        )
        self.orders[order.id] = order
        out[order.id] = order.record()
        fate = rng.random()
        if fate < 0.65:
            arrives = order.promised_at + timedelta(hours=rng.uniform(-24, 72))
            self.later.append((max(arrives, when + timedelta(minutes=5)), "deliver", order.id))
        elif fate < 0.8:
            self.later.append((when + timedelta(hours=rng.uniform(1, 96)), "cancel", order.id))

    def _new_checkout(self, person: Person, when: datetime, out: dict[str, dict[str, Any]]) -> None:
        rng = self.rng
        value = 0.0 if rng.random() < 0.1 else round(rng.uniform(5, 300), 2)
        checkout = CheckoutState(
            f"k-{self._next()}", person.id, when - timedelta(minutes=rng.uniform(0, 90)), value
        )
        self.checkouts[checkout.id] = checkout
        out[checkout.id] = checkout.record()
        if rng.random() < 0.5:
            self.later.append((when + timedelta(hours=rng.uniform(0.5, 40)), "complete", checkout.id))

    def _happen(
        self, kind: str, record_id: str, when: datetime, changes: dict[str, dict[str, dict[str, Any]]]
    ) -> None:
        if kind == "deliver":
            order = self.orders[record_id]
            if order.status != "cancelled":
                order.status, order.delivered_at = "delivered", when
                changes["orders"][order.id] = order.record()
        elif kind == "cancel":
            order = self.orders[record_id]
            if order.delivered_at is None:
                order.status = "cancelled"
                changes["orders"][order.id] = order.record()
        else:
            checkout = self.checkouts[record_id]
            checkout.completed_at = when
            changes["checkouts"][checkout.id] = checkout.record()

    def _ingest(self, table: str, records: list[dict[str, Any]]) -> None:
        self.outreach.ingest_records(table, records, now=self.now)
        self.result.events[f"ingest {table}"] += len(records)

    def _webhook(self, kind: str, person: Person) -> None:
        if kind == "bounce":
            # About the customer's last email when there was one, else found by the address alone.
            event: dict[str, Any] = {
                "event": "bounce",
                "type": "bounce",
                "email": person.email,
                "timestamp": int(self.now.timestamp()),
                "sg_event_id": f"ev-{self._next()}",
            }
            if person.id in self.emails_sent:
                event["outbox_id"] = self.emails_sent[person.id]
            body = json.dumps([event]).encode()
            stamp = str(int(self.now.timestamp()))
            response = self.http.post(
                "/webhooks/sendgrid/events",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Twilio-Email-Event-Webhook-Signature": self.key.sign(stamp, body),
                    "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                },
            )
            self._answered(response.status_code, 204, kind)
            person.bounced = True
            self.result.events["bounce"] += 1
            return
        if kind == "replay start":
            params = self.starts[person.id]  # the same signed request again: changes nothing
        else:
            words = STOP_WORDS if kind == "stop" else START_WORDS
            params = {
                "MessageSid": f"SM{self._next():032x}",
                "From": person.phone,
                "Body": self.rng.choice(words),
            }
        path = "/webhooks/twilio/inbound"
        signature = RequestValidator(self.fake.twilio_auth_token).compute_signature(PUBLIC_URL + path, params)
        response = self.http.post(path, data=params, headers={"X-Twilio-Signature": str(signature)})
        self._answered(response.status_code, 200, kind)
        self.result.events[kind] += 1
        if kind == "stop":
            person.stopped, person.sms_opt_in = True, False
        elif kind == "start":
            person.stopped, person.sms_opt_in = False, True
            self.starts[person.id] = params

    def _answered(self, status: int, expected: int, kind: str) -> None:
        if status != expected:
            self.result.violations.append(f"{self.now.isoformat()}: the {kind} webhook answered {status}")

    # -- the checks -------------------------------------------------------------------------------

    def _new_requests(self) -> list[Any]:
        requests = self.fake.requests()
        fresh = requests[self.seen_requests :]
        self.seen_requests = len(requests)
        self.result.provider_faults += sum(1 for r in fresh if r.outcome == "fault")
        return [r for r in fresh if r.outcome == "accepted"]

    def _check_sends(self, now: datetime) -> None:
        accepted = self._new_requests()
        if not accepted:
            return
        ids = [r.provider_id for r in accepted]
        with self.engine.connect() as connection:
            rows = {
                row.provider_id: row
                for row in connection.execute(
                    sa.select(ledger.contacts).where(ledger.contacts.c.provider_id.in_(ids))
                )
            }
            leads = [row.dedupe_key for row in rows.values()]
            members: dict[str, list[Any]] = {}
            for row in connection.execute(
                sa.select(ledger.contacts).where(ledger.contacts.c.group_key.in_(leads))
            ):
                members.setdefault(row.group_key, []).append(row)
        for request in accepted:
            row = rows.get(request.provider_id)
            if row is None:
                self._violation(
                    now, f"{request.provider} accepted {request.provider_id}, which no contact records"
                )
                continue
            self._check_one(now, request, row, members.get(row.dedupe_key, []))

    def _check_one(self, now: datetime, request: Any, row: Any, members: list[Any]) -> None:
        person = self.people[row.customer_id]
        channel = "sms" if request.provider == TWILIO else "email"
        what = f"{row.rule} {row.entity_id} to {row.customer_id} by {channel}"
        self.result.sends[f"{row.rule} {channel}" + (f" step {row.step}" if row.step > 1 else "")] += 1
        address = request.form.get("To") if channel == "sms" else _email_to(request.json)
        if row.channel != channel or address != (person.phone if channel == "sms" else person.email):
            self._violation(now, f"{what}: the ledger says {row.channel}, the request went to {address}")
        if row.dedupe_key in self.sent_keys:
            self._violation(now, f"{what}: sent twice ({row.dedupe_key})")
        self.sent_keys.add(row.dedupe_key)
        if not person.reachable(channel):
            why = (
                "after STOP"
                if channel == "sms" and person.stopped
                else "after a bounce"
                if channel == "email" and person.bounced
                else "without consent"
            )
            self._violation(now, f"{what}: sent {why}")
        zone = ZoneInfo(person.timezone)
        local = now.astimezone(zone)
        quiet = self.quiet.get(row.rule)
        if quiet is not None and quiet.contains(local.time()):
            self._violation(
                now, f"{what}: sent at {local:%H:%M} local in {person.timezone}, inside quiet hours {quiet}"
            )
        if row.expires_at is not None and now >= row.expires_at:
            self._violation(now, f"{what}: sent stale, after it expired at {row.expires_at.isoformat()}")
        entities = [row.entity_id, *(m.entity_id for m in members if m.state == State.GROUPED)]
        holding = [e for e in entities if self._holds(row.rule, e, now)]
        if not holding:
            self._violation(now, f"{what}: sent after its condition cleared")
        for member in members:
            if member.state == State.GROUPED and not self._holds(row.rule, member.entity_id, now):
                self._violation(now, f"{what}: named {member.entity_id}, whose condition had cleared")
        earlier = self.sent.setdefault(person.id, [])
        day, week = local.date(), _week(local.date())
        same_day = [s for s in earlier if s.at.astimezone(zone).date() == day]
        same_week = [s for s in earlier if _week(s.at.astimezone(zone).date()) == week]
        moved = {s.timezone for s in same_week} - {person.timezone}
        note = f" (moved from {', '.join(sorted(moved))})" if moved else ""
        if len(same_day) >= self.limits.max_per_day:
            self._violation(now, f"{what}: message {len(same_day) + 1} on {day} in {person.timezone}{note}")
        if len(same_week) >= self.limits.max_per_week:
            self._violation(
                now, f"{what}: message {len(same_week) + 1} in the week of {day} in {person.timezone}{note}"
            )
        earlier.append(Sent(now, person.timezone))
        if channel == "email":
            self.emails_sent[person.id] = row.id

    def _holds(self, rule: str, entity_id: str, now: datetime) -> bool:
        if rule == LATE:
            return entity_id in self.orders and self.orders[entity_id].late(now)
        if rule == STALLED:
            return entity_id in self.checkouts and self.checkouts[entity_id].stalled(now)
        if rule == DETRACTOR:
            return entity_id in self.surveys and self.surveys[entity_id].detractor(now)
        return False

    def _check_ledger(self, last_tick: datetime) -> None:
        """Nothing lost: the ledger and the providers agree, nothing is stuck, every match decided."""
        self._check_sends(last_tick)
        with self.engine.connect() as connection:
            rows = list(connection.execute(sa.select(ledger.contacts)))
        self.result.states = Counter(row.state for row in rows)
        accepted = [r.provider_id for r in self.fake.requests() if r.outcome == "accepted"]
        sent = [row.provider_id for row in rows if row.state == State.SENT]
        if Counter(accepted) != Counter(sent):
            self._violation(
                last_tick,
                f"providers accepted {len(accepted)} messages, the ledger says {len(sent)} were sent"
                f" ({len(set(accepted) ^ set(sent))} differ)",
            )
        for row in rows:
            what = f"{row.rule} {row.entity_id} ({row.state}: {row.reason})"
            if row.state in (State.CLAIMED, State.SENDING):
                self._violation(last_tick, f"{what}: still {row.state} after the last tick")
            elif row.state == State.PENDING and (row.send_at is None or row.send_at <= last_tick):
                self._violation(last_tick, f"{what}: due {row.send_at} and never sent")
            elif row.state == State.UNKNOWN:
                self._violation(last_tick, f"{what}: a send whose outcome is unknown")
            elif row.state == State.FAILED and (row.last_error or "").startswith(RENDER_ERROR):
                self._violation(last_tick, f"{what}: a shipped template could not render it")
            elif row.state not in FINAL_STATES | HELD_STATES | {State.PENDING}:
                self._violation(last_tick, f"{what}: unexpected state")
            elif (
                row.state == State.SKIPPED
                and row.recheck_at is not None
                and row.recheck_at < last_tick - self.config.tick_every
                and self._holds(row.rule, row.entity_id, last_tick)
            ):
                self._violation(last_tick, f"{what}: held back until {row.recheck_at}, never decided again")
        decided = {(row.rule, row.entity_id) for row in rows if row.step == 1}
        for rule, records in ((LATE, self.orders), (STALLED, self.checkouts), (DETRACTOR, self.surveys)):
            for entity_id in records:
                holds_long = self._holds(rule, entity_id, last_tick) and self._holds(
                    rule, entity_id, last_tick - self.config.tick_every * 2
                )
                if holds_long and (rule, entity_id) not in decided:
                    self._violation(last_tick, f"{rule} {entity_id}: holds and was never decided")

    def _violation(self, now: datetime, text: str) -> None:
        self.result.violations.append(f"{now.isoformat()}: {text}")


def _quiet(text: str) -> QuietHours | None:
    return None if text == OFF else QuietHours.parse(text)


def _week(day: date) -> tuple[int, int]:
    iso = day.isocalendar()
    return iso.year, iso.week


def _email_to(document: Mapping[str, Any] | Any) -> str | None:
    try:
        return str(document["personalizations"][0]["to"][0]["email"])
    except (KeyError, IndexError, TypeError):
        return None


def run_soak(root: Path, database_url: str, fake: FakeProviders, config: SoakConfig) -> SoakResult:
    """Simulate CONFIG on a migrated database at DATABASE_URL, delivering through FAKE (the
    environment must point the SDKs at it: `fake.environ()`), with the deployment under ROOT."""
    soak = Soak(root, database_url, fake, config)
    try:
        return soak.run()
    finally:
        soak.close()


def iter_violations(result: SoakResult, limit: int = 40) -> Iterator[str]:
    yield from result.violations[:limit]
    if len(result.violations) > limit:
        yield f"… and {len(result.violations) - limit} more"

"""Matches → decisions → outbox → sends: the orchestration of delivery, with no policy of its own.

`plan` evaluates rules and asks `outreach.policy` what to do with each match (reading the
ledger, writing nothing); `evaluate` records those decisions; `Dispatcher` claims due contacts,
re-checks each rule's condition on that one entity, renders, sends through a channel and
records the outcome. Every function takes `now`: the clock is read by the caller, once a tick.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from outreach import policy
from outreach.channels import SUPPRESSING_CODES, WITHDRAWS_SMS_CONSENT_CODES, Channel, OutgoingMessage
from outreach.errors import PermanentDeliveryError, RenderError, TransientDeliveryError, UnknownOutcomeError
from outreach.rendering import Renderer, RuleInfo
from outreach.rules.evaluate import condition_holds, find_matches
from outreach.rules.loader import Rule, RuleSet
from outreach.rules.schema import ABOUT_ENTITIES
from outreach.settings import Settings
from outreach.state import ledger
from outreach.state.models import Customer

log = structlog.get_logger("outreach.delivery")

PAUSE = "pause"


def silence_key(rule: str) -> str:
    return f"silence:{rule}"


def limits_of(settings: Settings) -> policy.Limits:
    d = settings.delivery
    return policy.Limits(quiet_hours=d.quiet_hours, max_per_day=d.max_per_day, max_per_week=d.max_per_week)


def rule_policy(rule: Rule) -> policy.RulePolicy:
    return policy.RulePolicy(
        name=rule.name, about=rule.about, channels=rule.channels, priority=rule.priority,
        cooldown=rule.cooldown, delay=rule.delay, expires=rule.expires,
        quiet_hours=rule.quiet_hours, holdout=rule.holdout,
    )


def recipient(customer: Customer, suppressed: set[str]) -> policy.Recipient:
    return policy.Recipient(
        id=customer.id, timezone=customer.timezone, preferred_channel=customer.preferred_channel,
        email=customer.email, phone=customer.phone, email_opt_in=bool(customer.email_opt_in),
        sms_opt_in=bool(customer.sms_opt_in), suppressed=frozenset(suppressed),
    )


def past_contact(row: ledger.Contact) -> policy.PastContact:
    return policy.PastContact(
        rule=row.rule, dedupe_key=row.dedupe_key, channel=row.channel, state=row.state,
        decided_at=row.decided_at, send_at=row.send_at, expires_at=row.expires_at,
    )


def plan(connection: Connection, rules: Sequence[Rule], now: datetime, limits: policy.Limits, *, customer_id: str | None = None) -> list[policy.Decision]:
    """What would be decided for every match of RULES at NOW; reads the ledger, writes nothing."""
    matches = [(rule, match) for rule in rules for match in find_matches(connection, rule, now, customer_id=customer_id)]
    if not matches:
        return []
    ids = {match.customer_id for _rule, match in matches}
    people = ledger.customers_by_id(connection, ids)
    suppressed = ledger.suppressed_channels(connection, ids)
    # Skipped and suppressed rows are passed too: policy decides them again, keeping their expiry.
    history = {cid: [past_contact(row) for row in rows] for cid, rows in ledger.contacts_of(connection, ids).items()}
    candidates = [
        policy.Candidate(rule_policy(rule), match.entity_id, recipient(people[match.customer_id], suppressed.get(match.customer_id, set())))
        for rule, match in matches
    ]
    return policy.decide(candidates, history, limits, now)


def decision_row(decision: policy.Decision, rule: Rule, now: datetime) -> dict[str, Any]:
    return {
        "id": ledger.new_id(),
        "dedupe_key": decision.dedupe_key,
        "rule": decision.rule,
        "about": rule.about,
        "entity_id": decision.entity_id,
        "customer_id": decision.customer_id,
        "channel": decision.channel,
        "state": decision.state,
        "reason": decision.reason,
        "priority": rule.priority,
        "decided_at": now,
        "send_at": decision.send_at,
        "expires_at": decision.expires_at,
        "updated_at": now,
        "attempts": 0,
        "steps": [list(step) for step in decision.steps],
    }


@dataclass(frozen=True)
class TickResult:
    decisions: list[policy.Decision]
    recorded: int
    tasks: list[str]


def evaluate(engine: Engine, rules: Sequence[Rule], now: datetime, limits: policy.Limits) -> TickResult:
    """Evaluate RULES at NOW and record every new decision in the ledger, in one transaction.

    A rule with `escalate: true` also opens a task for a person for each contact it decides
    (whether or not the message can be sent: a detractor without consent still deserves a call).
    """
    by_name = {rule.name: rule for rule in rules}
    opened: list[str] = []
    with engine.begin() as connection:
        decisions = plan(connection, rules, now, limits)
        rows = [decision_row(d, by_name[d.rule], now) for d in decisions if d.state != "duplicate"]
        recorded = ledger.record_decisions(connection, rows)
        for d in decisions:
            if by_name[d.rule].escalate and d.state not in ("duplicate", "skipped"):
                summary = f"{d.rule}: reach out to customer {d.customer_id} in person ({by_name[d.rule].about} {d.entity_id})"
                task = ledger.open_task(connection, d.dedupe_key, d.rule, d.customer_id, d.entity_id, summary, now)
                if task is not None:
                    opened.append(task)
    return TickResult(decisions, recorded, opened)


# -- dispatch ---------------------------------------------------------------------------------
@dataclass
class DispatchStats:
    sent: int = 0
    cancelled: int = 0
    failed: int = 0
    retried: int = 0
    unknown: int = 0
    expired: int = 0
    held: int = 0
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # dedupe key → (state, reason)

    def add(self, dedupe_key: str, state: str, reason: str) -> None:
        attribute = {"sent": "sent", "cancelled": "cancelled", "failed": "failed", "pending": "retried", "unknown": "unknown", "expired": "expired"}.get(state)
        if attribute:
            setattr(self, attribute, getattr(self, attribute) + 1)
        self.outcomes[dedupe_key] = (state, reason)


def _entities(connection: Connection, claimed: Sequence[ledger.Contact]) -> dict[tuple[str, str], Any]:
    """The records the claimed contacts are about, keyed by (about, id): one query per kind."""
    found: dict[tuple[str, str], Any] = {}
    for about in {c.about for c in claimed if c.about != "customer"}:
        model = ABOUT_ENTITIES[about]
        table = model.__table__  # type: ignore[attr-defined]
        ids = [c.entity_id for c in claimed if c.about == about]
        for row in connection.execute(sa.select(table).where(table.c.id.in_(ids))).mappings():
            found[(about, row["id"])] = model(**row)
    return found


class Dispatcher:
    """Sends due contacts: claim → re-check → render → mark sending → send → record."""

    def __init__(
        self,
        engine: Engine,
        rules: Callable[[], RuleSet],
        renderer: Callable[[], Renderer],
        channels: dict[str, Channel],
        *,
        worker: str,
        lease: timedelta = timedelta(minutes=5),
        batch: int = 100,
        concurrency: int = 8,
        at_least_once: bool = False,
        observe: Callable[[str, str, str, float | None], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.renderer = renderer
        self.channels = channels
        self.worker = worker
        self.lease = lease
        self.batch = batch
        self.concurrency = concurrency
        self.at_least_once = at_least_once
        self.observe = observe
        self.rng = rng or random.Random()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="send") if concurrency > 1 else None
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def held_rules(self, connection: Connection, now: datetime) -> list[str] | None:
        """Rules whose contacts must wait (silenced); None when everything is paused."""
        controls = ledger.active_controls(connection, now)
        if PAUSE in controls:
            return None
        return [key.split(":", 1)[1] for key in controls if key.startswith("silence:")]

    def dispatch_once(self, now: datetime, clock: Callable[[], datetime] | None = None) -> DispatchStats:
        """Send every contact due at NOW (in batches) and return what happened."""
        stats = DispatchStats()
        clock = clock or (lambda: now)
        with self.engine.begin() as connection:
            ledger.recover_leases(connection, now, at_least_once=self.at_least_once)
            held = self.held_rules(connection, now)
        if held is None:
            stats.held = 1
            return stats
        while True:
            with self.engine.begin() as connection:
                claimed = ledger.claim_due(connection, self.worker, now, self.lease, self.batch, held)
                # Read the batch's customers and records at once rather than per contact; they
                # are read after the claim, so each re-check sees the state as of now.
                people = ledger.customers_by_id(connection, [c.customer_id for c in claimed])
                records = _entities(connection, claimed)
            if not claimed:
                return stats

            def deliver(contact: ledger.Contact) -> None:
                customer = people.get(contact.customer_id)
                entity = customer if contact.about == "customer" else records.get((contact.about, contact.entity_id))
                self._deliver(contact, customer, entity, clock, stats)

            if self._pool is None:
                for contact in claimed:
                    deliver(contact)
            else:
                list(self._pool.map(deliver, claimed))
            if len(claimed) < self.batch:
                return stats

    def _finish(self, connection: Connection, contact: ledger.Contact, state: str, reason: str, now: datetime, stats: DispatchStats, **values: Any) -> None:
        ledger.transition(connection, contact.id, ("claimed", "sending"), now, state=state, reason=reason, claimed_by=None, lease_until=None, **values)
        with self._lock:
            stats.add(contact.dedupe_key, state, reason)
        log.info("contact", outbox_id=contact.id, rule=contact.rule, customer_id=contact.customer_id, channel=contact.channel, state=state, reason=reason)

    def _deliver(self, contact: ledger.Contact, customer: Customer | None, entity: Any, clock: Callable[[], datetime], stats: DispatchStats) -> None:
        now = clock()
        try:
            self._deliver_one(contact, customer, entity, clock, stats)
        except Exception as exc:  # one bad contact must not stop the others; it stays visible
            log.exception("dispatch_error", outbox_id=contact.id, rule=contact.rule)
            with self.engine.begin() as connection:
                self._finish(connection, contact, "failed", f"internal error: {exc}", now, stats, last_error=repr(exc))

    def _deliver_one(self, contact: ledger.Contact, customer: Customer | None, entity: Any, clock: Callable[[], datetime], stats: DispatchStats) -> None:
        now = clock()
        expired = policy.at_send_time(contact.expires_at, now)
        with self.engine.begin() as connection:
            if expired:
                self._finish(connection, contact, "expired", expired, now, stats)
                return
            try:
                rule = self.rules().get(contact.rule)
            except Exception:
                self._finish(connection, contact, "cancelled", "the rule no longer exists", now, stats)
                return
            if customer is None or entity is None:
                self._finish(connection, contact, "cancelled", "the customer or the record is gone", now, stats)
                return
            records = {"customer": customer, rule.about: entity}
            if not condition_holds(rule.condition, records, now):
                self._finish(connection, contact, "cancelled", "the condition no longer holds at send time", now, stats)
                return
            channel = contact.channel or ""
            address = customer.email if channel == "email" else customer.phone
            if not address or channel not in self.channels:
                self._finish(connection, contact, "cancelled", f"no {channel or 'channel'} address for this customer any more", now, stats)
                return
            try:
                rendered = self.renderer().render(
                    template=rule.template, channel=channel, customer=customer, about=rule.about,
                    entity=None if rule.about == "customer" else entity,
                    rule=RuleInfo(rule.name, rule.about, rule.channels, rule.template, rule.description),
                    now=now,
                )
            except RenderError as exc:
                self._finish(connection, contact, "failed", f"could not render: {exc}", now, stats, last_error=str(exc))
                return
            message = OutgoingMessage(
                outbox_id=contact.id, channel=channel, to=address or "", customer_id=customer.id,
                rule=rule.name, locale=rendered.locale, subject=rendered.subject, text=rendered.text,
                html=rendered.html, sms=rendered.sms, to_name=customer.name or None,
            )
            # Committed before the request leaves: after a crash this row reads "may have been sent".
            ledger.transition(connection, contact.id, ("claimed",), now, state="sending", attempts=contact.attempts + 1, lease_until=now + self.lease)
        started = clock()
        try:
            receipt = self.channels[channel].send(message)
        except TransientDeliveryError as exc:
            self._retry(contact, exc, clock(), stats)
            self._observe(channel, "transient", started, clock)
            return
        except PermanentDeliveryError as exc:
            self._permanent(contact, exc, clock(), stats)
            self._observe(channel, "permanent", started, clock)
            return
        except UnknownOutcomeError as exc:
            with self.engine.begin() as connection:
                self._finish(connection, contact, "unknown", f"outcome unknown ({exc}): not resent", clock(), stats, last_error=str(exc))
            self._observe(channel, "unknown", started, clock)
            return
        finished = clock()
        with self.engine.begin() as connection:
            self._finish(connection, contact, "sent", f"sent by {receipt.provider}", finished, stats, provider=receipt.provider, provider_id=receipt.provider_id, sent_at=finished)
        self._observe(channel, "sent", started, clock)

    def _observe(self, channel: str, outcome: str, started: datetime, clock: Callable[[], datetime]) -> None:
        if self.observe is not None:
            self.observe(channel, outcome, self.channels[channel].name, (clock() - started).total_seconds())

    def _retry(self, contact: ledger.Contact, exc: TransientDeliveryError, now: datetime, stats: DispatchStats) -> None:
        with self._lock:
            at = policy.retry_at(contact.attempts + 1, now, exc.retry_after, contact.expires_at, self.rng)
        with self.engine.begin() as connection:
            if at is None:
                self._finish(connection, contact, "failed", f"gave up after {contact.attempts + 1} attempt(s): {exc}", now, stats, last_error=str(exc))
            else:
                self._finish(connection, contact, "pending", f"provider busy ({exc}); retrying at {at.isoformat()}", now, stats, send_at=at, last_error=str(exc))

    def _permanent(self, contact: ledger.Contact, exc: PermanentDeliveryError, now: datetime, stats: DispatchStats) -> None:
        with self.engine.begin() as connection:
            self._finish(connection, contact, "failed", f"refused by the provider: {exc}", now, stats, last_error=str(exc))
            if exc.code in SUPPRESSING_CODES and contact.channel:
                ledger.add_suppression(connection, contact.customer_id, contact.channel, str(exc), exc.code, now)
            if exc.code in WITHDRAWS_SMS_CONSENT_CODES:
                ledger.withdraw_sms_consent(connection, contact.customer_id)

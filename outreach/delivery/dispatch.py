"""The dispatcher: claim due contacts → re-check at send time → render → send → record.

A dispatcher works in batches: each is claimed under a lease, re-checked against the state as
it is then, rendered, and sent a chunk at a time; outcomes are written per chunk.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.engine import Connection, Engine

from outreach import policy
from outreach.channels import SUPPRESSING_CODES, WITHDRAWS_SMS_CONSENT_CODES, Channel, OutgoingMessage
from outreach.errors import (
    PermanentDeliveryError,
    RenderError,
    RulesError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from outreach.rendering import Renderer, RuleInfo
from outreach.rules.evaluate import condition_holds
from outreach.rules.loader import RuleSet
from outreach.state import ledger, records

log = structlog.get_logger("outreach.delivery")


@dataclass
class DispatchStats:
    sent: int = 0
    cancelled: int = 0
    failed: int = 0
    retried: int = 0
    unknown: int = 0
    expired: int = 0
    paused: bool = False  # nothing was sent: `outreach pause` is in force
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # dedupe key → (state, reason)

    def add(self, dedupe_key: str, state: str, reason: str) -> None:
        attribute = {
            "sent": "sent",
            "cancelled": "cancelled",
            "failed": "failed",
            "pending": "retried",
            "unknown": "unknown",
            "expired": "expired",
        }.get(state)
        if attribute:
            setattr(self, attribute, getattr(self, attribute) + 1)
        self.outcomes[dedupe_key] = (state, reason)


@dataclass(frozen=True)
class _Ready:
    """A contact that passed its send-time checks, with its rendered message."""

    contact: ledger.Claimed
    message: OutgoingMessage


class Dispatcher:
    """Sends due contacts, a batch at a time: claim → re-check → render → mark sending → send → record.

    Database work is per batch and per chunk, not per message: a batch's customers and records
    are read in one query per kind; each chunk of `concurrency` contacts is marked `sending` in
    one statement just before its requests leave, and its outcomes are written in one
    transaction. After a crash, rows still `sending` (at most two chunks per dispatcher) become
    `unknown` and are not resent.
    """

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
        stopping: threading.Event | None = None,
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
        # Once set, no further batch is claimed; batches already claimed are sent to the end
        # (their requests may be on the wire) and unclaimed contacts wait for the next process.
        self.stopping = stopping or threading.Event()
        self._pool = (
            ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="send")
            if concurrency > 1
            else None
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def held_rules(self, connection: Connection, now: datetime) -> list[str] | None:
        """Rules whose contacts must wait (silenced); None when everything is paused."""
        controls = ledger.active_controls(connection, now)
        if ledger.PAUSE in controls:
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
            stats.paused = True
            return stats
        while not self.stopping.is_set():
            with self.engine.begin() as connection:
                claimed = ledger.claim_due(connection, self.worker, now, self.lease, self.batch, held)
                # Read after the claim, so each re-check sees the records as they are now.
                people = records.rows_by_id(connection, "customer", [c.customer_id for c in claimed])
                entities = {
                    about: records.rows_by_id(
                        connection, about, [c.entity_id for c in claimed if c.about == about]
                    )
                    for about in {c.about for c in claimed if c.about != "customer"}
                }
            if not claimed:
                return stats
            self._dispatch_batch(claimed, people, entities, clock, stats)
            if len(claimed) < self.batch:
                return stats
        return stats

    def _dispatch_batch(
        self,
        claimed: Sequence[ledger.Claimed],
        people: dict[str, dict[str, Any]],
        entities: dict[str, dict[str, dict[str, Any]]],
        clock: Callable[[], datetime],
        stats: DispatchStats,
    ) -> None:
        """A chunk of `concurrency` contacts at a time, pipelined: while one chunk's requests are
        on the wire, the next is checked and rendered, and one commit both records the outcomes
        of the chunk before and marks the next one `sending` (a durable commit costs
        milliseconds on PostgreSQL; this way it overlaps the sends). After a crash at most two
        chunks read `unknown`."""
        unwritten: list[ledger.Outcome] = []
        in_flight: list[Future[ledger.Outcome]] = []
        for start in range(0, len(claimed), self.concurrency):
            now = clock()
            ready: list[_Ready] = []
            for contact in claimed[start : start + self.concurrency]:
                customer = people.get(contact.customer_id)
                entity = (
                    customer
                    if contact.about == "customer"
                    else entities.get(contact.about, {}).get(contact.entity_id)
                )
                try:
                    checked = self._prepare(contact, customer, entity, now)
                except Exception as exc:  # one bad contact must not stop the others; it stays visible
                    log.exception("dispatch_error", outbox_id=contact.id, rule=contact.rule)
                    checked = ledger.Outcome(
                        contact, "failed", f"internal error: {exc}", last_error=repr(exc)
                    )
                if isinstance(checked, _Ready):
                    ready.append(checked)
                else:
                    unwritten.append(checked)
            with self.engine.begin() as connection:
                self._write(connection, unwritten, now)
                # Committed before the requests leave: after a crash these rows read "may have been sent".
                ledger.mark_sending(connection, [r.contact.id for r in ready], now, now + self.lease)
            self._record(unwritten, stats)
            submitted = [self._submit(r, clock) for r in ready]
            unwritten = [future.result() for future in in_flight]
            in_flight = submitted
        unwritten.extend(future.result() for future in in_flight)
        if unwritten:
            with self.engine.begin() as connection:
                self._write(connection, unwritten, clock())
            self._record(unwritten, stats)

    def _submit(self, ready: _Ready, clock: Callable[[], datetime]) -> Future[ledger.Outcome]:
        if self._pool is not None:
            return self._pool.submit(self._send, ready, clock)
        future: Future[ledger.Outcome] = Future()
        future.set_result(self._send(ready, clock))
        return future

    def _write(self, connection: Connection, outcomes: Sequence[ledger.Outcome], now: datetime) -> None:
        """Record outcomes; a permanent refusal of an address also suppresses it."""
        ledger.finish(connection, outcomes, now)
        for outcome in outcomes:
            if outcome.state != "failed" or not outcome.code:
                continue
            if outcome.code in SUPPRESSING_CODES and outcome.contact.channel:
                ledger.add_suppression(
                    connection,
                    outcome.contact.customer_id,
                    outcome.contact.channel,
                    outcome.reason,
                    outcome.code,
                    now,
                )
            if outcome.code in WITHDRAWS_SMS_CONSENT_CODES:
                ledger.withdraw_sms_consent(connection, outcome.contact.customer_id)

    def _record(self, outcomes: Sequence[ledger.Outcome], stats: DispatchStats) -> None:
        for outcome in outcomes:
            stats.add(outcome.contact.dedupe_key, outcome.state, outcome.reason)
            log.info(
                "contact",
                outbox_id=outcome.contact.id,
                rule=outcome.contact.rule,
                customer_id=outcome.contact.customer_id,
                channel=outcome.contact.channel,
                state=outcome.state,
                reason=outcome.reason,
            )

    def _prepare(
        self, contact: ledger.Claimed, customer: dict[str, Any] | None, entity: Any, now: datetime
    ) -> _Ready | ledger.Outcome:
        """Send-time checks and rendering: a message ready to go, or the contact's final outcome."""
        expired = policy.at_send_time(contact.expires_at, now)
        if expired:
            return ledger.Outcome(contact, "expired", expired)
        try:
            rule = self.rules().get(contact.rule)
        except RulesError:
            return ledger.Outcome(contact, "cancelled", "the rule no longer exists")
        if customer is None or entity is None:
            return ledger.Outcome(contact, "cancelled", "the customer or the record is gone")
        if not condition_holds(rule.condition, {"customer": customer, rule.about: entity}, now):
            return ledger.Outcome(contact, "cancelled", "the condition no longer holds at send time")
        channel = contact.channel or ""
        address = customer.get("email") if channel == "email" else customer.get("phone")
        if not address or channel not in self.channels:
            return ledger.Outcome(
                contact, "cancelled", f"no {channel or 'channel'} address for this customer any more"
            )
        try:
            rendered = self.renderer().render(
                template=rule.template,
                channel=channel,
                customer=customer,
                about=rule.about,  # type: ignore[arg-type]
                entity=None if rule.about == "customer" else entity,
                rule=RuleInfo(rule.name, rule.about, rule.channels, rule.template, rule.description),
                now=now,
            )
        except RenderError as exc:
            return ledger.Outcome(contact, "failed", f"could not render: {exc}", last_error=str(exc))
        message = OutgoingMessage(
            outbox_id=contact.id,
            channel=channel,
            to=address,
            customer_id=contact.customer_id,
            rule=rule.name,
            locale=rendered.locale,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            sms=rendered.sms,
            to_name=customer.get("name") or None,
        )
        return _Ready(contact, message)

    def _send(self, ready: _Ready, clock: Callable[[], datetime]) -> ledger.Outcome:
        contact, channel = ready.contact, ready.message.channel
        started = clock()
        try:
            receipt = self.channels[channel].send(ready.message)
        except TransientDeliveryError as exc:
            outcome = self._retry(contact, exc, clock())
            self._observe(channel, "transient", started, clock)
            return outcome
        except PermanentDeliveryError as exc:
            self._observe(channel, "permanent", started, clock)
            return ledger.Outcome(
                contact, "failed", f"refused by the provider: {exc}", last_error=str(exc), code=exc.code
            )
        except UnknownOutcomeError as exc:
            self._observe(channel, "unknown", started, clock)
            return ledger.Outcome(
                contact, "unknown", f"outcome unknown ({exc}): not resent", last_error=str(exc)
            )
        finished = clock()
        self._observe(channel, "sent", started, clock)
        return ledger.Outcome(
            contact,
            "sent",
            f"sent by {receipt.provider}",
            provider=receipt.provider,
            provider_id=receipt.provider_id,
            sent_at=finished,
        )

    def _observe(self, channel: str, outcome: str, started: datetime, clock: Callable[[], datetime]) -> None:
        if self.observe is not None:
            self.observe(channel, outcome, self.channels[channel].name, (clock() - started).total_seconds())

    def _retry(self, contact: ledger.Claimed, exc: TransientDeliveryError, now: datetime) -> ledger.Outcome:
        attempt = contact.attempts + 1
        at = policy.retry_at(
            attempt, now, exc.retry_after, contact.expires_at, random.Random(self.rng.random())
        )
        if at is None:
            return ledger.Outcome(
                contact, "failed", f"gave up after {attempt} attempt(s): {exc}", last_error=str(exc)
            )
        return ledger.Outcome(
            contact,
            "pending",
            f"provider busy ({exc}); retrying at {at.isoformat()}",
            send_at=at,
            last_error=str(exc),
        )

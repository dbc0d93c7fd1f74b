"""The dispatcher: claim due contacts → the send-time gate → render → send → record.

A dispatcher works in batches: each is claimed under a lease (renewed while the batch is worked
through), checked again against the state as it is then (`policy.gate`: the condition, expiry,
consent and suppressions, quiet hours in the customer's current time zone, pause and silences,
the caps of the local day it leaves in), rendered, and sent a chunk at a time. It marks
`sending` and records outcomes only for contacts it still owns: a contact another worker took
over after a lease ran out is never sent twice.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy.engine import Connection, Engine

from outreach import policy
from outreach.channels import SUPPRESSING_CODES, WITHDRAWS_SMS_CONSENT_CODES, Channel, OutgoingMessage
from outreach.delivery.decide import past_contact, recipient, rule_policy
from outreach.errors import (
    PermanentDeliveryError,
    RenderError,
    RulesError,
    TransientDeliveryError,
    UnknownOutcomeError,
)
from outreach.quiet_hours import QuietHours
from outreach.rendering import Renderer, RuleInfo
from outreach.rules.evaluate import condition_holds
from outreach.rules.loader import Rule, RuleSet
from outreach.state import ledger, records
from outreach.vocabulary import State

log = structlog.get_logger("outreach.delivery")

RENDER_ERROR = "render: "
# Messages in the customer's hands, or that may be: what the gate's caps count.
_DELIVERED = frozenset({State.SENDING, State.SENT, State.UNKNOWN})
_FREES_A_PLACE = frozenset(
    {State.CANCELLED, State.EXPIRED, State.FAILED, State.SUPPRESSED, State.SKIPPED}
)  # how `last_error` marks a contact that failed to render (revived by a good reload)


@dataclass
class DispatchStats:
    sent: int = 0
    cancelled: int = 0
    failed: int = 0
    retried: int = 0
    unknown: int = 0
    expired: int = 0
    deferred: int = 0  # quiet hours at send time
    held: int = 0  # a silence that began after the claim
    rerouted: int = 0  # sent on another channel: consent changed while it waited
    suppressed: int = 0  # no consented channel left at send time
    paused: bool = False  # nothing was sent: `outreach pause` is in force
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)  # dedupe key → (state, reason)

    def add(self, dedupe_key: str, state: str, reason: str) -> None:
        attribute = {
            State.SENT: "sent",
            State.CANCELLED: "cancelled",
            State.FAILED: "failed",
            State.UNKNOWN: "unknown",
            State.EXPIRED: "expired",
            State.SUPPRESSED: "suppressed",
        }.get(State(state))
        if attribute:
            setattr(self, attribute, getattr(self, attribute) + 1)
        self.outcomes[dedupe_key] = (state, reason)


@dataclass(frozen=True)
class _Ready:
    """A contact that passed the send-time gate, with its rendered message."""

    contact: ledger.Claimed
    message: OutgoingMessage
    rerouted: bool
    quiet: QuietHours | None  # what a retry must wait out, in the customer's zone
    timezone: str


@dataclass(frozen=True)
class _Batch:
    """What the gate reads for a batch, as it is after the claim."""

    people: dict[str, records.Record]
    entities: dict[str, dict[str, records.Record]]
    suppressed: dict[str, set[str]]
    controls: policy.Controls
    # The customers' contacts, for inhibitions and caps; a message passing the gate is added.
    history: dict[str, list[policy.PastContact]]
    members: dict[str, list[ledger.Member]]  # lead dedupe key → the matches waiting in its message
    # Filled by the gate: member id → whether its record still holds (goes in the message).
    included: dict[str, bool] = field(default_factory=dict)


# The batch claimed after the one being sent, with what the gate reads for it; None: no more.
_Following = tuple[list[ledger.Claimed], "_Batch"] | None


class Dispatcher:
    """Sends due contacts, a batch at a time: claim → gate → render → mark sending → send → record.

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
        limits: policy.Limits,
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
        self.limits = limits
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

    def dispatch_once(self, now: datetime, clock: Callable[[], datetime] | None = None) -> DispatchStats:
        """Send every contact due at NOW (in batches) and return what happened."""
        stats = DispatchStats()
        clock = clock or (lambda: now)
        with self.engine.begin() as connection:
            ledger.recover_leases(connection, now, at_least_once=self.at_least_once)
            controls = controls_at(connection, now)
        if controls.paused is not None:
            stats.paused = True
            return stats
        held = sorted(controls.silenced or {})
        following = self._claim(now, held)
        while following is not None:
            claimed, batch = following
            self._batch = batch
            # A full batch claims the next one while its own last requests are on the wire, so
            # the senders are not left idle during the claim and its reads.
            full = len(claimed) >= self.batch
            following = self._dispatch_batch(
                claimed, batch, now, clock, stats, then=(lambda: self._claim(now, held)) if full else None
            )
        return stats

    def _claim(self, now: datetime, held: Sequence[str]) -> tuple[list[ledger.Claimed], _Batch] | None:
        """The next batch of due contacts and what the gate reads for it; None when there is none
        (or the dispatcher is stopping)."""
        if self.stopping.is_set():
            return None
        with self.engine.begin() as connection:
            claimed = ledger.claim_due(connection, self.worker, now, self.lease, self.batch, held)
            # Read after the claim, so the gate sees the state as it is now.
            return (claimed, self._read(connection, claimed, now)) if claimed else None

    def _read(self, connection: Connection, claimed: Sequence[ledger.Claimed], now: datetime) -> _Batch:
        customer_ids = [c.customer_id for c in claimed]
        rules = {rule.name: rule for rule in self._rule_set() or ()}
        grouped = [c.dedupe_key for c in claimed if c.rule in rules and rules[c.rule].group]
        members = ledger.group_members(connection, grouped) if grouped else {}
        wanted: dict[str, set[str]] = {}
        for c in claimed:
            if c.about != "customer":
                wanted.setdefault(c.about, set()).add(c.entity_id)
                for member in members.get(c.dedupe_key, ()):
                    wanted[c.about].add(member.entity_id)
        # Every customer's history: inhibitions read it, and the caps of the day a message leaves.
        history = ledger.contacts_of(connection, customer_ids)
        return _Batch(
            people=records.rows_by_id(connection, "customer", customer_ids),
            entities={about: records.rows_by_id(connection, about, ids) for about, ids in wanted.items()},
            suppressed=ledger.suppressed_channels(connection, customer_ids),
            controls=controls_at(connection, now),
            history={cid: [past_contact(row) for row in rows] for cid, rows in history.items()},
            members=members,
        )

    def _dispatch_batch(
        self,
        claimed: Sequence[ledger.Claimed],
        batch: _Batch,
        claimed_at: datetime,
        clock: Callable[[], datetime],
        stats: DispatchStats,
        then: Callable[[], _Following] | None = None,
    ) -> _Following:
        """A chunk of `concurrency` contacts at a time, pipelined: while one chunk's requests are
        on the wire, the next is checked and rendered, and one commit both records the outcomes
        of the chunk before and marks the next one `sending` (a durable commit costs
        milliseconds on PostgreSQL; this way it overlaps the sends). Once a third of the lease
        has passed, the same commit renews the lease of everything the batch still holds (not
        at every chunk: on PostgreSQL each renewal writes a new version of every row the batch
        holds, index entries and all). After a crash at most two chunks read `unknown`.

        THEN, when given, is called once the last chunk's requests have left, before waiting for
        their answers; what it returns is returned."""
        # One connection for the batch: a checkout per chunk would cost a round trip (the pool's
        # ping) for every chunk. On PostgreSQL a second one, in autocommit, for the chunks whose
        # commit is one statement (`_commit`).
        with self.engine.connect() as connection, self._autocommit() as quick:
            return self._send_chunks((connection, quick), claimed, batch, claimed_at, clock, stats, then)

    def _autocommit(self) -> contextlib.AbstractContextManager[Connection | None]:
        if self.engine.dialect.name != "postgresql":
            return contextlib.nullcontext()
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _send_chunks(
        self,
        connections: tuple[Connection, Connection | None],
        claimed: Sequence[ledger.Claimed],
        batch: _Batch,
        claimed_at: datetime,
        clock: Callable[[], datetime],
        stats: DispatchStats,
        then: Callable[[], _Following] | None,
    ) -> _Following:
        following: _Following = None
        failure: Exception | None = None
        chunks = [claimed[i : i + self.concurrency] for i in range(0, len(claimed), self.concurrency)]
        unwritten: list[ledger.Outcome] = []
        renewed = claimed_at
        in_flight: list[Future[ledger.Outcome]] = []
        checked = self._check(chunks[0], batch, clock()) if chunks else None
        for index in range(len(chunks)):
            assert checked is not None
            now, ready, stopped = checked
            unwritten.extend(stopped)
            # Committed before the requests leave: after a crash these rows read "may have been
            # sent". Only rows this worker still owns are marked, and only those leave.
            renew = now - renewed >= self.lease / 3
            owned = self._commit(connections, unwritten, [r.contact.id for r in ready], now, renew=renew)
            renewed = now if renew else renewed
            self._record(unwritten, stats)
            lost = [r for r in ready if r.contact.id not in owned]
            if lost:
                log.warning("claims_taken_over", worker=self.worker, outbox_ids=[r.contact.id for r in lost])
            submitted = [self._submit(r, clock) for r in ready if r.contact.id in owned]
            stats.rerouted += sum(r.rerouted for r in ready if r.contact.id in owned)
            # The next chunk is checked and rendered before waiting for the chunk before this
            # one, not after: once that chunk has answered, only the commit stands between it
            # and the next chunk's requests, and the senders are not left idle meanwhile.
            if index + 1 < len(chunks):
                checked = self._check(chunks[index + 1], batch, clock())
            elif then is not None:
                try:
                    following = then()
                except Exception as exc:  # noqa: BLE001 - raised once the answers on the wire are recorded
                    failure = exc
            unwritten = [future.result() for future in in_flight]
            in_flight = submitted
        unwritten.extend(future.result() for future in in_flight)
        if unwritten:
            self._commit(connections, unwritten, [], clock(), renew=False)
            self._record(unwritten, stats)
        if failure is not None:
            raise failure
        return following

    def _check(
        self, contacts: Sequence[ledger.Claimed], batch: _Batch, now: datetime
    ) -> tuple[datetime, list[_Ready], list[ledger.Outcome]]:
        """A chunk through the send-time gate at NOW: the messages ready to go, and what happens
        instead to the rest."""
        ready: list[_Ready] = []
        stopped: list[ledger.Outcome] = []
        for contact in contacts:
            try:
                checked = self._prepare(contact, batch, now)
            except Exception as exc:  # one bad contact must not stop the others; it stays visible
                log.exception("dispatch_error", outbox_id=contact.id, rule=contact.rule)
                checked = ledger.Outcome(
                    contact, State.FAILED, f"internal error: {type(exc).__name__}", last_error=repr(exc)
                )
            if isinstance(checked, _Ready):
                ready.append(checked)
            else:
                stopped.append(checked)
        return now, ready, stopped

    def _submit(self, ready: _Ready, clock: Callable[[], datetime]) -> Future[ledger.Outcome]:
        if self._pool is not None:
            return self._pool.submit(self._send, ready, clock)
        future: Future[ledger.Outcome] = Future()
        future.set_result(self._send(ready, clock))
        return future

    def _commit(
        self,
        connections: tuple[Connection, Connection | None],
        outcomes: Sequence[ledger.Outcome],
        sending: Sequence[str],
        now: datetime,
        *,
        renew: bool,
    ) -> set[str]:
        """Record OUTCOMES, mark the contacts SENDING and, if RENEW, renew the lease of what the
        batch still holds, in one commit; the ids marked.

        On PostgreSQL, when recording is `ledger.finish` alone (nothing grouped to settle, no
        place freed, no address refused) and there is no lease to renew, that commit is one
        statement on the autocommit connection: one round trip instead of four."""
        connection, quick = connections
        if quick is not None and not renew and not any(self._follows_up(o) for o in outcomes):
            return ledger.finish_and_mark_sending(
                quick, self.worker, outcomes, sending, now, now + self.lease
            )
        with connection.begin():
            self._write(connection, outcomes, now)
            owned = ledger.mark_sending(connection, self.worker, sending, now, now + self.lease)
            if renew:
                ledger.renew_lease(connection, self.worker, now + self.lease, now)
        return owned

    def _follows_up(self, outcome: ledger.Outcome) -> bool:
        """Whether `_write` does more for OUTCOME than `ledger.finish`: what it settles, frees or
        suppresses after the finish is done only for such outcomes."""
        members = self._batch.members if self._batch is not None else {}
        return (
            outcome.state in _FREES_A_PLACE
            or (outcome.state == State.FAILED and bool(outcome.code))
            or outcome.contact.dedupe_key in members
        )

    def _write(self, connection: Connection, outcomes: Sequence[ledger.Outcome], now: datetime) -> None:
        """Record outcomes; a permanent refusal of an address also suppresses it, at once for
        every contact of that customer still waiting on it."""
        ledger.finish(connection, self.worker, outcomes, now)
        # The same test decides when `_commit` may record by `ledger.finish` alone: what follows
        # runs only for what it names, on every database.
        if not any(self._follows_up(o) for o in outcomes):
            return
        self._settle_members(connection, outcomes, now)
        # A contact that ends unsent frees its place in the customer's caps: what it held back
        # (a cap, a cooldown) is decided again at the next tick rather than at its recheck time.
        freed = {o.contact.customer_id for o in outcomes if o.state in _FREES_A_PLACE}
        if freed:
            ledger.recheck_customers(connection, freed, now)
        touched: set[str] = set()
        for outcome in outcomes:
            if outcome.state != State.FAILED or not outcome.code:
                continue
            channel = outcome.channel or outcome.contact.channel
            if outcome.code in SUPPRESSING_CODES and channel:
                ledger.add_suppression(
                    connection, outcome.contact.customer_id, channel, outcome.reason, outcome.code, now
                )
                touched.add(outcome.contact.customer_id)
            if outcome.code in WITHDRAWS_SMS_CONSENT_CODES:
                records.set_sms_consent(connection, outcome.contact.customer_id, False)
                touched.add(outcome.contact.customer_id)
        if touched:
            reroute_waiting(connection, self._rule_set(), touched, now)

    _batch: _Batch | None = None

    def _settle_members(
        self, connection: Connection, outcomes: Sequence[ledger.Outcome], now: datetime
    ) -> None:
        """What became of the matches grouped into each finished message: sent with it (or dropped
        when their record no longer held), or the same end as the message."""
        batch = self._batch
        if batch is None or not batch.members:
            return
        settled: list[tuple[str, str, str]] = []
        for outcome in outcomes:
            lead = outcome.contact.dedupe_key
            for member in batch.members.get(lead, ()):
                if outcome.state == State.PENDING:
                    continue  # deferred, held or retried: they wait with it
                if outcome.state == State.SENT:
                    if batch.included.get(member.id, False):
                        settled.append((member.id, State.GROUPED, f"sent in one message with {lead}"))
                    else:
                        reason = "the condition no longer held at send time: left out of the message"
                        settled.append((member.id, State.CANCELLED, reason))
                else:
                    settled.append(
                        (member.id, outcome.state, f"as the message it joined ({lead}): {outcome.reason}")
                    )
        ledger.settle_members(connection, settled, now)

    def _rule_set(self) -> RuleSet | None:
        try:
            return self.rules()
        except RulesError:
            return None

    def _record(self, outcomes: Sequence[ledger.Outcome], stats: DispatchStats) -> None:
        for outcome in outcomes:
            if outcome.gate == policy.DEFER:
                stats.deferred += 1
            elif outcome.gate == policy.HOLD:
                stats.held += 1
            elif outcome.state == State.PENDING:
                stats.retried += 1
            stats.add(outcome.contact.dedupe_key, outcome.state, outcome.reason)
            log.info(
                "contact",
                outbox_id=outcome.contact.id,
                rule=outcome.contact.rule,
                customer_id=outcome.contact.customer_id,
                channel=outcome.channel or outcome.contact.channel,
                state=outcome.state,
                reason=outcome.reason,
            )

    def _prepare(self, contact: ledger.Claimed, batch: _Batch, now: datetime) -> _Ready | ledger.Outcome:
        """The send-time gate and rendering: a message ready to go, or what happens instead."""
        rule: Rule | None
        try:
            rule = self.rules().get(contact.rule)
        except RulesError:
            rule = None
        customer = batch.people.get(contact.customer_id)
        entity = (
            customer
            if contact.about == "customer"
            else batch.entities.get(contact.about, {}).get(contact.entity_id)
        )
        who = (
            recipient(customer, batch.suppressed.get(contact.customer_id, set()))
            if customer is not None and entity is not None
            else None
        )
        matches: list[records.Record] = []
        goal_met = False
        if rule is not None and who is not None and customer is not None:
            members = batch.members.get(contact.dedupe_key, [])
            # The message goes out for every record of the group that still holds, its lead's first.
            for entity_id, member_id in [(contact.entity_id, None), *((m.entity_id, m.id) for m in members)]:
                record = (
                    customer
                    if rule.about == "customer"
                    else batch.entities.get(rule.about, {}).get(entity_id)
                )
                ok = record is not None and condition_holds(
                    rule.condition, {"customer": customer, rule.about: record}, now
                )
                if member_id is not None:
                    batch.included[member_id] = ok
                if ok and record is not None:
                    matches.append(record)
            if contact.step > 1 and rule.goal_condition is not None and entity is not None:
                goal_met = condition_holds(
                    rule.goal_condition, {"customer": customer, rule.about: entity}, now
                )
        step_policy = rule_policy(rule, contact.step) if rule is not None else None
        history = batch.history.setdefault(contact.customer_id, [])
        verdict = policy.gate(
            rule=step_policy,
            channel=contact.channel,
            expires_at=contact.expires_at,
            recipient=who,
            condition_holds=bool(matches),
            limits=self.limits,
            controls=batch.controls,
            now=now,
            goal_met=goal_met,
            inhibited=policy.inhibition(step_policy, history, now)
            if step_policy is not None and step_policy.inhibited_by
            else None,
            delivered=[
                past for past in history if past.state in _DELIVERED and past.dedupe_key != contact.dedupe_key
            ],
        )
        if verdict.action == policy.CANCEL:
            return ledger.Outcome(contact, State.CANCELLED, verdict.reason)
        if verdict.action == policy.EXPIRE:
            return ledger.Outcome(contact, State.EXPIRED, verdict.reason)
        if verdict.action == policy.SUPPRESS:
            return ledger.Outcome(contact, State.SUPPRESSED, verdict.reason)
        if verdict.action in (policy.INHIBIT, policy.CAP):
            return ledger.Outcome(contact, State.SKIPPED, verdict.reason, recheck_at=verdict.until)
        if verdict.action == policy.DEFER:
            return ledger.Outcome(
                contact, State.PENDING, verdict.reason, send_at=verdict.until, gate=policy.DEFER
            )
        if verdict.action == policy.HOLD:
            return ledger.Outcome(contact, State.PENDING, verdict.reason, gate=policy.HOLD)
        assert rule is not None and customer is not None and verdict.channel is not None
        channel = verdict.channel
        if channel not in self.channels:
            return ledger.Outcome(contact, State.CANCELLED, f"no {channel} channel is configured")
        template = rule.template_of(contact.step)
        first = matches[0]
        try:
            rendered = self.renderer().render(
                template=template,
                channel=channel,
                customer=customer,
                about=rule.about,
                entity=None if rule.about == "customer" else first,
                rule=RuleInfo(
                    rule.name, rule.about, rule.channels_of(contact.step), template, rule.description
                ),
                now=now,
                step=(contact.step, rule.journey_length),
                matches=matches,
            )
        except RenderError as exc:
            return ledger.Outcome(
                contact,
                State.FAILED,
                f"could not render: {exc}; sent after the next good reload of the templates, unless it expires",
                last_error=RENDER_ERROR + str(exc),
            )
        address = customer.get("email") if channel == "email" else customer.get("phone")
        message = OutgoingMessage(
            outbox_id=contact.id,
            channel=channel,
            to=str(address),
            customer_id=contact.customer_id,
            rule=rule.name,
            locale=rendered.locale,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            sms=rendered.sms,
            to_name=customer.get("name") or None,
        )
        assert who is not None
        # In the customer's hands from now on, as far as the caps of the rest of the batch go.
        history.append(
            policy.PastContact(
                rule.name, contact.dedupe_key, channel, State.SENDING, now, now, priority=rule.priority
            )
        )
        quiet = policy.quiet_hours_for(rule_policy(rule), self.limits)
        return _Ready(contact, message, verdict.action == policy.REROUTE, quiet, who.timezone)

    def _send(self, ready: _Ready, clock: Callable[[], datetime]) -> ledger.Outcome:
        contact, channel = ready.contact, ready.message.channel
        moved = channel if channel != contact.channel else None
        started = clock()
        try:
            receipt = self.channels[channel].send(ready.message)
        except TransientDeliveryError as exc:
            outcome = self._retry(ready, exc, clock(), moved)
            self._observe(channel, "transient", started, clock)
            return outcome
        except PermanentDeliveryError as exc:
            self._observe(channel, "permanent", started, clock)
            return ledger.Outcome(
                contact,
                State.FAILED,
                f"refused by the provider: {exc}",
                last_error=str(exc),
                code=exc.code,
                channel=moved,
            )
        except UnknownOutcomeError as exc:
            self._observe(channel, "unknown", started, clock)
            return ledger.Outcome(
                contact,
                State.UNKNOWN,
                f"outcome unknown ({exc}): not resent",
                last_error=str(exc),
                channel=moved,
            )
        finished = clock()
        self._observe(channel, "sent", started, clock)
        return ledger.Outcome(
            contact,
            State.SENT,
            f"sent by {receipt.provider}"
            + (f" on {channel}: consent changed while it waited" if moved else ""),
            provider=receipt.provider,
            provider_id=receipt.provider_id,
            sent_at=finished,
            channel=moved,
        )

    def _observe(self, channel: str, outcome: str, started: datetime, clock: Callable[[], datetime]) -> None:
        if self.observe is not None:
            self.observe(channel, outcome, self.channels[channel].name, (clock() - started).total_seconds())

    def _retry(
        self, ready: _Ready, exc: TransientDeliveryError, now: datetime, moved: str | None
    ) -> ledger.Outcome:
        contact = ready.contact
        attempt = contact.attempts + 1
        at = policy.retry_at(
            attempt,
            now,
            exc.retry_after,
            contact.expires_at,
            random.Random(self.rng.random()),
            quiet=ready.quiet,
            timezone=ready.timezone,
        )
        if at is None:
            return ledger.Outcome(
                contact,
                State.FAILED,
                f"gave up after {attempt} attempt(s): {exc}",
                last_error=str(exc),
                channel=moved,
            )
        return ledger.Outcome(
            contact,
            State.PENDING,
            f"provider busy ({exc}); retrying at {at.isoformat()}",
            send_at=at,
            last_error=str(exc),
            channel=moved,
        )


def controls_at(connection: Connection, now: datetime) -> policy.Controls:
    """The pause and the silences in force at NOW, as the gate reads them."""
    found = ledger.active_controls(connection, now)
    pause = found.get(ledger.PAUSE)
    return policy.Controls(
        paused=(pause.reason or "paused") if pause is not None else None,
        silenced={
            key.removeprefix(ledger.SILENCE): control.reason
            for key, control in found.items()
            if key.startswith(ledger.SILENCE)
        },
    )


def reroute_waiting(
    connection: Connection, rules: RuleSet | None, customer_ids: Iterable[str], now: datetime
) -> int:
    """After a consent withdrawal or a suppression, move every contact of these customers still
    waiting on a channel that can no longer reach them to the rule's next consented channel, or
    hold it back (suppressed) when there is none. Returns how many contacts changed."""
    waiting = ledger.waiting_contacts(connection, customer_ids)
    if not waiting:
        return 0
    ids = {w.customer_id for w in waiting}
    people = records.rows_by_id(connection, "customer", ids)
    suppressed = ledger.suppressed_channels(connection, ids)
    by_name = {rule.name: rule for rule in rules or ()}
    changed = 0
    for contact in waiting:
        person = people.get(contact.customer_id)
        if person is None:
            continue
        who = recipient(person, suppressed.get(contact.customer_id, set()))
        if contact.channel is not None and policy.channel_problem(contact.channel, who) is None:
            continue
        rule = by_name.get(contact.rule)
        problem = policy.channel_problem(contact.channel, who) if contact.channel else "no channel"
        channel, why = (
            policy.choose_channel(rule_policy(rule, contact.step), who) if rule is not None else (None, "")
        )
        reason = (
            f"{contact.channel}: {problem} while it waited; {why}"
            if channel is not None
            else f"{contact.channel}: {problem} while it waited; no consented channel left"
        )
        changed += ledger.reroute(connection, contact.id, channel, reason, now)
        log.info(
            "contact_rerouted",
            outbox_id=contact.id,
            rule=contact.rule,
            customer_id=contact.customer_id,
            channel=channel,
            was=contact.channel,
        )
    return changed


def reroute_withdrawn(connection: Connection, rules: RuleSet | None, now: datetime) -> int:
    """`reroute_waiting` for every customer with a contact waiting on a channel that lost its
    consent, address or a suppression — after records were loaded from a file, for instance."""
    return reroute_waiting(connection, rules, ledger.customers_waiting_on_withdrawn_channels(connection), now)


def revive_unrendered(connection: Connection, now: datetime) -> int:
    """After a good reload of the templates, contacts that failed only because they could not be
    rendered are due again (the send-time gate still checks their condition and expiry)."""
    return ledger.revive(connection, RENDER_ERROR, now)


__all__ = ["DispatchStats", "Dispatcher", "controls_at", "reroute_waiting", "revive_unrendered"]

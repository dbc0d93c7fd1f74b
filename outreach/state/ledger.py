"""The delivery ledger: one row per contact decision, suppressions, controls and escalation tasks.

A contact row's `dedupe_key` is unique, so deciding the same thing twice — in a repeated tick,
in a second process, after a crash — inserts nothing. States:

    skipped, suppressed   not contacted this time (cap, cooldown, no consent); re-decided later
    pending               due at send_at
    claimed               taken by a dispatcher (lease); nothing has left yet
    sending               the request may be on its way: never resent blindly
    sent                  the provider accepted it (provider_id recorded)
    failed                permanently refused, rendering failed, or retries exhausted
    cancelled             the condition no longer held at send time
    expired               not sent within the rule's `expires`
    holdout               control group: recorded, never sent
    unknown               the outcome of a send could not be known
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Column, Index, Integer, UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from outreach.state.models import Customer, table_of
from outreach.state.types import JSONDocument, UTCDateTime

RETRYABLE_STATES = ("skipped", "suppressed")
DUE_STATES = ("pending",)
FINAL_STATES = ("sent", "failed", "cancelled", "expired", "holdout", "unknown")


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_contacts_dedupe_key"),
        Index("ix_contacts_due", "state", "send_at"),
        Index("ix_contacts_customer", "customer_id", "decided_at"),
        Index("ix_contacts_provider_id", "provider_id"),
        Index("ix_contacts_rule_decided", "rule", "decided_at"),
    )

    id: str = Field(primary_key=True)
    dedupe_key: str
    rule: str
    about: str
    entity_id: str
    customer_id: str
    channel: str | None = None
    state: str
    reason: str = ""
    priority: int = 0
    decided_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    send_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    claimed_by: str | None = None
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    provider: str | None = None
    provider_id: str | None = None
    last_error: str | None = None
    provider_status: str | None = None  # the provider's latest word: delivered, bounced, …
    goal_met_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    arm: str | None = None  # outreach.vocabulary.Arm once policy drew it for the holdout or not
    steps: list[Any] = Field(default_factory=list, sa_column=Column(JSONDocument, nullable=False))


class Suppression(SQLModel, table=True):
    """A channel we must not use for a customer again (hard bounce, STOP, invalid number)."""

    __tablename__ = "suppressions"

    customer_id: str = Field(primary_key=True)
    channel: str = Field(primary_key=True)
    reason: str
    code: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


PAUSE = "pause"  # the key of the global pause in the controls table


def silence_key(rule: str) -> str:
    """The key of RULE's silence in the controls table."""
    return f"silence:{rule}"


class Control(SQLModel, table=True):
    """Operator switches: the global pause, and per-rule silences until an instant."""

    __tablename__ = "controls"

    key: str = Field(primary_key=True)  # "pause" or "silence:RULE"
    until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reason: str = ""
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class Task(SQLModel, table=True):
    """A task for a person, opened by a rule with `escalate: true`."""

    __tablename__ = "tasks"

    id: str = Field(primary_key=True)
    dedupe_key: str = Field(unique=True)
    rule: str
    customer_id: str
    entity_id: str
    summary: str
    status: str = "open"
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    webhook_status: str | None = None


class RuleTick(SQLModel, table=True):
    """The newest tick slot of each rule, so several daemons evaluate each tick only once."""

    __tablename__ = "rule_ticks"

    rule: str = Field(primary_key=True)
    slot: datetime = Field(sa_type=UTCDateTime, nullable=False)
    ticked_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    worker: str


# -- queries: the only SQL of the ledger --------------------------------------------------------

contacts = table_of(Contact)
suppressions = table_of(Suppression)
controls = table_of(Control)
tasks = table_of(Task)
rule_ticks = table_of(RuleTick)
customers = table_of(Customer)


def new_id() -> str:
    return uuid.uuid4().hex


def _insert(connection: Connection, table: sa.Table) -> Any:
    return (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(table)


def contacts_of(connection: Connection, customer_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """Every ledger row of these customers, oldest first, as plain dicts.

    Plain values, not SQLModel instances: a tick reads the history of every matched customer,
    and building a model costs about 130 µs a row.
    """
    wanted = sorted(set(customer_ids))
    history: dict[str, list[dict[str, Any]]] = {cid: [] for cid in wanted}
    for start in range(0, len(wanted), 500):
        query = (
            sa.select(contacts)
            .where(contacts.c.customer_id.in_(wanted[start : start + 500]))
            .order_by(contacts.c.decided_at)
        )
        for row in connection.execute(query).mappings():
            history[row["customer_id"]].append(dict(row))
    return history


def suppressed_channels(connection: Connection, customer_ids: Iterable[str]) -> dict[str, set[str]]:
    wanted = sorted(set(customer_ids))
    found: dict[str, set[str]] = {}
    for start in range(0, len(wanted), 500):
        query = sa.select(suppressions.c.customer_id, suppressions.c.channel).where(
            suppressions.c.customer_id.in_(wanted[start : start + 500])
        )
        for customer_id, channel in connection.execute(query):
            found.setdefault(customer_id, set()).add(channel)
    return found


def record_decisions(connection: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert decision rows; a dedupe key already decided is left alone unless it was only skipped.

    Returns how many rows were written. Safe to run twice, and from several processes at once.
    """
    if not rows:
        return 0
    statement = _insert(connection, contacts)
    excluded = statement.excluded
    updatable = (
        "channel",
        "state",
        "reason",
        "priority",
        "decided_at",
        "send_at",
        "expires_at",
        "updated_at",
        "steps",
    )
    statement = statement.on_conflict_do_update(
        index_elements=["dedupe_key"],
        # A match once assigned to an arm stays in it (intention to treat), held back again or not.
        set_={name: excluded[name] for name in updatable}
        | {"arm": sa.func.coalesce(contacts.c.arm, excluded["arm"])},
        # `IN (…)` expands per execution, which executemany cannot do: spell it out.
        where=sa.or_(*(contacts.c.state == state for state in RETRYABLE_STATES)),
    ).returning(contacts.c.id)
    written = 0
    for start in range(0, len(rows), 500):
        written += len(connection.execute(statement, list(rows[start : start + 500])).all())
    return written


@dataclass(frozen=True)
class Claimed:
    """A contact taken by a dispatcher: what sending it needs to know."""

    id: str
    dedupe_key: str
    rule: str
    about: str
    entity_id: str
    customer_id: str
    channel: str | None
    attempts: int
    expires_at: datetime | None


@dataclass(frozen=True)
class Outcome:
    """How one claimed contact ended this attempt (sent, failed, retry later as pending, …)."""

    contact: Claimed
    state: str
    reason: str
    last_error: str | None = None
    provider: str | None = None
    provider_id: str | None = None
    sent_at: datetime | None = None
    send_at: datetime | None = None
    code: str | None = None


_CLAIMED_COLUMNS = [contacts.c[name] for name in Claimed.__dataclass_fields__]


def claim_due(
    connection: Connection,
    worker: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    held_rules: Sequence[str] = (),
) -> list[Claimed]:
    """Take up to LIMIT due contacts for WORKER (state `claimed` until `now + lease`).

    On PostgreSQL `FOR UPDATE SKIP LOCKED` lets several dispatchers claim disjoint rows; SQLite
    has one writer at a time, so the same statement is already exclusive there.
    """
    due = (
        sa.select(contacts.c.id)
        .where(contacts.c.state.in_(DUE_STATES), contacts.c.send_at <= now)
        .order_by(contacts.c.priority.desc(), contacts.c.send_at)
        .limit(limit)
    )
    if held_rules:
        due = due.where(contacts.c.rule.not_in(list(held_rules)))
    if connection.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    statement = (
        sa.update(contacts)
        .where(contacts.c.id.in_(due.scalar_subquery()))
        .values(state="claimed", claimed_by=worker, lease_until=now + lease, updated_at=now)
        .returning(*_CLAIMED_COLUMNS)
    )
    return [Claimed(**row) for row in connection.execute(statement).mappings()]


# Prebuilt and run as executemany: an `IN (…)` list is rendered anew for every execution.
_MARK_SENDING = (
    sa.update(contacts)
    .where(contacts.c.id == sa.bindparam("b_id"), contacts.c.state == "claimed")
    .values(
        state="sending",
        attempts=contacts.c.attempts + 1,
        lease_until=sa.bindparam("b_lease_until", type_=UTCDateTime()),
        updated_at=sa.bindparam("b_now", type_=UTCDateTime()),
    )
)


def mark_sending(connection: Connection, ids: Sequence[str], now: datetime, lease_until: datetime) -> None:
    """Record that the requests for IDS are about to leave (one more attempt each)."""
    if ids:
        connection.execute(
            _MARK_SENDING, [{"b_id": i, "b_lease_until": lease_until, "b_now": now} for i in ids]
        )


# One statement for every outcome, run as executemany: unset values keep what the row has.
_FINISH = (
    sa.update(contacts)
    .where(
        contacts.c.id == sa.bindparam("b_id"),
        sa.or_(contacts.c.state == "claimed", contacts.c.state == "sending"),
    )
    .values(
        state=sa.bindparam("b_state"),
        reason=sa.bindparam("b_reason"),
        last_error=sa.func.coalesce(sa.bindparam("b_last_error", type_=sa.String()), contacts.c.last_error),
        provider=sa.func.coalesce(sa.bindparam("b_provider", type_=sa.String()), contacts.c.provider),
        provider_id=sa.func.coalesce(
            sa.bindparam("b_provider_id", type_=sa.String()), contacts.c.provider_id
        ),
        sent_at=sa.func.coalesce(sa.bindparam("b_sent_at", type_=UTCDateTime()), contacts.c.sent_at),
        send_at=sa.func.coalesce(sa.bindparam("b_send_at", type_=UTCDateTime()), contacts.c.send_at),
        claimed_by=None,
        lease_until=None,
        updated_at=sa.bindparam("b_now", type_=UTCDateTime()),
    )
)


def finish(connection: Connection, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Write the outcomes of claimed or sending contacts, in one statement."""
    if outcomes:
        connection.execute(
            _FINISH,
            [
                {
                    "b_id": o.contact.id,
                    "b_state": o.state,
                    "b_reason": o.reason,
                    "b_last_error": o.last_error,
                    "b_provider": o.provider,
                    "b_provider_id": o.provider_id,
                    "b_sent_at": o.sent_at,
                    "b_send_at": o.send_at,
                    "b_now": now,
                }
                for o in outcomes
            ],
        )


def recover_leases(connection: Connection, now: datetime, *, at_least_once: bool = False) -> tuple[int, int]:
    """Contacts whose dispatcher vanished: `claimed` go back to pending, `sending` become unknown.

    A claimed row never left, so it is safe to send again. A sending row may have reached the
    provider: it is marked unknown rather than resent (or resent if at-least-once is chosen).
    """
    back = connection.execute(
        sa.update(contacts)
        .where(contacts.c.state == "claimed", contacts.c.lease_until < now)
        .values(state="pending", claimed_by=None, lease_until=None, updated_at=now)
        .returning(contacts.c.id)
    ).all()
    lost_values: dict[str, Any] = (
        {"state": "pending", "reason": "the sender stopped mid-send; sending again (at-least-once)"}
        if at_least_once
        else {
            "state": "unknown",
            "reason": "the sender stopped mid-send: it may have been delivered, so it is not resent",
        }
    )
    lost = connection.execute(
        sa.update(contacts)
        .where(contacts.c.state == "sending", contacts.c.lease_until < now)
        .values(claimed_by=None, lease_until=None, updated_at=now, **lost_values)
        .returning(contacts.c.id)
    ).all()
    return len(back), len(lost)


def add_suppression(
    connection: Connection, customer_id: str, channel: str, reason: str, code: str | None, now: datetime
) -> None:
    statement = _insert(connection, suppressions).values(
        customer_id=customer_id, channel=channel, reason=reason, code=code, created_at=now
    )
    connection.execute(statement.on_conflict_do_nothing(index_elements=["customer_id", "channel"]))


def withdraw_sms_consent(connection: Connection, customer_id: str) -> None:
    connection.execute(sa.update(customers).where(customers.c.id == customer_id).values(sms_opt_in=False))


def set_control(connection: Connection, key: str, until: datetime | None, reason: str, now: datetime) -> None:
    statement = _insert(connection, controls).values(key=key, until=until, reason=reason, created_at=now)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["key"], set_={"until": until, "reason": reason, "created_at": now}
        )
    )


def clear_control(connection: Connection, key: str) -> bool:
    return (
        connection.execute(sa.delete(controls).where(controls.c.key == key).returning(controls.c.key)).first()
        is not None
    )


def active_controls(connection: Connection, now: datetime) -> dict[str, Control]:
    """Controls in force at NOW (a silence whose `until` has passed is over)."""
    rows = connection.execute(sa.select(controls)).mappings()
    found = {row["key"]: Control(**row) for row in rows}
    return {key: c for key, c in found.items() if c.until is None or c.until > now}


def open_task(
    connection: Connection,
    dedupe_key: str,
    rule: str,
    customer_id: str,
    entity_id: str,
    summary: str,
    now: datetime,
) -> str | None:
    """Open a task for a person about one contact decision; None if one exists already."""
    statement = (
        _insert(connection, tasks)
        .values(
            id=new_id(),
            dedupe_key=dedupe_key,
            rule=rule,
            customer_id=customer_id,
            entity_id=entity_id,
            summary=summary,
            status="open",
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(tasks.c.id)
    )
    row = connection.execute(statement).first()
    return None if row is None else str(row[0])


def list_tasks(
    connection: Connection, status: str | None = "open", ids: Sequence[str] | None = None
) -> list[Task]:
    """Tasks, oldest first: with STATUS (None: any), and only IDS when given."""
    query = sa.select(tasks).order_by(tasks.c.created_at)
    if status:
        query = query.where(tasks.c.status == status)
    if ids is not None:
        query = query.where(tasks.c.id.in_(list(ids)))
    return [Task(**row) for row in connection.execute(query).mappings()]


def set_task_webhook_status(connection: Connection, task_id: str, status: str) -> None:
    connection.execute(sa.update(tasks).where(tasks.c.id == task_id).values(webhook_status=status))


def contact_counts(connection: Connection, since: datetime) -> list[tuple[str, str, str | None, int]]:
    """(rule, state, channel, count) of contacts decided since SINCE."""
    query = (
        sa.select(contacts.c.rule, contacts.c.state, contacts.c.channel, sa.func.count())
        .where(contacts.c.decided_at >= since)
        .group_by(contacts.c.rule, contacts.c.state, contacts.c.channel)
        .order_by(contacts.c.rule, contacts.c.state)
    )
    return [(r, s, c, int(n)) for r, s, c, n in connection.execute(query)]


def queue_depth(connection: Connection, now: datetime) -> int:
    query = sa.select(sa.func.count()).where(contacts.c.state.in_(DUE_STATES), contacts.c.send_at <= now)
    return int(connection.execute(query).scalar_one())


def take_tick(connection: Connection, rule: str, slot: datetime, now: datetime, worker: str) -> bool:
    """Record that WORKER evaluates RULE's tick SLOT; False if this slot (or a later one) was taken.

    On PostgreSQL a transaction-level advisory lock on the rule serialises the workers (it is
    released with the transaction, so it cannot leak into the pool); the row then says whether
    the slot is done. Keep the transaction open while evaluating: a failed tick rolls back and
    another worker may take the slot.
    """
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(
            hashlib.blake2b(f"outreach.tick:{rule}".encode(), digest_size=8).digest(), "big", signed=True
        )
        if not connection.execute(sa.select(sa.func.pg_try_advisory_xact_lock(key))).scalar_one():
            return False
    statement = _insert(connection, rule_ticks).values(rule=rule, slot=slot, ticked_at=now, worker=worker)
    statement = statement.on_conflict_do_update(
        index_elements=["rule"],
        set_={"slot": slot, "ticked_at": now, "worker": worker},
        where=rule_ticks.c.slot < slot,
    ).returning(rule_ticks.c.rule)
    return connection.execute(statement).first() is not None


def goal_candidates(connection: Connection, rule: str, since: datetime) -> list[tuple[str, str]]:
    """(contact id, entity id) of RULE's matches assigned to an arm since SINCE whose goal is not yet met.

    Every assigned match is measured, whatever became of it (sent, cancelled because the
    customer converted first, expired, failed…): leaving any of them out would bias the
    comparison with the holdout, which loses nobody.
    """
    query = sa.select(contacts.c.id, contacts.c.entity_id).where(
        contacts.c.rule == rule,
        contacts.c.decided_at >= since,
        contacts.c.arm.is_not(None),
        contacts.c.goal_met_at.is_(None),
    )
    return [(str(cid), str(eid)) for cid, eid in connection.execute(query)]


def mark_goal_met(connection: Connection, contact_ids: Sequence[str], now: datetime) -> None:
    if contact_ids:
        connection.execute(
            sa.update(contacts)
            .where(contacts.c.id.in_(list(contact_ids)), contacts.c.goal_met_at.is_(None))
            .values(goal_met_at=now)
        )


@dataclass(frozen=True)
class ArmCount:
    """How many of a rule's matches one arm holds, and how many of them met the goal."""

    rule: str
    arm: str
    count: int
    goal_met: int


def goal_counts(connection: Connection, since: datetime) -> list[ArmCount]:
    """Per rule and arm, the matches assigned since SINCE and how many met the goal."""
    query = (
        sa.select(contacts.c.rule, contacts.c.arm, sa.func.count(), sa.func.count(contacts.c.goal_met_at))
        .where(contacts.c.decided_at >= since, contacts.c.arm.is_not(None))
        .group_by(contacts.c.rule, contacts.c.arm)
        .order_by(contacts.c.rule, contacts.c.arm)
    )
    return [ArmCount(r, a, int(n), int(m)) for r, a, n, m in connection.execute(query)]


@dataclass(frozen=True)
class Funnel:
    """One rule's matches since an instant, step by step: how many got how far."""

    rule: str
    matched: int  # every match recorded, held back, held out or contacted
    decided: int  # assigned to the message
    held_out: int
    sent: int
    delivered: int  # the provider said it arrived (provider_status)
    goal_met: int  # among those assigned to the message


def funnel_counts(connection: Connection, since: datetime, delivered: Sequence[str]) -> list[Funnel]:
    """Per rule, the funnel of its matches decided since SINCE; DELIVERED are the provider
    statuses that mean the message arrived."""

    def count(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.count(sa.case((condition, 1)))

    assigned = contacts.c.arm == "message"
    query = (
        sa.select(
            contacts.c.rule,
            sa.func.count(),
            count(assigned),
            count(contacts.c.arm == "holdout"),
            count(contacts.c.state == "sent"),
            count(contacts.c.provider_status.in_(list(delivered))),
            count(sa.and_(assigned, contacts.c.goal_met_at.is_not(None))),
        )
        .where(contacts.c.decided_at >= since)
        .group_by(contacts.c.rule)
        .order_by(contacts.c.rule)
    )
    return [Funnel(rule, *(int(n) for n in numbers)) for rule, *numbers in connection.execute(query)]


# -- provider feedback (webhooks) ---------------------------------------------------------------


@dataclass(frozen=True)
class Delivered:
    """The contact a provider's event is about: who it was for and on which channel."""

    id: str
    customer_id: str
    channel: str | None
    provider: str | None
    provider_id: str | None
    provider_status: str | None


_DELIVERED_COLUMNS = [contacts.c[name] for name in Delivered.__dataclass_fields__]


def contact_for_event(
    connection: Connection, outbox_id: str | None, provider_id: str | None = None
) -> Delivered | None:
    """The contact with OUTBOX_ID, else the one the provider knows as PROVIDER_ID; None if neither."""
    if outbox_id:
        row = (
            connection.execute(sa.select(*_DELIVERED_COLUMNS).where(contacts.c.id == outbox_id))
            .mappings()
            .first()
        )
        if row is not None:
            return Delivered(**row)
    if provider_id:
        row = (
            connection.execute(
                sa.select(*_DELIVERED_COLUMNS).where(contacts.c.provider_id == provider_id).limit(1)
            )
            .mappings()
            .first()
        )
        if row is not None:
            return Delivered(**row)
    return None


def set_provider_status(
    connection: Connection, contact_id: str, status: str, now: datetime, *, unless: Sequence[str] = ()
) -> bool:
    """Record the provider's latest word on a contact, unless it already says one of UNLESS.

    UNLESS holds the statuses a late, out-of-order event must not overwrite (a `sent` callback
    arriving after `delivered`); the check is in the statement, so concurrent events agree.
    """
    statement = sa.update(contacts).where(contacts.c.id == contact_id)
    if unless:
        statement = statement.where(
            sa.or_(contacts.c.provider_status.is_(None), contacts.c.provider_status.not_in(list(unless)))
        )
    statement = statement.values(provider_status=status, updated_at=now).returning(contacts.c.id)
    return connection.execute(statement).first() is not None


def customers_with_phone(connection: Connection, phone: str) -> list[str]:
    """Ids of the customers whose phone (E.164) is PHONE."""
    query = sa.select(customers.c.id).where(customers.c.phone == phone).order_by(customers.c.id)
    return [str(customer_id) for customer_id in connection.execute(query).scalars()]


def grant_sms_consent(connection: Connection, customer_id: str) -> None:
    connection.execute(sa.update(customers).where(customers.c.id == customer_id).values(sms_opt_in=True))


def remove_suppression(connection: Connection, customer_id: str, channel: str) -> bool:
    """Lift a suppression; False if there was none."""
    statement = (
        sa.delete(suppressions)
        .where(suppressions.c.customer_id == customer_id, suppressions.c.channel == channel)
        .returning(suppressions.c.customer_id)
    )
    return connection.execute(statement).first() is not None

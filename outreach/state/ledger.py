"""The delivery ledger: one row per contact decision, suppressions, controls, tasks and feedback seen.

A contact row's `dedupe_key` is unique, so deciding the same thing twice — in a repeated tick,
in a second process, after a crash — inserts nothing. The states are `outreach.vocabulary.State`.

Decisions are serialised (`lock_decisions`): whoever decides — a rule's tick in the daemon, a
second daemon on the same PostgreSQL database, an event posted to `/events` — sees every
decision made before it, so caps and priorities hold across rules, threads and processes.
A claim belongs to the dispatcher that made it (`claimed_by`): a dispatcher marks `sending`
and records outcomes only for rows it still owns, and renews its lease while it works.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy import Column, Index, Integer, UniqueConstraint
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect
from sqlmodel import Field, SQLModel

from outreach.clock import EARLIEST
from outreach.encoding import made_storable
from outreach.state import bulk
from outreach.state.among import among, among_bound, bound_ids
from outreach.state.models import Customer, table_of
from outreach.state.types import JSONDocument, UTCDateTime
from outreach.vocabulary import FINAL_STATES, HELD_STATES, State

__all__ = ["FINAL_STATES", "HELD_STATES"]


def _partial_index(name: str, *columns: str | sa.ColumnElement[Any], where: str) -> Index:
    """An index of only the rows for which WHERE holds, on both databases."""
    return Index(name, *columns, sqlite_where=sa.text(where), postgresql_where=sa.text(where))


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_contacts_dedupe_key"),
        # Of one state, or of leased rows, not of every state: a row changes state at every step
        # of a send and each change leaves an entry behind until vacuum; the rows a dispatcher
        # marks and records must be found by their primary key (migration 0017). A query reading
        # one of these compares `state` with a literal (`_in_state`): a parameter cannot be
        # proved to match the index's condition. ix_contacts_due is declared below the class:
        # it orders a column descending.
        _partial_index("ix_contacts_leased", "lease_until", where="lease_until IS NOT NULL"),
        _partial_index("ix_contacts_failed", "last_error", where="state = 'failed'"),
        Index("ix_contacts_customer", "customer_id", "decided_at"),
        # Partial where most rows hold NULL (a decision has no provider id, group or recheck
        # time yet): every query compares the column, which implies IS NOT NULL.
        _partial_index("ix_contacts_provider_id", "provider_id", where="provider_id IS NOT NULL"),
        Index("ix_contacts_rule_decided", "rule", "decided_at"),
        _partial_index("ix_contacts_recheck", "state", "recheck_at", where="recheck_at IS NOT NULL"),
        # With the step: a rule query's "not decided yet" probe is answered by the index alone.
        Index("ix_contacts_rule_entity_step", "rule", "entity_id", "step"),
        # The contacts whose goal is still measured (`goal_open`); a met goal leaves it.
        _partial_index(
            "ix_contacts_goal_open", "rule", "decided_at", where="arm IS NOT NULL AND goal_met_at IS NULL"
        ),
        _partial_index("ix_contacts_group_key", "group_key", where="group_key IS NOT NULL"),
        # Partial: only the sent steps whose next one is not decided, and no rival to
        # ix_contacts_rule_entity_step for the queries that name no `next_step_from`.
        _partial_index(
            "ix_contacts_next_step", "rule", "step", "next_step_from", where="next_step_from IS NOT NULL"
        ),
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
    recheck_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # held: decide again from then
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Sent, and the journey's next step not decided yet: its sent time, then NULL (`followups_due`).
    next_step_from: datetime | None = Field(default=None, sa_type=UTCDateTime)
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
    step: int = Field(
        default=1, sa_column=Column(Integer, nullable=False, server_default="1")
    )  # of the journey
    group_key: str | None = None  # a grouped match: the dedupe key of the contact whose message it joined


class Suppression(SQLModel, table=True):
    """A channel we must not use for a customer again (hard bounce, STOP, invalid number)."""

    __tablename__ = "suppressions"

    customer_id: str = Field(primary_key=True)
    channel: str = Field(primary_key=True)
    reason: str
    code: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


PAUSE = "pause"  # the key of the global pause in the controls table
SILENCE = "silence:"


def silence_key(rule: str) -> str:
    """The key of RULE's silence in the controls table."""
    return f"{SILENCE}{rule}"


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
    status: str = "open"  # open | closed
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    webhook_status: str | None = None
    # What a person needs: the record's fields (a survey's score and comment, …) and how to reach the customer.
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONDocument, nullable=False))
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    note: str | None = None
    webhook_attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    webhook_next_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # None: nothing to post


class RuleTick(SQLModel, table=True):
    """The newest tick slot of each rule, so several daemons evaluate each tick only once."""

    __tablename__ = "rule_ticks"

    rule: str = Field(primary_key=True)
    slot: datetime = Field(sa_type=UTCDateTime, nullable=False)
    ticked_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    worker: str


class InboundEvent(SQLModel, table=True):
    """A provider event already applied (a Twilio MessageSid, a SendGrid sg_event_id): a replay changes nothing."""

    __tablename__ = "inbound_events"

    source: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    received_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


# -- queries: the only SQL of the ledger --------------------------------------------------------


contacts = table_of(Contact)
# The pending contacts in the order a claim takes them, highest priority then the earliest due:
# a claim reads the batch it takes, not every due contact and a sort of them. Made of the
# table's own columns, the index joins the table as it is made.
_partial_index("ix_contacts_due", contacts.c.priority.desc(), contacts.c.send_at, where="state = 'pending'")


suppressions = table_of(Suppression)
controls = table_of(Control)
tasks = table_of(Task)
rule_ticks = table_of(RuleTick)
inbound_events = table_of(InboundEvent)


def _in_state(state: str) -> sa.ColumnElement[bool]:
    """`contacts.state = 'STATE'` with the state as a literal, so that the planners of both
    databases can use an index of the rows in that state (`ix_contacts_due`, `ix_contacts_failed`)."""
    return contacts.c.state == sa.literal_column(f"'{State(state)}'")


def new_id() -> str:
    """A 128-bit id as 32 hex digits, laid out as a UUIDv7's (RFC 9562) without its version bits:
    the time in milliseconds, then 80 random bits. Ids made one after the other sort together,
    so a tick's 10^5 new rows go to the end of the primary key's index instead of all over it
    (a tenth of the cost of recording a first tick's decisions, measured with bench/)."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def _insert(connection: Connection, table: sa.Table) -> Any:
    return (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(table)


def _lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(f"outreach.{name}".encode(), digest_size=8).digest(), "big", signed=True
    )


_DECISIONS_KEY = _lock_key("decisions")
_TICKS_KEY = _lock_key("ticks")


def lock_decisions(connection: Connection) -> None:
    """Make this transaction the only one deciding until it ends; call it before anything else.

    PostgreSQL: a transaction-level advisory lock (released with the transaction, so it cannot
    leak into the pool). SQLite: `BEGIN IMMEDIATE` takes the database's write lock before the
    first read, so what this transaction reads is what every earlier decision wrote (a deferred
    transaction would read a snapshot another writer could overtake).
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_DECISIONS_KEY)))
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# -- history and decisions ------------------------------------------------------------------------


class PastRow(NamedTuple):
    """One ledger row as deciding needs it (a tuple: a tick reads the history of every matched customer)."""

    id: str
    rule: str
    dedupe_key: str
    channel: str | None
    state: str
    decided_at: datetime
    send_at: datetime | None
    expires_at: datetime | None
    priority: int
    entity_id: str


_PAST_COLUMNS = [contacts.c[name] for name in PastRow._fields]


def contacts_of(connection: Connection, customer_ids: Iterable[str]) -> dict[str, list[PastRow]]:
    """Every ledger row of these customers, oldest first."""
    wanted = sorted(set(customer_ids))
    history: dict[str, list[PastRow]] = {cid: [] for cid in wanted}
    if not wanted:
        return history
    customer = contacts.c.customer_id
    query = (
        sa.select(customer, *_PAST_COLUMNS)
        .where(among(connection.dialect.name, customer, wanted))
        .order_by(contacts.c.decided_at)
    )
    for row in connection.execute(query).all():  # one driver call
        history[row[0]].append(PastRow._make(row[1:]))
    return history


@dataclass(frozen=True)
class ContactView:
    """One ledger row as people read it (explain, reports)."""

    id: str
    rule: str
    entity_id: str
    customer_id: str
    channel: str | None
    state: str
    reason: str
    decided_at: datetime
    send_at: datetime | None
    sent_at: datetime | None
    provider_status: str | None
    step: int  # of the rule's journey


_VIEW_COLUMNS = [contacts.c[name] for name in ContactView.__dataclass_fields__]


def contacts_of_customer(connection: Connection, customer_id: str) -> list[ContactView]:
    """Every ledger row of one customer, oldest first."""
    query = (
        sa.select(*_VIEW_COLUMNS).where(contacts.c.customer_id == customer_id).order_by(contacts.c.decided_at)
    )
    return [ContactView(**row) for row in connection.execute(query).mappings()]


def suppressed_channels(connection: Connection, customer_ids: Iterable[str]) -> dict[str, set[str]]:
    wanted = sorted(set(customer_ids))
    found: dict[str, set[str]] = {}
    if not wanted:
        return found
    query = sa.select(suppressions.c.customer_id, suppressions.c.channel).where(
        among(connection.dialect.name, suppressions.c.customer_id, wanted)
    )
    for customer_id, channel in connection.execute(query):
        found.setdefault(customer_id, set()).add(channel)
    return found


_DECISION_UPDATABLE = (
    "channel",
    "state",
    "reason",
    "priority",
    "decided_at",
    "send_at",
    "expires_at",
    "recheck_at",
    "updated_at",
    "steps",
    "group_key",
)


# The fields of a decision row (`delivery.decide.decision_row`).
_DECISION_COLUMNS = (
    *_DECISION_UPDATABLE,
    "id",
    "dedupe_key",
    "rule",
    "about",
    "entity_id",
    "customer_id",
    "attempts",
    "arm",
    "step",
)


def _record_insert(dialect: str, rows_from: sa.Select[Any] | None = None) -> sa.Insert:
    """The upsert of decision rows: of one row's parameters, or of the rows of ROWS_FROM."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(contacts)
    insert = bulk.rows_of(insert, _DECISION_COLUMNS, rows_from)
    excluded = insert.excluded
    return insert.on_conflict_do_update(
        index_elements=["dedupe_key"],
        # A match once assigned to an arm stays in it (intention to treat), held back again or not.
        set_={name: excluded[name] for name in _DECISION_UPDATABLE}
        | {"arm": sa.func.coalesce(contacts.c.arm, excluded["arm"])},
        # Only a held-back row is decided again. The states are literals, not parameters: each
        # row of the executemany binds its own columns and nothing else.
        where=contacts.c.state.in_([sa.literal_column(f"'{state}'") for state in sorted(HELD_STATES)]),
    )


@lru_cache(maxsize=4)
def _record_statement(dialect: Dialect) -> bulk.Prepared:
    # A field a row leaves out gets the model's default, as an insert through the ORM would.
    fields = Contact.model_fields
    defaults = {
        name: fields[name].get_default(call_default_factory=True)
        for name in _DECISION_COLUMNS
        if not fields[name].is_required()
    }
    return bulk.prepare(
        dialect,
        _record_insert(dialect.name),
        contacts,
        defaults,
        staged=lambda rows_from: _record_insert(dialect.name, rows_from),
        key="dedupe_key",
    )


def record_decisions(connection: Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert decision rows; a dedupe key already decided is left alone unless it was only held back.

    Returns how many rows were written. Safe to run twice, and from several processes at once.
    A follow-up step decided closes its journey's previous step to `followups_due`.
    """
    written = _record_statement(connection.dialect).execute(connection, rows)
    followed = [row for row in rows if row.get("step", 1) > 1]
    if followed:
        connection.execute(
            sa.update(contacts)
            .where(
                contacts.c.rule == sa.bindparam("b_rule"),
                contacts.c.entity_id == sa.bindparam("b_entity_id"),
                contacts.c.step == sa.bindparam("b_step"),
                contacts.c.next_step_from.is_not(None),
            )
            .values(next_step_from=None),
            [{"b_rule": r["rule"], "b_entity_id": r["entity_id"], "b_step": r["step"] - 1} for r in followed],
        )
    return written


def undecided(rule: str) -> Callable[[sa.ColumnElement[Any]], sa.ColumnElement[bool]]:
    """The condition "RULE has decided nothing yet about this record" on a record's id column:
    an anti-join a rule's query carries so that what the ledger holds never leaves the database
    (held-back matches come back through `held_due`, when something may have changed)."""

    def condition(entity_id: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return ~sa.exists().where(
            contacts.c.rule == rule, contacts.c.entity_id == entity_id, contacts.c.step == 1
        )

    return condition


def decided_among(connection: Connection, rule: str, entity_ids: Iterable[str]) -> set[str]:
    """Of ENTITY_IDS, those RULE has decided something about: `undecided`'s check, by key, for
    records already in hand (a few, after a sweep), one index probe each."""
    wanted = set(entity_ids)
    if not wanted:
        return set()
    query = sa.select(contacts.c.entity_id).where(
        contacts.c.rule == rule,
        contacts.c.step == 1,
        among(connection.dialect.name, contacts.c.entity_id, wanted),
    )
    return {str(entity) for entity in connection.execute(query).scalars()}


class Known(NamedTuple):
    """What the ledger holds for the latest contact of a rule's journey about a record."""

    dedupe_key: str
    state: str
    reason: str
    channel: str | None
    decided_at: datetime
    recheck_at: datetime | None
    step: int


def latest_steps(connection: Connection, rule: str, entity_ids: Sequence[str]) -> dict[str, Known]:
    """RULE's latest contact about each of ENTITY_IDS (the highest step decided), by entity id
    (for previews)."""
    found: dict[str, Known] = {}
    wanted = sorted(set(entity_ids))
    columns = [contacts.c[name] for name in Known._fields]
    for start in range(0, len(wanted), 500):
        query = sa.select(contacts.c.entity_id, *columns).where(
            contacts.c.rule == rule, contacts.c.entity_id.in_(wanted[start : start + 500])
        )
        for entity_id, *values in connection.execute(query):
            known = Known._make(values)
            earlier = found.get(str(entity_id))
            if earlier is None or earlier.step < known.step:
                found[str(entity_id)] = known
    return found


class Held(NamedTuple):
    """A held-back contact whose new decision has come due."""

    entity_id: str
    customer_id: str
    step: int


def held_due(
    connection: Connection,
    rule: str,
    now: datetime,
    *,
    customer_id: str | None = None,
    customer_ids: Sequence[str] | None = None,
) -> list[Held]:
    """RULE's held-back contacts due for a new decision at NOW: their recheck time has come (a new
    local day or week for a cap, the end of a cooldown or an inhibition, an expiry, or — held for
    want of a channel — an address, consent or a lifted suppression that came since:
    `reachable_again`). Read off the (state, recheck_at) index: what waits costs nothing.
    (A held row always has a recheck time, but for one held for want of a channel that has no
    expiry: only `reachable_again` makes that one due.)"""
    query = sa.select(contacts.c.entity_id, contacts.c.customer_id, contacts.c.step).where(
        contacts.c.state.in_(sorted(HELD_STATES)), contacts.c.recheck_at <= now, contacts.c.rule == rule
    )
    if customer_id is not None:
        query = query.where(contacts.c.customer_id == customer_id)
    if customer_ids is not None:
        query = query.where(contacts.c.customer_id.in_(list(customer_ids)))
    return [Held._make(row) for row in connection.execute(query)]


def reachable_again(connection: Connection, customer_ids: Iterable[str]) -> None:
    """Something that may let a channel reach these customers happened (an address or consent
    given, a suppression lifted): their contacts held for want of a channel are due for a new
    decision at once, whatever the clock of the next tick (`EARLIEST`). Called in the
    transaction that made the change, as late in it as it can be: on PostgreSQL it takes the
    decision lock, held until that transaction ends.

    The lock is what makes the mark reach a decision made meanwhile: a decider reads the
    customer under it, and until the change commits it reads the customer as it was, so it may
    hold a contact back for want of a channel. Under the lock this update runs either before
    that decider (which then reads the change once it commits) or after it has committed (so
    the update sees its row). On SQLite the database's write lock already orders the two."""
    wanted = sorted(set(customer_ids))
    if not wanted:
        return
    if connection.dialect.name == "postgresql":
        lock_decisions(connection)
    for start in range(0, len(wanted), 10_000):  # a load's customers, in statements of bounded size
        connection.execute(
            sa.update(contacts)
            .where(
                among(connection.dialect.name, contacts.c.customer_id, wanted[start : start + 10_000]),
                contacts.c.state == State.SUPPRESSED,
                sa.or_(contacts.c.recheck_at.is_(None), contacts.c.recheck_at > EARLIEST),
            )
            .values(recheck_at=EARLIEST)
        )


def recheck_customers(connection: Connection, customer_ids: Iterable[str], now: datetime) -> None:
    """Something that frees a customer's caps happened (a contact ended unsent): their held-back
    contacts are due for a new decision."""
    wanted = sorted(set(customer_ids))
    for start in range(0, len(wanted), 500):
        connection.execute(
            sa.update(contacts)
            .where(
                contacts.c.customer_id.in_(wanted[start : start + 500]),
                contacts.c.state == State.SKIPPED,
                sa.or_(contacts.c.recheck_at.is_(None), contacts.c.recheck_at > now),
            )
            .values(recheck_at=now)
        )


def hold_leads(connection: Connection, keys: Sequence[str], now: datetime) -> set[str]:
    """Of the contacts with these dedupe KEYS, those still waiting (pending) — locked until this
    transaction ends, so no dispatcher claims one before the matches joining it are recorded."""
    if not keys:
        return set()
    statement = (
        sa.update(contacts)
        .where(contacts.c.dedupe_key.in_(list(keys)), contacts.c.state == State.PENDING)
        .values(updated_at=now)
        .returning(contacts.c.dedupe_key)
    )
    return {str(row[0]) for row in connection.execute(statement)}


class FollowUp(NamedTuple):
    """A journey whose next step has come due: the previous step was sent long enough ago."""

    entity_id: str
    customer_id: str
    step: int  # the step now due
    previous_sent_at: datetime


def followups_due(
    connection: Connection, rule: str, steps: Sequence[tuple[int, timedelta]], now: datetime
) -> list[FollowUp]:
    """RULE's journeys whose step N (of STEPS: (N, after)) is due at NOW: step N-1 was sent at
    least `after` ago and step N has not been decided yet — read off the index of the sent steps
    whose next one is not decided (`next_step_from`), so the journeys done cost nothing."""
    found: list[FollowUp] = []
    for number, after in steps:
        query = sa.select(contacts.c.entity_id, contacts.c.customer_id, contacts.c.next_step_from).where(
            contacts.c.rule == rule,
            contacts.c.step == number - 1,
            contacts.c.next_step_from <= now - after,
        )
        found.extend(FollowUp(str(e), str(c), number, sent_at) for e, c, sent_at in connection.execute(query))
    return found


class Member(NamedTuple):
    """A match that joined another contact's message (a group)."""

    id: str
    group_key: str
    entity_id: str
    decided_at: datetime


def group_members(connection: Connection, lead_keys: Iterable[str]) -> dict[str, list[Member]]:
    """The matches waiting in the messages of these contacts (by the lead's dedupe key), oldest first."""
    wanted = sorted(set(lead_keys))
    found: dict[str, list[Member]] = {key: [] for key in wanted}
    for start in range(0, len(wanted), 500):
        query = (
            sa.select(contacts.c.id, contacts.c.group_key, contacts.c.entity_id, contacts.c.decided_at)
            .where(contacts.c.group_key.in_(wanted[start : start + 500]), contacts.c.state == State.GROUPED)
            .order_by(contacts.c.decided_at, contacts.c.entity_id)
        )
        for row in connection.execute(query):
            found[str(row[1])].append(Member._make(row))
    return found


def settle_members(connection: Connection, outcomes: Sequence[tuple[str, str, str]], now: datetime) -> None:
    """(member id, state, reason): what became of matches that were to go in another's message."""
    if outcomes:
        connection.execute(
            sa.update(contacts)
            .where(contacts.c.id == sa.bindparam("b_id"), contacts.c.state == State.GROUPED)
            .values(
                state=sa.bindparam("b_state"),
                reason=sa.bindparam("b_reason"),
                # A member held back is decided again at the next tick. Worked out here, not in
                # SQL: an `IN` list cannot be expanded in an executemany.
                recheck_at=sa.bindparam("b_recheck", type_=UTCDateTime()),
                updated_at=sa.bindparam("b_now", type_=UTCDateTime()),
            ),
            [
                {
                    "b_id": i,
                    "b_state": s,
                    "b_reason": r,
                    "b_now": now,
                    "b_recheck": now if s in HELD_STATES else None,
                }
                for i, s, r in outcomes
            ],
        )


def displace(
    connection: Connection, contact_id: str, reason: str, recheck_at: datetime, now: datetime
) -> bool:
    """Hold back a waiting contact a higher-priority one took the place of; False if it is no
    longer waiting (a dispatcher claimed it meanwhile)."""
    statement = (
        sa.update(contacts)
        .where(contacts.c.id == contact_id, contacts.c.state == State.PENDING)
        .values(state=State.SKIPPED, reason=reason, recheck_at=recheck_at, send_at=None, updated_at=now)
        .returning(contacts.c.id)
    )
    return connection.execute(statement).first() is not None


# -- dispatch: claims, leases and outcomes ------------------------------------------------------------


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
    step: int


@dataclass(frozen=True)
class Outcome:
    """How one claimed contact ended this attempt (sent, failed, back to pending, held, …).

    `channel` is set when the send-time gate moved the contact to another channel.
    """

    contact: Claimed
    state: str
    reason: str
    last_error: str | None = None
    provider: str | None = None
    provider_id: str | None = None
    sent_at: datetime | None = None
    send_at: datetime | None = None
    code: str | None = None
    channel: str | None = None
    gate: str | None = None  # the send-time gate's action when it stopped the contact (defer, hold, …)
    recheck_at: datetime | None = None  # held back by the gate: decided again from then


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
        .where(_in_state(State.PENDING), contacts.c.send_at <= now)
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
        .values(state=State.CLAIMED, claimed_by=worker, lease_until=now + lease, updated_at=now)
        .returning(*_CLAIMED_COLUMNS)
    )
    return [Claimed(**row) for row in connection.execute(statement).mappings()]


def mark_sending(
    connection: Connection, worker: str, ids: Sequence[str], now: datetime, lease_until: datetime
) -> set[str]:
    """Record that the requests for IDS are about to leave (one more attempt each); the ids
    marked, which are those WORKER still owns — send nothing else."""
    if not ids:
        return set()
    dialect = connection.dialect.name
    rows = connection.execute(
        _mark_sending(dialect),
        {"b_ids": bound_ids(dialect, ids), "b_worker": worker, "b_until": lease_until, "b_now": now},
    )
    return {str(row[0]) for row in rows}


@lru_cache(maxsize=4)
def _mark_sending(dialect: str) -> sa.Update:
    """`mark_sending`'s statement, built once (it runs for every chunk a dispatcher sends):
    building and compiling it anew cost more than running it."""
    return (
        sa.update(contacts)
        .where(
            among_bound(dialect, contacts.c.id, "b_ids"),
            contacts.c.state == State.CLAIMED,
            contacts.c.claimed_by == sa.bindparam("b_worker"),
        )
        .values(
            state=State.SENDING,
            attempts=contacts.c.attempts + 1,
            lease_until=sa.bindparam("b_until", type_=UTCDateTime()),
            updated_at=sa.bindparam("b_now", type_=UTCDateTime()),
        )
        .returning(contacts.c.id)
    )


def renew_lease(connection: Connection, worker: str, until: datetime, now: datetime) -> int:
    """Extend the lease of every contact WORKER holds (claimed or sending) to UNTIL."""
    statement = (
        sa.update(contacts)
        .where(
            # Implied by the states (a claimed or sending row has a lease); named so that
            # ix_contacts_leased serves it.
            contacts.c.lease_until.is_not(None),
            contacts.c.state.in_([State.CLAIMED, State.SENDING]),
            contacts.c.claimed_by == worker,
        )
        .values(lease_until=until, updated_at=now)
        .returning(contacts.c.id)
    )
    return len(connection.execute(statement).all())


# What `finish` writes for each outcome, with its type; an unset value keeps what the row has.
_OUTCOME_FIELDS: dict[str, sa.types.TypeEngine[Any]] = {
    "id": sa.String(),
    "state": sa.String(),
    "reason": sa.String(),
    "channel": sa.String(),
    "last_error": sa.String(),
    "provider": sa.String(),
    "provider_id": sa.String(),
    "sent_at": UTCDateTime(),
    "send_at": UTCDateTime(),
    "recheck_at": UTCDateTime(),
}


@lru_cache(maxsize=4)
def _finish(dialect: str) -> sa.Update:
    """`finish`'s statement, built once.

    On PostgreSQL it takes every outcome at once, as one JSON array the server reads into rows:
    run as executemany, the driver's pipeline and SQLAlchemy's handling of each set of values
    cost the dispatcher about five times as much. On SQLite, where a statement is a call into
    the library, it runs as executemany, one set of values an outcome. Only rows the worker
    still owns are written; a late answer may still turn its own `unknown` into `sent`.
    """
    if dialect == "postgresql":
        given = (
            sa.func.json_to_recordset(sa.cast(sa.bindparam("b_outcomes", type_=sa.String()), postgresql.JSON))
            .table_valued(*(sa.column(name, kind) for name, kind in _OUTCOME_FIELDS.items()))
            .render_derived(name="outcome", with_types=True)
        )
        value = {name: given.c[name] for name in _OUTCOME_FIELDS}
    else:
        value = {name: sa.bindparam(f"b_{name}", type_=kind) for name, kind in _OUTCOME_FIELDS.items()}
    return (
        sa.update(contacts)
        .where(
            contacts.c.id == value["id"],
            contacts.c.claimed_by == sa.bindparam("b_worker"),
            sa.or_(*(contacts.c.state == state for state in (State.CLAIMED, State.SENDING, State.UNKNOWN))),
        )
        .values(
            state=value["state"],
            reason=value["reason"],
            channel=sa.func.coalesce(value["channel"], contacts.c.channel),
            last_error=sa.func.coalesce(value["last_error"], contacts.c.last_error),
            provider=sa.func.coalesce(value["provider"], contacts.c.provider),
            provider_id=sa.func.coalesce(value["provider_id"], contacts.c.provider_id),
            sent_at=sa.func.coalesce(value["sent_at"], contacts.c.sent_at),
            next_step_from=sa.func.coalesce(value["sent_at"], contacts.c.next_step_from),
            send_at=sa.func.coalesce(value["send_at"], contacts.c.send_at),
            recheck_at=value["recheck_at"],
            claimed_by=None,
            lease_until=None,
            updated_at=sa.bindparam("b_now", type_=UTCDateTime()),
        )
    )


def finish(connection: Connection, worker: str, outcomes: Sequence[Outcome], now: datetime) -> None:
    """Write the outcomes of contacts WORKER claimed, in one statement; rows taken over by
    another worker are left alone. A contact given twice gets its last outcome."""
    if not outcomes:
        return
    dialect = connection.dialect
    written = _outcome_values(outcomes, dialect, now)
    fixed = {"b_worker": worker, "b_now": now}
    if dialect.name == "postgresql":
        connection.execute(_finish(dialect.name), {"b_outcomes": orjson.dumps(written).decode(), **fixed})
    else:
        connection.execute(
            _finish(dialect.name),
            [{**{f"b_{name}": v for name, v in w.items()}, **fixed} for w in written],
        )


def _outcome_values(outcomes: Sequence[Outcome], dialect: Dialect, now: datetime) -> list[dict[str, Any]]:
    """What `finish` writes for each of OUTCOMES, by `_OUTCOME_FIELDS`; a contact given twice
    gets its last outcome. In the texts a provider or an exception may have worded, what neither
    database stores is replaced (`made_storable`): the outcome is written, not lost to its
    description."""
    # On PostgreSQL the instants go in JSON: orjson writes them as RFC 3339 to the microsecond,
    # which timestamptz reads exactly. UTCDateTime refuses a naive one there as everywhere.
    instant = UTCDateTime().process_bind_param if dialect.name == "postgresql" else _as_given
    written = {
        o.contact.id: {
            "id": o.contact.id,
            "state": o.state,
            "reason": made_storable(o.reason),
            "channel": o.channel,
            "last_error": made_storable(o.last_error),
            "provider": o.provider,
            "provider_id": made_storable(o.provider_id),
            "sent_at": instant(o.sent_at, dialect),
            "send_at": instant(o.send_at, dialect),
            "recheck_at": instant(o.recheck_at or (now if o.state in HELD_STATES else None), dialect),
        }
        for o in outcomes
    }
    return list(written.values())


def finish_and_mark_sending(
    connection: Connection,
    worker: str,
    outcomes: Sequence[Outcome],
    ids: Sequence[str],
    now: datetime,
    lease_until: datetime,
) -> set[str]:
    """`finish` OUTCOMES and `mark_sending` IDS (other contacts) in one statement, on PostgreSQL.

    Run on a connection in autocommit, the statement is its own transaction: both writes are
    committed together in one round trip, where a transaction of the two statements costs four
    (BEGIN, the two, COMMIT), each waiting for the dispatching thread to get the interpreter
    back from the senders. Returns the ids marked, as `mark_sending` does."""
    if connection.dialect.name != "postgresql":
        raise ValueError("finish_and_mark_sending needs PostgreSQL (SQLite has no UPDATE in WITH)")
    if not set(ids).isdisjoint(o.contact.id for o in outcomes):
        raise ValueError("a contact cannot be finished and marked sending in one statement")
    if not outcomes:
        return mark_sending(connection, worker, ids, now, lease_until)
    if not ids:
        finish(connection, worker, outcomes, now)
        return set()
    rows = connection.execute(
        _finish_and_mark_sending(),
        {
            "b_outcomes": orjson.dumps(_outcome_values(outcomes, connection.dialect, now)).decode(),
            "b_ids": bound_ids("postgresql", ids),
            "b_worker": worker,
            "b_until": lease_until,
            "b_now": now,
        },
    )
    return {str(row[0]) for row in rows}


@lru_cache(maxsize=1)
def _finish_and_mark_sending() -> sa.Update:
    # PostgreSQL runs a data-modifying WITH whether or not the statement reads it; both parts
    # see the same snapshot, which is why their rows must differ.
    finished = _finish("postgresql").returning(contacts.c.id).cte("finished")
    return _mark_sending("postgresql").add_cte(finished)


def _as_given(value: datetime | None, dialect: Dialect) -> datetime | None:
    return value


def recover_leases(connection: Connection, now: datetime, *, at_least_once: bool = False) -> tuple[int, int]:
    """Contacts whose dispatcher vanished: `claimed` go back to pending, `sending` become unknown.

    A claimed row never left, so it is safe to send again. A sending row may have reached the
    provider: it is marked unknown rather than resent (or resent if at-least-once is chosen);
    it stays its worker's, so that worker's late answer can still record what happened.
    """
    back = connection.execute(
        sa.update(contacts)
        .where(contacts.c.state == State.CLAIMED, contacts.c.lease_until < now)
        .values(state=State.PENDING, claimed_by=None, lease_until=None, updated_at=now)
        .returning(contacts.c.id)
    ).all()
    lost_values: dict[str, Any] = (
        {
            "state": State.PENDING,
            "claimed_by": None,
            "reason": "the sender stopped mid-send; sending again (at-least-once)",
        }
        if at_least_once
        else {
            "state": State.UNKNOWN,
            "reason": "the sender stopped mid-send: it may have been delivered, so it is not resent",
        }
    )
    lost = connection.execute(
        sa.update(contacts)
        .where(contacts.c.state == State.SENDING, contacts.c.lease_until < now)
        .values(lease_until=None, updated_at=now, **lost_values)
        .returning(contacts.c.id)
    ).all()
    return len(back), len(lost)


class Waiting(NamedTuple):
    """A contact decided and not yet sent, as a consent change re-routes it."""

    id: str
    rule: str
    customer_id: str
    channel: str | None
    step: int  # of the journey: a follow-up moves only among its own channels


def waiting_contacts(connection: Connection, customer_ids: Iterable[str]) -> list[Waiting]:
    """The pending contacts of these customers (not yet claimed by a dispatcher)."""
    wanted = sorted(set(customer_ids))
    found: list[Waiting] = []
    for start in range(0, len(wanted), 500):
        query = sa.select(
            contacts.c.id, contacts.c.rule, contacts.c.customer_id, contacts.c.channel, contacts.c.step
        ).where(contacts.c.customer_id.in_(wanted[start : start + 500]), contacts.c.state == State.PENDING)
        found.extend(Waiting._make(row) for row in connection.execute(query))
    return found


def customers_waiting_on_withdrawn_channels(connection: Connection) -> set[str]:
    """Customers with a contact waiting on a channel that has lost its address or consent, or
    has been suppressed (after an ingest of customers, say)."""
    customers = table_of(Customer)
    lost = sa.or_(
        sa.and_(
            contacts.c.channel == "sms", sa.or_(customers.c.phone.is_(None), sa.not_(customers.c.sms_opt_in))
        ),
        sa.and_(
            contacts.c.channel == "email",
            sa.or_(customers.c.email.is_(None), sa.not_(customers.c.email_opt_in)),
        ),
        sa.exists().where(
            suppressions.c.customer_id == contacts.c.customer_id, suppressions.c.channel == contacts.c.channel
        ),
    )
    query = (
        sa.select(contacts.c.customer_id)
        .distinct()
        .join(customers, customers.c.id == contacts.c.customer_id)
        .where(_in_state(State.PENDING), lost)
    )
    return {str(row[0]) for row in connection.execute(query)}


def reroute(connection: Connection, contact_id: str, channel: str | None, reason: str, now: datetime) -> bool:
    """Move a waiting contact to CHANNEL, or hold it back (`suppressed`) when CHANNEL is None."""
    values: dict[str, Any] = (
        {"channel": channel, "reason": reason}
        if channel is not None
        else {"state": State.SUPPRESSED, "reason": reason, "send_at": None, "recheck_at": now}
    )
    statement = (
        sa.update(contacts)
        .where(contacts.c.id == contact_id, contacts.c.state == State.PENDING)
        .values(updated_at=now, **values)
        .returning(contacts.c.id)
    )
    return connection.execute(statement).first() is not None


def revive(connection: Connection, error_prefix: str, now: datetime) -> int:
    """Contacts that failed with an error starting ERROR_PREFIX and have not expired: due again."""
    statement = (
        sa.update(contacts)
        .where(
            _in_state(State.FAILED),
            contacts.c.last_error.startswith(error_prefix, autoescape=True),
            sa.or_(contacts.c.expires_at.is_(None), contacts.c.expires_at > now),
        )
        .values(
            state=State.PENDING,
            send_at=now,
            reason="due again after the templates were fixed",
            updated_at=now,
        )
        .returning(contacts.c.id)
    )
    return len(connection.execute(statement).all())


# -- suppressions and controls --------------------------------------------------------------------


def add_suppression(
    connection: Connection, customer_id: str, channel: str, reason: str, code: str | None, now: datetime
) -> None:
    statement = _insert(connection, suppressions).values(
        customer_id=customer_id,
        channel=channel,
        reason=made_storable(reason),
        code=made_storable(code),
        created_at=now,
    )
    connection.execute(statement.on_conflict_do_nothing(index_elements=["customer_id", "channel"]))


def remove_suppression(connection: Connection, customer_id: str, channel: str) -> bool:
    """Lift a suppression (the customer's held-back contacts are then decided again); False if
    there was none."""
    statement = (
        sa.delete(suppressions)
        .where(suppressions.c.customer_id == customer_id, suppressions.c.channel == channel)
        .returning(suppressions.c.customer_id)
    )
    if connection.execute(statement).first() is None:
        return False
    reachable_again(connection, [customer_id])
    return True


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


# -- tasks ----------------------------------------------------------------------------------------------


def open_task(
    connection: Connection,
    dedupe_key: str,
    rule: str,
    customer_id: str,
    entity_id: str,
    summary: str,
    now: datetime,
    *,
    detail: dict[str, Any] | None = None,
    announce: bool = False,
) -> str | None:
    """Open a task for a person about one match; None if one exists already. With ANNOUNCE its
    webhook is due at once."""
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
            detail=detail or {},
            webhook_attempts=0,
            webhook_next_at=now if announce else None,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(tasks.c.id)
    )
    row = connection.execute(statement).first()
    return None if row is None else str(row[0])


def task_row(
    dedupe_key: str,
    rule: str,
    customer_id: str,
    entity_id: str,
    summary: str,
    now: datetime,
    *,
    detail: dict[str, Any] | None = None,
    announce: bool = False,
) -> dict[str, Any]:
    """A task to open with `open_tasks`; with ANNOUNCE its webhook is due at once."""
    return {
        "id": new_id(),
        "dedupe_key": dedupe_key,
        "rule": rule,
        "customer_id": customer_id,
        "entity_id": entity_id,
        "summary": summary,
        "status": "open",
        "created_at": now,
        "detail": detail or {},
        "webhook_attempts": 0,
        "webhook_next_at": now if announce else None,
    }


# The fields of a task row (`task_row`).
_TASK_COLUMNS = (
    "id",
    "dedupe_key",
    "rule",
    "customer_id",
    "entity_id",
    "summary",
    "status",
    "created_at",
    "detail",
    "webhook_attempts",
    "webhook_next_at",
)


def _open_insert(dialect: str, rows_from: sa.Select[Any] | None = None) -> sa.Insert:
    """The insert of task rows, a task already open for the match left alone: of one row's
    parameters, or of the rows of ROWS_FROM."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(tasks)
    insert = bulk.rows_of(insert, _TASK_COLUMNS, rows_from)
    return insert.on_conflict_do_nothing(index_elements=["dedupe_key"])


@lru_cache(maxsize=4)
def _open_statement(dialect: Dialect) -> bulk.Prepared:
    return bulk.prepare(
        dialect,
        _open_insert(dialect.name),
        tasks,
        {},
        staged=lambda rows_from: _open_insert(dialect.name, rows_from),
        key="dedupe_key",
    )


def open_tasks(connection: Connection, rows: Sequence[dict[str, Any]]) -> list[str]:
    """Open the tasks of ROWS (`task_row`) in one statement; the ids of those opened, in the
    order of ROWS (a match with a task already has none opened again)."""
    if not rows:
        return []
    _open_statement(connection.dialect).execute(connection, rows)
    ids = [row["id"] for row in rows]
    query = sa.select(tasks.c.id).where(among(connection.dialect.name, tasks.c.id, ids))
    opened = {str(task_id) for task_id in connection.execute(query).scalars()}
    return [task_id for task_id in ids if task_id in opened]


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


def close_task(connection: Connection, task_id: str, note: str, now: datetime) -> Task | None:
    """Close a task with a note; None if there is no task with that id."""
    statement = (
        sa.update(tasks)
        .where(tasks.c.id == task_id)
        .values(status="closed", closed_at=now, note=note)
        .returning(*tasks.c)
    )
    row = connection.execute(statement).mappings().first()
    return None if row is None else Task(**row)


def due_task_webhooks(connection: Connection, now: datetime, limit: int = 100) -> list[Task]:
    """Tasks whose webhook is due (never answered yet, and its next attempt has come)."""
    query = (
        sa.select(tasks)
        .where(tasks.c.webhook_next_at.is_not(None), tasks.c.webhook_next_at <= now)
        .order_by(tasks.c.webhook_next_at)
        .limit(limit)
    )
    return [Task(**row) for row in connection.execute(query).mappings()]


def record_task_webhook(
    connection: Connection, task_id: str, status: str, attempts: int, next_at: datetime | None
) -> None:
    """The outcome of one webhook attempt; NEXT_AT None once it was answered."""
    connection.execute(
        sa.update(tasks)
        .where(tasks.c.id == task_id)
        .values(webhook_status=status, webhook_attempts=attempts, webhook_next_at=next_at)
    )


# -- reports ----------------------------------------------------------------------------------------------


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
    query = sa.select(sa.func.count()).where(_in_state(State.PENDING), contacts.c.send_at <= now)
    return int(connection.execute(query).scalar_one())


# -- tick slots -----------------------------------------------------------------------------------------


def take_ticks(
    connection: Connection, slots: Sequence[tuple[str, datetime]], now: datetime, worker: str
) -> list[str]:
    """Record that WORKER evaluates each (rule, slot); the rules whose slot it took (those no
    other worker took already, nor a later slot of).

    On PostgreSQL a transaction-level advisory lock makes the workers take their slots one at a
    time, so rules due at the same instant are all taken by one worker and decided together.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_TICKS_KEY)))
    taken: list[str] = []
    for rule, slot in slots:
        statement = _insert(connection, rule_ticks).values(rule=rule, slot=slot, ticked_at=now, worker=worker)
        statement = statement.on_conflict_do_update(
            index_elements=["rule"],
            set_={"slot": slot, "ticked_at": now, "worker": worker},
            where=rule_ticks.c.slot < slot,
        ).returning(rule_ticks.c.rule)
        if connection.execute(statement).first() is not None:
            taken.append(rule)
    return taken


def release_ticks(connection: Connection, slots: Sequence[tuple[str, datetime]], worker: str) -> None:
    """Give back slots a failed tick took, so the next worker (or this one) runs them again."""
    for rule, slot in slots:
        connection.execute(
            sa.delete(rule_ticks).where(
                rule_ticks.c.rule == rule, rule_ticks.c.slot == slot, rule_ticks.c.worker == worker
            )
        )


# -- goals ------------------------------------------------------------------------------------------------


def _goal_open(rule: str, since: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        contacts.c.rule == rule,
        contacts.c.decided_at >= since,
        contacts.c.arm.is_not(None),
        contacts.c.goal_met_at.is_(None),
    )


def goal_open(rule: str, since: datetime) -> Callable[[sa.ColumnElement[Any]], sa.ColumnElement[bool]]:
    """The condition "one of RULE's matches assigned to an arm since SINCE, its goal not yet
    met" on a record's id column, for the goal's query (`ix_contacts_goal_open` answers it).

    Every assigned match is measured, whatever became of it (sent, cancelled because the
    customer converted first, expired, failed…): leaving any of them out would bias the
    comparison with the holdout, which loses nobody.
    """
    waiting = sa.select(contacts.c.entity_id).where(_goal_open(rule, since))

    def condition(entity_id: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return entity_id.in_(waiting)

    return condition


def mark_goal_met(
    connection: Connection, rule: str, entity_ids: Sequence[str], since: datetime, now: datetime
) -> int:
    """The goal of RULE's open matches (`goal_open`) about ENTITY_IDS is met at NOW; how many."""
    met = 0
    wanted = sorted(set(entity_ids))
    for start in range(0, len(wanted), 500):
        met += connection.execute(
            sa.update(contacts)
            .where(_goal_open(rule, since), contacts.c.entity_id.in_(wanted[start : start + 500]))
            .values(goal_met_at=now)
        ).rowcount
    return met


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
        .where(contacts.c.decided_at >= since, contacts.c.step == 1)
        .group_by(contacts.c.rule)
        .order_by(contacts.c.rule)
    )
    return [Funnel(rule, *(int(n) for n in numbers)) for rule, *numbers in connection.execute(query)]


class StepCount(NamedTuple):
    """One step of a rule's journeys: how many were sent, and after how many of them the goal was
    met before the next step went out."""

    rule: str
    step: int
    sent: int
    goal_met_after: int


def step_counts(connection: Connection, since: datetime, rules: Sequence[str]) -> list[StepCount]:
    """Per rule of RULES and per step, the messages sent since SINCE and the goals met after each
    (the goal is measured on the journey's first contact)."""
    if not rules:
        return []
    first, following = contacts.alias("first"), contacts.alias("following")
    step = contacts
    converted = sa.and_(
        first.c.goal_met_at >= step.c.sent_at,
        sa.or_(following.c.sent_at.is_(None), first.c.goal_met_at < following.c.sent_at),
    )
    query = (
        sa.select(step.c.rule, step.c.step, sa.func.count(), sa.func.count(sa.case((converted, 1))))
        .select_from(step)
        .join(
            first,
            sa.and_(first.c.rule == step.c.rule, first.c.entity_id == step.c.entity_id, first.c.step == 1),
        )
        .outerjoin(
            following,
            sa.and_(
                following.c.rule == step.c.rule,
                following.c.entity_id == step.c.entity_id,
                following.c.step == step.c.step + 1,
                following.c.state == State.SENT,
            ),
        )
        .where(step.c.state == State.SENT, step.c.decided_at >= since, step.c.rule.in_(list(rules)))
        .group_by(step.c.rule, step.c.step)
        .order_by(step.c.rule, step.c.step)
    )
    return [StepCount(r, int(s), int(n), int(m)) for r, s, n, m in connection.execute(query)]


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
    state: str


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
    statement = statement.values(provider_status=made_storable(status), updated_at=now).returning(
        contacts.c.id
    )
    return connection.execute(statement).first() is not None


def fail_delivered(connection: Connection, contact_id: str, reason: str, now: datetime) -> bool:
    """A provider accepted a message and then dropped it for a reason about us, not the address."""
    statement = (
        sa.update(contacts)
        .where(contacts.c.id == contact_id, contacts.c.state == State.SENT)
        .values(state=State.FAILED, reason=made_storable(reason), updated_at=now)
        .returning(contacts.c.id)
    )
    return connection.execute(statement).first() is not None


def first_sight(connection: Connection, source: str, event_id: str, now: datetime) -> bool:
    """Remember a provider event; False if it was seen before (a replay: apply nothing)."""
    statement = (
        _insert(connection, inbound_events)
        .values(source=source, event_id=made_storable(event_id), received_at=now)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(inbound_events.c.event_id)
    )
    return connection.execute(statement).first() is not None


class LedgerEntry(NamedTuple):
    """What a backtest tallies of one contact: its rule, customer, channel, state, why, when."""

    rule: str
    customer_id: str
    channel: str | None
    state: str
    reason: str
    steps: list[Any]
    decided_at: datetime
    send_at: datetime | None
    sent_at: datetime | None
    updated_at: datetime


def entries_between(connection: Connection, start: datetime, end: datetime) -> list[LedgerEntry]:
    """The contacts decided, sent or last changed in [START, END)."""
    c = contacts.c
    inside = [sa.and_(column >= start, column < end) for column in (c.decided_at, c.sent_at, c.updated_at)]
    query = sa.select(
        c.rule,
        c.customer_id,
        c.channel,
        c.state,
        c.reason,
        c.steps,
        c.decided_at,
        c.send_at,
        c.sent_at,
        c.updated_at,
    ).where(sa.or_(*inside))
    return [LedgerEntry._make(row) for row in connection.execute(query)]


def copy_before(source: Connection, target: Connection, start: datetime) -> int:
    """Copy SOURCE's contacts decided before START, and its suppressions made before START, into
    TARGET (an empty ledger: a backtest's scratch copy). How many contacts were copied."""
    copied = 0
    for table, column in ((contacts, contacts.c.decided_at), (suppressions, suppressions.c.created_at)):
        rows = [dict(row) for row in source.execute(sa.select(table).where(column < start)).mappings()]
        for begin in range(0, len(rows), 1000):
            target.execute(sa.insert(table), rows[begin : begin + 1000])
        copied += len(rows) if table is contacts else 0
    return copied


def suppressions_between(connection: Connection, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """The suppressions made in [START, END), oldest first, as rows."""
    query = (
        sa.select(suppressions)
        .where(suppressions.c.created_at >= start, suppressions.c.created_at < end)
        .order_by(suppressions.c.created_at)
    )
    return [dict(row) for row in connection.execute(query).mappings()]


def add_suppression_row(connection: Connection, row: dict[str, Any]) -> None:
    """Insert a suppression row as it was recorded (a backtest replaying it); kept if already there."""
    connection.execute(_insert(connection, suppressions).values(row).on_conflict_do_nothing())

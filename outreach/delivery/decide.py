"""Matches → decisions → the ledger: the one decision point.

Finding matches is a query per rule and may run anywhere, in parallel. Deciding is serialised:
`evaluate` decides a chunk of customers at a time inside a transaction that holds the ledger's
decision lock (`ledger.lock_decisions`), reading each customer's history under it, so every
decision sees every earlier one — across the rules of a tick, the daemon's threads and several
processes on one database. All the candidates of one customer are decided together, highest
priority first. `plan` is the same deciding without the lock and without writing (previews,
explain). Every function takes `now`: the clock is read by the caller, once a tick.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.engine import Connection, Engine

from outreach import policy
from outreach.delivery.tasks import task_detail, task_summary
from outreach.errors import describe
from outreach.rules.evaluate import Match, find_matches
from outreach.rules.loader import Rule
from outreach.settings import Settings
from outreach.state import ledger, records
from outreach.vocabulary import State

log = structlog.get_logger("outreach.delivery")

# Customers decided per transaction: the decision lock is held for one chunk at a time, so the
# dispatcher's writes (and other deciders) wait at most that long.
CHUNK_CUSTOMERS = 2000


def limits_of(settings: Settings) -> policy.Limits:
    d = settings.delivery
    return policy.Limits(quiet_hours=d.quiet_hours, max_per_day=d.max_per_day, max_per_week=d.max_per_week)


def rule_policy(rule: Rule) -> policy.RulePolicy:
    return policy.RulePolicy(
        name=rule.name,
        about=rule.about,
        channels=rule.channels,
        priority=rule.priority,
        cooldown=rule.cooldown,
        delay=rule.delay,
        expires=rule.expires,
        quiet_hours=rule.quiet_hours,
        holdout=rule.holdout,
    )


def recipient(customer: Mapping[str, Any], suppressed: set[str] | frozenset[str]) -> policy.Recipient:
    return policy.Recipient(
        id=customer["id"],
        timezone=customer["timezone"],
        preferred_channel=customer["preferred_channel"],
        email=customer["email"],
        phone=customer["phone"],
        email_opt_in=bool(customer["email_opt_in"]),
        sms_opt_in=bool(customer["sms_opt_in"]),
        suppressed=frozenset(suppressed),
    )


def past_contact(row: ledger.PastRow) -> policy.PastContact:
    return policy.PastContact(
        rule=row.rule,
        dedupe_key=row.dedupe_key,
        channel=row.channel,
        state=row.state,
        decided_at=row.decided_at,
        send_at=row.send_at,
        expires_at=row.expires_at,
        id=row.id,
        priority=row.priority,
    )


@dataclass(frozen=True)
class TickResult:
    """What deciding did: every decision (duplicates too), rows written, tasks opened, contacts
    displaced, and the rules whose matches could not be found (rule → error)."""

    decisions: list[policy.Decision]
    recorded: int
    tasks: list[str]
    displaced: int = 0
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class _Tally:
    decisions: list[policy.Decision] = field(default_factory=list)
    recorded: int = 0
    tasks: list[str] = field(default_factory=list)
    displaced: int = 0

    def result(self) -> TickResult:
        return TickResult(self.decisions, self.recorded, self.tasks, self.displaced)


def find_all_matches(
    connection: Connection, rules: Sequence[Rule], now: datetime, *, customer_id: str | None = None
) -> list[tuple[Rule, Match]]:
    """Every match of RULES at NOW (optionally of one customer): one query per rule."""
    return [
        (rule, match)
        for rule in rules
        for match in find_matches(connection, rule, now, customer_id=customer_id)
    ]


def plan(
    connection: Connection,
    rules: Sequence[Rule],
    now: datetime,
    limits: policy.Limits,
    *,
    customer_id: str | None = None,
) -> list[policy.Decision]:
    """What would be decided for every match of RULES at NOW; reads the ledger, writes nothing.

    The same decisions `evaluate` would record, since it too decides all of a customer's
    candidates together.
    """
    matches = find_all_matches(connection, rules, now, customer_id=customer_id)
    return _decide(connection, matches, now, limits)


def evaluate(
    engine: Engine,
    rules: Sequence[Rule],
    now: datetime,
    limits: policy.Limits,
    *,
    announce_tasks: bool = False,
) -> TickResult:
    """Evaluate RULES at NOW and record every new decision, a chunk of customers at a time under
    the decision lock.

    A rule with `escalate: true` also opens a task for a person for every match it decides,
    whether or not a message can be sent (a cap or missing consent never hides a detractor from
    a person); with ANNOUNCE_TASKS their webhook is due at once.
    """
    matches: list[tuple[Rule, Match]] = []
    failed: dict[str, str] = {}
    for rule in rules:
        # One rule's query failing (a bad edit, a database error) must not stop the others.
        try:
            with engine.connect() as connection:
                matches.extend((rule, match) for match in find_matches(connection, rule, now))
        except Exception as exc:  # noqa: BLE001 - reported per rule, by name, in /healthz and the log
            log.error("rule_failed", rule=rule.name, error=describe(exc))
            failed[rule.name] = describe(exc)
    result = decide_matches(engine, matches, now, limits, announce_tasks=announce_tasks)
    return TickResult(result.decisions, result.recorded, result.tasks, result.displaced, failed)


def decide_matches(
    engine: Engine,
    matches: Sequence[tuple[Rule, Match]],
    now: datetime,
    limits: policy.Limits,
    *,
    announce_tasks: bool = False,
) -> TickResult:
    """Decide and record MATCHES found at NOW (see `evaluate`)."""
    tally = _Tally()
    for chunk in _by_customer_chunks(matches):
        with engine.begin() as connection:
            ledger.lock_decisions(connection)
            _decide_and_record(connection, chunk, now, limits, announce_tasks, tally)
    return tally.result()


def _by_customer_chunks(matches: Sequence[tuple[Rule, Match]]) -> Iterator[list[tuple[Rule, Match]]]:
    """MATCHES in chunks of at most CHUNK_CUSTOMERS customers, a customer's matches never split."""
    by_customer: dict[str, list[tuple[Rule, Match]]] = {}
    for rule, match in matches:
        by_customer.setdefault(match.customer_id, []).append((rule, match))
    chunk: list[tuple[Rule, Match]] = []
    customers = 0
    for found in by_customer.values():
        chunk.extend(found)
        customers += 1
        if customers >= CHUNK_CUSTOMERS:
            yield chunk
            chunk, customers = [], 0
    if chunk:
        yield chunk


@dataclass(frozen=True)
class _Inputs:
    """What deciding a set of matches reads: customers, suppressions and their ledger history."""

    people: dict[str, records.Record]
    suppressed: dict[str, set[str]]
    history: dict[str, list[policy.PastContact]]


def _read(connection: Connection, customer_ids: set[str]) -> _Inputs:
    return _Inputs(
        records.rows_by_id(connection, "customer", customer_ids),
        ledger.suppressed_channels(connection, customer_ids),
        {
            cid: [past_contact(row) for row in rows]
            for cid, rows in ledger.contacts_of(connection, customer_ids).items()
        },
    )


def _decide(
    connection: Connection,
    matches: Sequence[tuple[Rule, Match]],
    now: datetime,
    limits: policy.Limits,
    inputs: _Inputs | None = None,
) -> list[policy.Decision]:
    if not matches:
        return []
    if inputs is None:
        inputs = _read(connection, {match.customer_id for _rule, match in matches})
    policies: dict[str, policy.RulePolicy] = {}
    candidates = []
    for rule, match in matches:
        person = inputs.people.get(match.customer_id)
        if person is None:  # deleted between the match and now
            continue
        if rule.name not in policies:
            policies[rule.name] = rule_policy(rule)
        candidates.append(
            policy.Candidate(
                policies[rule.name],
                match.entity_id,
                recipient(person, inputs.suppressed.get(match.customer_id, set())),
            )
        )
    # Held-back rows are passed too: policy decides them again, keeping their expiry.
    return policy.decide(candidates, inputs.history, limits, now)


def _decide_and_record(
    connection: Connection,
    matches: Sequence[tuple[Rule, Match]],
    now: datetime,
    limits: policy.Limits,
    announce_tasks: bool,
    tally: _Tally,
) -> None:
    """Decide MATCHES under the lock, displace what higher priorities took the place of, record."""
    customers = {match.customer_id for _rule, match in matches}
    inputs = _read(connection, customers)
    decisions = _decide(connection, matches, now, limits, inputs)
    # A displaced contact a dispatcher claimed since it was read cannot give its place: decide
    # that customer again, with the history as it is now (at most a few rounds: claims only
    # happen to contacts that have come due).
    done: set[str] = set()
    for _round in range(5):
        lost: set[str] = set()
        for d in decisions:
            for out in d.displaced:
                if out.contact_id in done:
                    continue
                if ledger.displace(connection, out.contact_id, out.reason, out.recheck_at, now):
                    done.add(out.contact_id)
                else:
                    lost.add(d.customer_id)
        if not lost:
            break
        log.info("displacement_lost", customers=len(lost))
        again = _read(connection, lost)
        redo = [(rule, match) for rule, match in matches if match.customer_id in lost]
        replaced = {(d.rule, d.entity_id): d for d in _decide(connection, redo, now, limits, again)}
        decisions = [replaced.get((d.rule, d.entity_id), d) for d in decisions]
    tally.displaced += len(done)
    by_name = {rule.name: rule for rule, _match in matches}
    rows = [decision_row(d, by_name[d.rule], now) for d in decisions if d.state != policy.DUPLICATE]
    tally.recorded += ledger.record_decisions(connection, rows)
    tally.decisions.extend(decisions)
    _open_tasks(connection, decisions, by_name, inputs.people, now, announce_tasks, tally)


def _open_tasks(
    connection: Connection,
    decisions: Sequence[policy.Decision],
    rules: Mapping[str, Rule],
    people: Mapping[str, records.Record],
    now: datetime,
    announce: bool,
    tally: _Tally,
) -> None:
    escalated = [d for d in decisions if rules[d.rule].escalate and d.state != policy.DUPLICATE]
    if not escalated:
        return
    entities: dict[str, dict[str, records.Record]] = {}
    for about in {rules[d.rule].about for d in escalated} - {"customer"}:
        ids = [d.entity_id for d in escalated if rules[d.rule].about == about]
        entities[about] = records.rows_by_id(connection, about, ids)
    for d in escalated:
        rule = rules[d.rule]
        customer = people.get(d.customer_id, {"id": d.customer_id})
        entity = customer if rule.about == "customer" else entities[rule.about].get(d.entity_id, {})
        task = ledger.open_task(
            connection,
            d.dedupe_key,
            d.rule,
            d.customer_id,
            d.entity_id,
            task_summary(rule, d),
            now,
            detail=task_detail(rule, customer, entity, d),
            announce=announce,
        )
        if task is not None:
            tally.tasks.append(task)


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
        "recheck_at": decision.recheck_at if decision.state in (State.SKIPPED, State.SUPPRESSED) else None,
        "updated_at": now,
        "attempts": 0,
        "steps": [list(step) for step in decision.steps],
        "arm": policy.assigned_arm(decision),
    }

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

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

import structlog
from sqlalchemy.engine import Connection, Engine

from outreach import policy
from outreach.delivery.tasks import CONTACT_FIELDS, task_detail, task_summary
from outreach.errors import describe
from outreach.memory import collector_paused
from outreach.rules.evaluate import Since, find_matches, matches_query, query_fingerprint
from outreach.rules.loader import Rule
from outreach.settings import Settings
from outreach.state import ledger, records, sweeps
from outreach.state.db import large_sqlite_cache
from outreach.state.models import BY_NAME
from outreach.vocabulary import About, State

log = structlog.get_logger("outreach.delivery")

# Customers decided per transaction: the decision lock is held for one chunk at a time, so the
# dispatcher's writes (and other deciders) wait at most that long.
CHUNK_CUSTOMERS = 2000


def limits_of(settings: Settings) -> policy.Limits:
    d = settings.delivery
    return policy.Limits(quiet_hours=d.quiet_hours, max_per_day=d.max_per_day, max_per_week=d.max_per_week)


def rule_policy(rule: Rule, step: int = 1) -> policy.RulePolicy:
    """What RULE says about delivery; for a follow-up STEP, its channels and no delay or holdout
    (its timing is its `after`, its arm the journey's)."""
    if step > 1:
        return policy.RulePolicy(
            name=rule.name,
            about=rule.about,
            channels=rule.channels_of(step),
            priority=rule.priority,
            cooldown=rule.cooldown,
            expires=rule.expires,
            quiet_hours=rule.quiet_hours,
            inhibited_by=rule.inhibited_by,
        )
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
        group=rule.group is not None,
        group_wait=rule.group_wait,
        inhibited_by=rule.inhibited_by,
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


class Found(NamedTuple):
    """A candidate for a contact: a rule's match (step 1) or the next step of its journey."""

    rule: Rule
    customer_id: str
    entity_id: str
    step: int = 1


@dataclass
class Candidates:
    """What one evaluation found: candidates to decide, journeys that end (a follow-up whose
    condition cleared or goal was met), and rules whose query failed (rule → error)."""

    found: list[Found] = field(default_factory=list)
    ended: list[tuple[Rule, policy.Decision]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def find_candidates(
    connection: Connection,
    rule: Rule,
    now: datetime,
    *,
    customer_id: str | None = None,
    entity_ids: Sequence[str] | None = None,
    customer_ids: Sequence[str] | None = None,
    since: Since | None = None,
) -> Candidates:
    """What RULE has to decide at NOW (optionally for one customer, or among ENTITY_IDS):

    - its matches the ledger knows nothing of: the rule's query carries an anti-join against the
      ledger, so a match decided before never leaves the database; after a sweep (SINCE), the
      records that can have become matches since (`outreach.state.sweeps`), looked up in the
      ledger by key;
    - its held-back contacts whose new decision has come due (`ledger.held_due`), if they still
      match — those that no longer do end, cancelled;
    - the follow-up steps of its journeys that have come due, while `when` still holds and the
      goal is not met.
    """
    matches = find_matches(
        connection,
        rule,
        now,
        customer_id=customer_id,
        entity_ids=entity_ids,
        customer_ids=customer_ids,
        restrict=ledger.undecided(rule.name) if since is None else None,
        since=since,
    )
    if since is not None:
        # The few records a sweep leaves are checked against the ledger by key, not joined to it:
        # the planner cannot tell how few they are, and would hash every contact of the rule.
        known = ledger.decided_among(connection, rule.name, [m.entity_id for m in matches])
        matches = [m for m in matches if m.entity_id not in known]
    found = Candidates([Found(rule, m.customer_id, m.entity_id) for m in matches])
    held = ledger.held_due(connection, rule.name, now, customer_id=customer_id, customer_ids=customer_ids)
    if entity_ids is not None:
        wanted = set(entity_ids)
        held = [h for h in held if h.entity_id in wanted]
    if held:
        holding = _entities_where(connection, rule, rule.condition, now, sorted({h.entity_id for h in held}))
        for h in held:
            if h.entity_id in holding:
                found.found.append(Found(rule, h.customer_id, h.entity_id, h.step))
            else:
                reason = "the condition no longer holds: held back until now, it ends here"
                ending = ledger.FollowUp(h.entity_id, h.customer_id, h.step, now)
                found.ended.append((rule, _journey_end(rule, ending, reason)))
    if not rule.steps:
        return found
    due = [
        f
        for f in ledger.followups_due(connection, rule.name, [(s.number, s.after) for s in rule.steps], now)
        if (customer_id is None or f.customer_id == customer_id)
        and (entity_ids is None or f.entity_id in entity_ids)
        and (customer_ids is None or f.customer_id in customer_ids)
    ]
    if not due:
        return found
    ids = sorted({f.entity_id for f in due})
    holding = _entities_where(connection, rule, rule.condition, now, ids)
    met = _entities_where(connection, rule, rule.goal_condition, now, ids) if rule.goal_condition else set()
    for f in due:
        if f.entity_id in holding and f.entity_id not in met:
            found.found.append(Found(rule, f.customer_id, f.entity_id, f.step))
            continue
        why = "the goal was met" if f.entity_id in met else "the condition no longer holds"
        found.ended.append((rule, _journey_end(rule, f, f"{why}: the journey ends before step {f.step}")))
    return found


def _entities_where(
    connection: Connection, rule: Rule, condition: Any, now: datetime, ids: list[str]
) -> set[str]:
    """Of IDS, the records of RULE's kind for which CONDITION holds at NOW."""
    holding: set[str] = set()
    for start in range(0, len(ids), 500):
        query = matches_query(
            rule.about, condition, connection.dialect.name, now, entity_ids=ids[start : start + 500]
        )
        holding.update(str(entity) for entity, _customer in connection.execute(query))
    return holding


def _journey_end(rule: Rule, due: ledger.FollowUp, reason: str) -> policy.Decision:
    """A CANCELLED decision for a contact the rule will not make (the dedupe key is the step's)."""
    key = policy.dedupe_key(rule.name, rule.about, due.entity_id, due.customer_id, due.step)
    return policy.Decision(
        rule=rule.name,
        entity_id=due.entity_id,
        customer_id=due.customer_id,
        dedupe_key=key,
        state=State.CANCELLED,
        channel=None,
        reason=reason,
        send_at=None,
        expires_at=None,
        trace=(("journey", reason),),
        priority=rule.priority,
        step=due.step,
    )


def find_all(
    connection: Connection, rules: Sequence[Rule], now: datetime, *, customer_id: str | None = None
) -> Candidates:
    """Every candidate of RULES at NOW (optionally of one customer)."""
    every = Candidates()
    for rule in rules:
        one = find_candidates(connection, rule, now, customer_id=customer_id)
        every.found.extend(one.found)
        every.ended.extend(one.ended)
    return every


def plan(
    connection: Connection,
    rules: Sequence[Rule],
    now: datetime,
    limits: policy.Limits,
    *,
    customer_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[policy.Decision]:
    """What would be decided for every match of RULES at NOW; reads the ledger, writes nothing.

    The new decisions are exactly those `evaluate` would record (the same candidates, a chunk of
    customers at a time, all of a customer's decided together); every other match — decided
    before, or held back with nothing changed since — comes back as a "duplicate" saying what
    the ledger holds for it. PROGRESS is told (done, total) after each chunk and each rule.
    """
    found = find_all(connection, rules, now, customer_id=customer_id)
    chunks = list(_by_customer_chunks(found.found))
    total = len(chunks) + len(rules)
    decided = [d for _rule, d in found.ended]
    for done, chunk in enumerate(chunks, start=1):
        decided.extend(_decide(connection, chunk, now, limits))
        if progress is not None:
            progress(done, total)
    new = {(d.rule, d.entity_id) for d in decided}
    for done, rule in enumerate(rules, start=len(chunks) + 1):
        known = [
            m
            for m in find_matches(connection, rule, now, customer_id=customer_id)
            if (rule.name, m.entity_id) not in new
        ]
        rows = ledger.latest_steps(connection, rule.name, [m.entity_id for m in known])
        for m in known:
            row = rows.get(m.entity_id)
            if row is None:
                continue
            reason = f"decided {row.decided_at:%Y-%m-%d %H:%M} UTC: {row.state} ({row.reason})"
            if row.state == State.SUPPRESSED:
                reason = f"held back: {row.reason}; decided again when the customer can be reached"
            elif row.state == State.SKIPPED:
                again = (
                    f"at {row.recheck_at:%Y-%m-%d %H:%M} UTC" if row.recheck_at else "when consent changes"
                )
                reason = f"held back: {row.reason}; decided again {again}"
            decided.append(
                policy.Decision(
                    rule=rule.name,
                    entity_id=m.entity_id,
                    customer_id=m.customer_id,
                    dedupe_key=row.dedupe_key,
                    state=policy.DUPLICATE,
                    channel=row.channel,
                    reason=reason,
                    send_at=None,
                    expires_at=None,
                    trace=(("dedupe", reason),),
                    priority=rule.priority,
                    step=row.step,
                )
            )
        if progress is not None:
            progress(done, total)
    return decided


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

    Each rule's evaluation is a sweep (`outreach.state.sweeps`): once its decisions are
    recorded, the next tick only looks at the records that can have become matches since.
    """
    every = Candidates()
    kept = sweeps.kept_on(engine.dialect.name)
    conditions = {rule.name: query_fingerprint(rule.about, rule.condition) for rule in rules} if kept else {}
    with engine.connect() as connection:
        before = sweeps.usable(connection, conditions)
    swept: list[sweeps.Sweep] = []
    for rule in rules:
        # One rule's query failing (a bad edit, a database error) must not stop the others.
        try:
            with engine.connect() as connection:
                horizon = sweeps.horizon(connection)
                last = before.get(rule.name)
                since = None if last is None else Since(last.swept_at, sweeps.written_since(last.horizon))
                one = find_candidates(connection, rule, now, since=since)
        except Exception as exc:  # noqa: BLE001 - reported per rule, by name, in /healthz and the log
            log.error("rule_failed", rule=rule.name, error=describe(exc))
            every.failed[rule.name] = describe(exc)
            continue
        every.found.extend(one.found)
        every.ended.extend(one.ended)
        if horizon is not None:
            swept.append(sweeps.Sweep(rule.name, conditions[rule.name], now, *horizon))
    result = decide_candidates(engine, every, now, limits, announce_tasks=announce_tasks)
    if swept:
        with engine.begin() as connection:
            sweeps.record(connection, swept)
    return result


def evaluate_records(
    engine: Engine,
    rules: Sequence[Rule],
    table: str,
    ids: Sequence[str],
    now: datetime,
    limits: policy.Limits,
    *,
    announce_tasks: bool = False,
) -> TickResult:
    """Evaluate at once what records just loaded into TABLE (by id) may have changed: the rules
    about those records, restricted to them, and — for customers — every rule about the
    customers' records, restricted to those customers; decided through the same decision point
    as a tick. A record posted to `/events` is answered in seconds instead of at the next tick."""
    about = BY_NAME[table].about
    every = Candidates()
    for rule in rules:
        try:
            with engine.connect() as connection:
                if rule.about == about:
                    one = find_candidates(connection, rule, now, entity_ids=list(ids))
                elif about == About.CUSTOMER:
                    one = find_candidates(connection, rule, now, customer_ids=list(ids))
                else:
                    continue
        except Exception as exc:  # noqa: BLE001 - reported per rule, by name
            log.error("rule_failed", rule=rule.name, error=describe(exc))
            every.failed[rule.name] = describe(exc)
            continue
        every.found.extend(one.found)
        every.ended.extend(one.ended)
    return decide_candidates(engine, every, now, limits, announce_tasks=announce_tasks)


def decide_candidates(
    engine: Engine,
    candidates: Candidates,
    now: datetime,
    limits: policy.Limits,
    *,
    announce_tasks: bool = False,
) -> TickResult:
    """Decide and record CANDIDATES found at NOW (see `evaluate`)."""
    tally = _Tally()
    if candidates.ended:
        with engine.begin() as connection:
            tally.recorded += ledger.record_decisions(
                connection, [decision_row(d, rule, now) for rule, d in candidates.ended]
            )
        tally.decisions.extend(d for _rule, d in candidates.ended)
    if candidates.found:
        # Deciding a chunk builds 10^4 small acyclic objects: without the pause the collector
        # scans every live object again and again (half the cost of a first tick, measured).
        with collector_paused(), engine.connect() as connection, large_sqlite_cache(connection):
            for chunk in _by_customer_chunks(candidates.found):
                with connection.begin():
                    ledger.lock_decisions(connection)
                    _decide_and_record(connection, chunk, now, limits, announce_tasks, tally)
    result = tally.result()
    return TickResult(result.decisions, result.recorded, result.tasks, result.displaced, candidates.failed)


def _by_customer_chunks(found: Sequence[Found]) -> Iterator[list[Found]]:
    """FOUND in chunks of at most CHUNK_CUSTOMERS customers, a customer's candidates never split."""
    by_customer: dict[str, list[Found]] = {}
    for candidate in found:
        by_customer.setdefault(candidate.customer_id, []).append(candidate)
    chunk: list[Found] = []
    customers = 0
    for mine in by_customer.values():
        chunk.extend(mine)
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
        records.recipients_by_id(connection, customer_ids),
        ledger.suppressed_channels(connection, customer_ids),
        {
            cid: [past_contact(row) for row in rows]
            for cid, rows in ledger.contacts_of(connection, customer_ids).items()
        },
    )


def _decide(
    connection: Connection,
    found: Sequence[Found],
    now: datetime,
    limits: policy.Limits,
    inputs: _Inputs | None = None,
) -> list[policy.Decision]:
    if not found:
        return []
    if inputs is None:
        inputs = _read(connection, {f.customer_id for f in found})
    policies: dict[tuple[str, int], policy.RulePolicy] = {}
    candidates = []
    for f in found:
        person = inputs.people.get(f.customer_id)
        if person is None:  # deleted between the match and now
            continue
        key = (f.rule.name, f.step)
        if key not in policies:
            policies[key] = rule_policy(f.rule, f.step)
        candidates.append(
            policy.Candidate(
                policies[key],
                f.entity_id,
                recipient(person, inputs.suppressed.get(f.customer_id, set())),
                f.step,
            )
        )
    # Held-back rows are passed too: policy decides them again, keeping their expiry.
    return policy.decide(candidates, inputs.history, limits, now)


def _decide_and_record(
    connection: Connection,
    found: Sequence[Found],
    now: datetime,
    limits: policy.Limits,
    announce_tasks: bool,
    tally: _Tally,
) -> None:
    """Decide FOUND under the lock, displace what higher priorities took the place of, hold the
    messages grouped matches join, record."""
    customers = {f.customer_id for f in found}
    inputs = _read(connection, customers)
    decisions = _decide(connection, found, now, limits, inputs)
    # A displaced contact a dispatcher claimed since it was read cannot give its place, and a
    # message it claimed cannot take more matches: decide that customer again, with the history
    # as it is now (at most a few rounds: claims only happen to contacts that have come due).
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
        new_keys = {d.dedupe_key for d in decisions if d.state == State.PENDING}
        joining = {d.group_key for d in decisions if d.group_key is not None and d.group_key not in new_keys}
        held = ledger.hold_leads(connection, sorted(joining), now)
        lost |= {d.customer_id for d in decisions if d.group_key in joining - held}
        if not lost:
            break
        log.info("decided_again", customers=len(lost))
        again = _read(connection, lost)
        redo = [f for f in found if f.customer_id in lost]
        replaced = {(d.rule, d.entity_id, d.step): d for d in _decide(connection, redo, now, limits, again)}
        decisions = [replaced.get((d.rule, d.entity_id, d.step), d) for d in decisions]
    tally.displaced += len(done)
    by_name = {f.rule.name: f.rule for f in found}
    rows = [decision_row(d, by_name[d.rule], now) for d in decisions if d.state != policy.DUPLICATE]
    tally.recorded += ledger.record_decisions(connection, rows)
    tally.decisions.extend(decisions)
    _open_tasks(connection, decisions, by_name, now, announce_tasks, tally)


def _open_tasks(
    connection: Connection,
    decisions: Sequence[policy.Decision],
    rules: Mapping[str, Rule],
    now: datetime,
    announce: bool,
    tally: _Tally,
) -> None:
    escalated = [d for d in decisions if rules[d.rule].escalate and d.state != policy.DUPLICATE]
    if not escalated:
        return
    people = records.rows_by_id(connection, "customer", {d.customer_id for d in escalated}, CONTACT_FIELDS)
    entities: dict[str, dict[str, records.Record]] = {}
    for about in {rules[d.rule].about for d in escalated} - {"customer"}:
        ids = [d.entity_id for d in escalated if rules[d.rule].about == about]
        entities[about] = records.rows_by_id(connection, about, ids)
    rows = []
    for d in escalated:
        rule = rules[d.rule]
        customer = people.get(d.customer_id, {"id": d.customer_id})
        entity = customer if rule.about == "customer" else entities[rule.about].get(d.entity_id, {})
        rows.append(
            ledger.task_row(
                d.dedupe_key,
                d.rule,
                d.customer_id,
                d.entity_id,
                task_summary(rule, d),
                now,
                detail=task_detail(rule, customer, entity, d),
                announce=announce,
            )
        )
    tally.tasks.extend(ledger.open_tasks(connection, rows))


@lru_cache(maxsize=256)
def _steps_column(names: tuple[str, ...]) -> list[list[str]]:
    """A row's `steps` (their names; the words are in `reason` and re-read by explain). A tick
    writes a few distinct lists, one shared object each, serialised once by `bulk`."""
    return [[name] for name in names]


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
        "steps": _steps_column(decision.step_names),
        "arm": policy.assigned_arm(decision),
        "step": decision.step,
        "group_key": decision.group_key,
    }

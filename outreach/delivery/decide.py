"""Matches → decisions → the ledger: the one place where rules' matches become contacts.

`plan` evaluates rules and asks `outreach.policy` what to do with each match (reading the
ledger, writing nothing); `evaluate` records those decisions. Every function takes `now`: the
clock is read by the caller, once a tick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

from outreach import policy
from outreach.rules.evaluate import find_matches
from outreach.rules.loader import Rule
from outreach.settings import Settings
from outreach.state import ledger, records


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


def recipient(customer: Mapping[str, Any], suppressed: set[str]) -> policy.Recipient:
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


def past_contact(row: Mapping[str, Any]) -> policy.PastContact:
    return policy.PastContact(
        rule=row["rule"],
        dedupe_key=row["dedupe_key"],
        channel=row["channel"],
        state=row["state"],
        decided_at=row["decided_at"],
        send_at=row["send_at"],
        expires_at=row["expires_at"],
    )


def plan(
    connection: Connection,
    rules: Sequence[Rule],
    now: datetime,
    limits: policy.Limits,
    *,
    customer_id: str | None = None,
) -> list[policy.Decision]:
    """What would be decided for every match of RULES at NOW; reads the ledger, writes nothing."""
    matches = [
        (rule, match)
        for rule in rules
        for match in find_matches(connection, rule, now, customer_id=customer_id)
    ]
    if not matches:
        return []
    ids = {match.customer_id for _rule, match in matches}
    people = records.rows_by_id(connection, "customer", ids)
    suppressed = ledger.suppressed_channels(connection, ids)
    # Skipped and suppressed rows are passed too: policy decides them again, keeping their expiry.
    history = {
        cid: [past_contact(row) for row in rows] for cid, rows in ledger.contacts_of(connection, ids).items()
    }
    policies = {rule.name: rule_policy(rule) for rule in rules}
    candidates = [
        policy.Candidate(
            policies[rule.name],
            match.entity_id,
            recipient(people[match.customer_id], suppressed.get(match.customer_id, set())),
        )
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
        "arm": policy.assigned_arm(decision),
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
                task = ledger.open_task(
                    connection, d.dedupe_key, d.rule, d.customer_id, d.entity_id, summary, now
                )
                if task is not None:
                    opened.append(task)
    return TickResult(decisions, recorded, opened)

"""`outreach preview` and `outreach explain`: what would happen, and why, without changing anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from outreach import policy
from outreach.app import App
from outreach.delivery.decide import limits_of, plan
from outreach.errors import RenderError
from outreach.rendering import Renderer, RuleInfo
from outreach.rules.evaluate import condition_holds
from outreach.rules.loader import Rule
from outreach.state import ledger, records


def decision_word(decision: policy.Decision, now: datetime) -> str:
    """The decision as a person reads it: send, deferred, holdout, suppressed, skipped, …"""
    if decision.state == "pending":
        return "send" if decision.send_at is None or decision.send_at <= now else "deferred"
    return decision.state


@dataclass
class PreviewResult:
    rule: str
    now: datetime
    matches: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "now": self.now.isoformat(), "matches": self.matches}


def _render(
    renderer: Renderer, rule: Rule, customer: Any, entity: Any, channel: str, now: datetime
) -> dict[str, Any]:
    try:
        message = renderer.render(
            template=rule.template,
            channel=channel,
            customer=customer,
            about=rule.about,
            entity=None if rule.about == "customer" else entity,
            rule=RuleInfo(rule.name, rule.about, rule.channels, rule.template, rule.description),
            now=now,
        )
    except RenderError as exc:
        return {"error": str(exc)}
    return {
        "locale": message.locale,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "sms": message.sms,
        "segments": message.segments,
        "encoding": message.encoding,
    }


def preview_rule(app: App, name: str, now: datetime, *, render: bool = False) -> PreviewResult:
    """The matches of rule NAME at NOW with the decision each would get; nothing is written."""
    rule = app.load_rules().get(name)
    result = PreviewResult(rule.name, now)
    renderer = Renderer(app.settings) if render else None
    with app.engine.connect() as connection:
        decisions = plan(connection, [rule], now, limits_of(app.settings))
        people = (
            records.rows_by_id(connection, "customer", {d.customer_id for d in decisions}) if render else {}
        )
        for decision in sorted(decisions, key=lambda d: (d.customer_id, d.entity_id)):
            row: dict[str, Any] = {
                "customer_id": decision.customer_id,
                "entity_id": decision.entity_id,
                "channel": decision.channel,
                "decision": decision_word(decision, now),
                "reason": decision.reason,
            }
            if renderer is not None and decision.channel:
                customer = people[decision.customer_id]
                entity = (
                    customer
                    if rule.about == "customer"
                    else records.rows_by_id(connection, rule.about, [decision.entity_id]).get(
                        decision.entity_id
                    )
                )
                row["message"] = _render(renderer, rule, customer, entity, decision.channel, now)
            result.matches.append(row)
    return result


# -- explain ------------------------------------------------------------------------------------
def explain_customer(app: App, customer_id: str, now: datetime) -> dict[str, Any]:
    """For every rule: does its condition hold for this customer's records, what policy would
    decide, and what the ledger already says."""
    from outreach.errors import InputError

    rules = app.load_rules()
    limits = limits_of(app.settings)
    with app.engine.connect() as connection:
        customer = records.rows_by_id(connection, "customer", [customer_id]).get(customer_id)
        if customer is None:
            raise InputError(f'no customer with id "{customer_id}"')
        history = ledger.contacts_of_customer(connection, customer_id)
        report: dict[str, Any] = {"customer_id": customer_id, "now": now.isoformat(), "rules": []}
        for rule in rules:
            entry: dict[str, Any] = {
                "rule": rule.name,
                "about": rule.about,
                "when": " ".join(rule.when.split()),
                "enabled": rule.enabled,
                "records": [],
            }
            entities = records.records_of_customer(connection, rule.about, customer_id)
            decisions = {
                d.entity_id: d for d in plan(connection, [rule], now, limits, customer_id=customer_id)
            }
            for entity in entities:
                holds = condition_holds(rule.condition, {"customer": customer, rule.about: entity}, now)
                record: dict[str, Any] = {
                    "entity_id": entity["id"],
                    "condition": "holds" if holds else "does not hold",
                }
                decision = decisions.get(entity["id"])
                if decision is not None:
                    record["decision"] = decision_word(decision, now)
                    record["reason"] = decision.reason
                    record["steps"] = [{"step": step, "outcome": outcome} for step, outcome in decision.steps]
                ledger_rows = [c for c in history if c.rule == rule.name and c.entity_id == entity["id"]]
                if ledger_rows:
                    row = ledger_rows[-1]
                    record["ledger"] = {
                        "state": row.state,
                        "reason": row.reason,
                        "channel": row.channel,
                        "decided_at": row.decided_at.isoformat(),
                        "outbox_id": row.id,
                    }
                entry["records"].append(record)
            report["rules"].append(entry)
    return report

"""Tasks for a person: opened by rules with `escalate: true`, announced to a webhook if configured.

A task carries what the person needs to act without opening another tool: the rule, the
record's fields (a survey's score and comment, an order's number and carrier) and how to reach
the customer. The webhook is retried with backoff until it answers 2xx; each attempt is recorded.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy.engine import Engine

from outreach import policy
from outreach.rules.loader import Rule
from outreach.settings import Settings
from outreach.state import ledger

log = structlog.get_logger("outreach.escalation")

# What a person needs to reach the customer; the rest of the customer row stays in the database.
CONTACT_FIELDS = ("name", "email", "phone", "preferred_channel", "locale", "timezone")


def task_summary(rule: Rule, decision: policy.Decision) -> str:
    """One line for a person: who to reach and why."""
    record = "" if rule.about == "customer" else f" ({rule.about} {decision.entity_id})"
    why = f" — {rule.description}" if rule.description else ""
    return f"{rule.name}: reach out to customer {decision.customer_id} in person{record}{why}"


def task_detail(
    rule: Rule, customer: Mapping[str, Any], entity: Mapping[str, Any], decision: policy.Decision
) -> dict[str, Any]:
    """The task's content: the rule, the record's fields, how to reach the customer, and what
    outreach itself decided about messaging them (JSON-ready)."""
    return {
        "about": rule.about,
        "description": rule.description,
        "record": _json_ready(dict(entity)) if rule.about != "customer" else {},
        "customer": {"id": customer.get("id"), **{k: customer.get(k) for k in CONTACT_FIELDS}},
        "message": {"decision": decision.state, "channel": decision.channel, "reason": decision.reason},
    }


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def task_payload(task: ledger.Task) -> dict[str, Any]:
    """What the webhook receives for one task."""
    return {
        "id": task.id,
        "rule": task.rule,
        "customer_id": task.customer_id,
        "entity_id": task.entity_id,
        "summary": task.summary,
        "created_at": task.created_at.isoformat(),
        "status": task.status,
        **task.detail,
    }


def post_due_tasks(
    engine: Engine, settings: Settings, now: datetime, rng: random.Random | None = None
) -> int:
    """POST every task whose webhook is due to settings `escalation.webhook_url`; a task that is
    not answered 2xx is tried again with backoff (30 s doubling, at most an hour apart), for as
    long as it takes. Returns how many were answered."""
    url = settings.escalation.webhook_url
    if not url:
        return 0
    rng = rng or random.Random()
    with engine.connect() as connection:
        due = ledger.due_task_webhooks(connection, now)
    if not due:
        return 0
    answered = 0
    with httpx.Client(timeout=settings.escalation.timeout) as client:
        for task in due:
            attempts = task.webhook_attempts + 1
            try:
                response = client.post(url, json=task_payload(task))
                status, ok = f"http {response.status_code}", response.is_success
            except httpx.HTTPError as exc:
                status, ok = f"error: {type(exc).__name__}", False
            next_at = None if ok else now + timedelta(seconds=policy.backoff_seconds(attempts, rng, 1.0))
            answered += ok
            log.info(
                "task_webhook",
                task_id=task.id,
                rule=task.rule,
                status=status,
                attempts=attempts,
                retry_at=next_at.isoformat() if next_at else None,
            )
            with engine.begin() as connection:
                ledger.record_task_webhook(connection, task.id, status, attempts, next_at)
    return answered

"""Tasks for a person: opened by rules with `escalate: true`, announced to a webhook if configured."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import structlog

from outreach.app import App
from outreach.state import ledger

log = structlog.get_logger("outreach.escalation")


def post_new_tasks(app: App, task_ids: Sequence[str]) -> None:
    """POST each new task to settings `escalation.webhook_url` (if set) and record the outcome."""
    url = app.settings.escalation.webhook_url
    if not url or not task_ids:
        return
    with app.engine.connect() as connection:
        found = ledger.list_tasks(connection, status=None, ids=task_ids)
    with httpx.Client(timeout=app.settings.escalation.timeout) as client:
        for task in found:
            payload = {
                "id": task.id,
                "rule": task.rule,
                "customer_id": task.customer_id,
                "entity_id": task.entity_id,
                "summary": task.summary,
                "created_at": task.created_at.isoformat(),
            }
            try:
                response = client.post(url, json=payload)
                status = f"http {response.status_code}"
            except httpx.HTTPError as exc:
                status = f"error: {type(exc).__name__}"
            log.info("task_webhook", task_id=task.id, rule=task.rule, status=status)
            with app.engine.begin() as connection:
                ledger.set_task_webhook_status(connection, task.id, status)

"""Operator commands on a running system: pause, resume, silence, tasks, report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from outreach.app import App
from outreach.delivery.dispatch import reroute_withdrawn
from outreach.durations import parse_duration
from outreach.errors import InputError, RulesError, did_you_mean
from outreach.rules.loader import RuleSet
from outreach.state import ledger


def pause(app: App, reason: str, now: datetime) -> None:
    with app.engine.begin() as connection:
        ledger.set_control(connection, ledger.PAUSE, None, reason or "paused by an operator", now)


def resume(app: App) -> bool:
    with app.engine.begin() as connection:
        return ledger.clear_control(connection, ledger.PAUSE)


def silence(app: App, rule: str, duration: str, reason: str, now: datetime) -> datetime:
    """Hold RULE's contacts until now + DURATION; InputError for an unknown rule or duration."""
    app.load_rules().get(rule)
    try:
        until = now + parse_duration(duration)
    except ValueError as exc:
        raise InputError(f"--for: {exc}") from None
    with app.engine.begin() as connection:
        ledger.set_control(connection, ledger.silence_key(rule), until, reason, now)
    return until


def apply_consent_changes(app: App, now: datetime) -> int:
    """After customers were loaded: contacts waiting on a channel that lost consent move to the
    rule's next consented channel, or are held back. How many changed."""
    rules: RuleSet | None
    try:
        rules = app.load_rules()
    except RulesError:
        rules = None  # rerouted without the rules: held back, decided again once the rules load
    with app.engine.begin() as connection:
        return reroute_withdrawn(connection, rules, now)


def list_tasks(app: App, status: str = "open") -> list[ledger.Task]:
    """Tasks with STATUS (`open`, `closed`, or `all`), oldest first."""
    with app.engine.connect() as connection:
        return ledger.list_tasks(connection, status=None if status == "all" else status)


def close_task(app: App, task_id: str, note: str, now: datetime) -> ledger.Task:
    """Close a task with a note; InputError naming the open tasks if there is no such task."""
    with app.engine.begin() as connection:
        task = ledger.close_task(connection, task_id, note, now)
        if task is None:
            open_ids = [t.id for t in ledger.list_tasks(connection, status="open")]
            raise InputError(
                f"no task {task_id!r}{did_you_mean(task_id, open_ids)}; `outreach tasks` lists the open ones"
            )
    return task


def report_since(app: App, since: str, now: datetime) -> dict[str, Any]:
    try:
        start = now - parse_duration(since)
    except ValueError as exc:
        raise InputError(f"--since: {exc}") from None
    with app.engine.connect() as connection:
        rows = ledger.contact_counts(connection, start)
        goals = ledger.goal_counts(connection, start)
        controls = ledger.active_controls(connection, now)
    return {
        "since": start.isoformat(),
        "now": now.isoformat(),
        "paused": ledger.PAUSE in controls,
        "silenced": {
            key.split(":", 1)[1]: {"until": c.until.isoformat() if c.until else None, "reason": c.reason}
            for key, c in controls.items()
            if key.startswith("silence:")
        },
        "contacts": [{"rule": r, "state": s, "channel": c, "count": n} for r, s, c, n in rows],
        "goals": _goal_summary(goals),
    }


def _goal_summary(rows: list[tuple[str, str, int, int]]) -> list[dict[str, Any]]:
    """Per rule: how many contacted and held-out customers met the goal, and the difference."""
    by_rule: dict[str, dict[str, Any]] = {}
    for rule, state, total, met in rows:
        group = "contacted" if state == "sent" else "holdout"
        entry = by_rule.setdefault(rule, {"rule": rule})
        entry[group] = {"count": total, "goal_met": met, "rate": round(met / total, 4) if total else None}
    for entry in by_rule.values():
        contacted, holdout = entry.get("contacted"), entry.get("holdout")
        if contacted and holdout and contacted["rate"] is not None and holdout["rate"] is not None:
            entry["uplift"] = round(contacted["rate"] - holdout["rate"], 4)
    return list(by_rule.values())

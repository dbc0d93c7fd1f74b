"""Operator commands on a running system: pause, resume, silence, tasks, report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from outreach.app import App
from outreach.durations import parse_duration
from outreach.errors import InputError
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


def list_tasks(app: App, show_all: bool) -> list[ledger.Task]:
    """Open tasks (all of them with SHOW_ALL), oldest first."""
    with app.engine.connect() as connection:
        return ledger.list_tasks(connection, status=None if show_all else "open")


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

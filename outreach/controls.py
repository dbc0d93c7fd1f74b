"""Operator commands on a running system: pause, resume, silence, tasks, report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from outreach.app import App
from outreach.channels.codes import DELIVERED_STATUSES
from outreach.delivery.dispatch import reroute_withdrawn
from outreach.durations import parse_duration
from outreach.errors import InputError, RulesError, did_you_mean
from outreach.rules.loader import RuleSet
from outreach.state import ledger
from outreach.uplift import MIN_GROUP, Group, Uplift, compare
from outreach.vocabulary import Arm


def pause(app: App, reason: str, now: datetime) -> None:
    with app.engine.begin() as connection:
        ledger.set_control(connection, ledger.PAUSE, None, reason or "paused by an operator", now)


def resume(app: App) -> bool:
    with app.engine.begin() as connection:
        return ledger.clear_control(connection, ledger.PAUSE)


def silence(app: App, rule: str, duration: timedelta | str, reason: str, now: datetime) -> datetime:
    """Hold RULE's contacts until now + DURATION; InputError for an unknown rule or duration."""
    app.load_rules().get(rule)
    if isinstance(duration, str):
        try:
            duration = parse_duration(duration)
        except ValueError as exc:
            raise InputError(f"--for: {exc}") from None
    until = now + duration
    with app.engine.begin() as connection:
        ledger.set_control(connection, ledger.silence_key(rule), until, reason, now)
    return until


def silences(app: App, now: datetime) -> tuple[SilenceInfo, ...]:
    """The silences in force at NOW, by rule name."""
    with app.engine.connect() as connection:
        return _silences(ledger.active_controls(connection, now))


def pause_reason(app: App, now: datetime) -> str | None:
    """Why sending is paused at NOW; None when it is not."""
    with app.engine.connect() as connection:
        pause = ledger.active_controls(connection, now).get(ledger.PAUSE)
    return None if pause is None else (pause.reason or "paused")


def unsilence(app: App, rule: str, now: datetime) -> bool:
    """Lift RULE's silence; False if it had none. InputError when RULE is neither a silenced rule
    nor a rule of the rules files (a silence outlives its rule, so it can be lifted after)."""
    with app.engine.begin() as connection:
        silenced = [s.rule for s in _silences(ledger.active_controls(connection, now))]
        if ledger.clear_control(connection, ledger.silence_key(rule)):
            return True
    rules, _problems = app.check_rules()
    if rule not in rules.names():
        known = silenced + rules.names()
        raise InputError(f"no rule or silence named {rule!r}{did_you_mean(rule, known)}")
    return False


def _silences(controls: dict[str, ledger.Control]) -> tuple[SilenceInfo, ...]:
    return tuple(
        SilenceInfo(key.removeprefix(ledger.SILENCE), c.until, c.reason, c.created_at)
        for key, c in sorted(controls.items())
        if key.startswith(ledger.SILENCE)
    )


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


@dataclass(frozen=True)
class ContactCount:
    """How many of a rule's contacts decided in the period are in one state, on one channel."""

    rule: str
    state: str
    channel: str | None
    count: int

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "state": self.state, "channel": self.channel, "count": self.count}


@dataclass(frozen=True)
class GoalComparison:
    """A rule's goal rate among the matches assigned to its message against its holdout's."""

    rule: str
    uplift: Uplift

    @property
    def warning(self) -> str | None:
        """Why the numbers cannot tell yet, in words; None when both groups are large enough."""
        if self.uplift.enough:
            return None
        sizes = f"{self.uplift.contacted.count} contacted, {self.uplift.holdout.count} held out"
        if self.uplift.holdout.count == 0:
            return f"no holdout ({sizes}): nothing to compare with; give the rule a `holdout`"
        return f"too few to tell ({sizes}; at least {MIN_GROUP} in each group are needed)"

    def as_json(self) -> dict[str, Any]:
        u = self.uplift
        return {
            "rule": self.rule,
            "contacted": u.contacted.as_json(),
            "holdout": u.holdout.as_json(),
            "uplift": None if u.difference is None else round(u.difference, 4),
            "ci95": None if u.ci95 is None else [round(u.ci95[0], 4), round(u.ci95[1], 4)],
            "p_value": None if u.p_value is None else round(u.p_value, 4),
            "enough": u.enough,
        }


@dataclass(frozen=True)
class FunnelRow:
    """One rule's matches in the period, step by step: matched → decided → sent → delivered → goal."""

    rule: str
    matched: int
    decided: int
    held_out: int
    sent: int
    delivered: int
    goal_met: int | None  # None for a rule without a goal

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "matched": self.matched,
            "decided": self.decided,
            "held_out": self.held_out,
            "sent": self.sent,
            "delivered": self.delivered,
            "goal_met": self.goal_met,
        }


@dataclass(frozen=True)
class SilenceInfo:
    """A rule's silence in force: why, since when and until when (None: until lifted)."""

    rule: str
    until: datetime | None
    reason: str
    since: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "reason": self.reason,
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
        }


@dataclass(frozen=True)
class Report:
    """`outreach report`: contacts, the funnel and the goals of every rule over a period."""

    since: datetime
    now: datetime
    pause_reason: str | None  # None: not paused
    silences: tuple[SilenceInfo, ...]
    contacts: tuple[ContactCount, ...]
    funnel: tuple[FunnelRow, ...]
    goals: tuple[GoalComparison, ...]
    steps: tuple[ledger.StepCount, ...] = ()  # per step of the rules with follow-ups

    @property
    def paused(self) -> bool:
        return self.pause_reason is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "now": self.now.isoformat(),
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "silenced": {
                s.rule: {"until": s.until.isoformat() if s.until else None, "reason": s.reason}
                for s in self.silences
            },
            "contacts": [c.as_json() for c in self.contacts],
            "funnel": [f.as_json() for f in self.funnel],
            "goals": [g.as_json() for g in self.goals],
            "steps": [
                {"rule": s.rule, "step": s.step, "sent": s.sent, "goal_met_after": s.goal_met_after}
                for s in self.steps
            ],
        }


def report_since(app: App, since: timedelta | str, now: datetime) -> Report:
    """What happened since NOW - SINCE (a duration such as 7d); InputError for a bad duration.

    Goals are compared for every rule with a `goal`, by intention to treat: the contacted group
    is every match assigned to the message, whatever then became of it, the other group the
    holdout (outreach.vocabulary.Arm).
    """
    if isinstance(since, str):
        try:
            since = parse_duration(since)
        except ValueError as exc:
            raise InputError(f"--since: {exc}") from None
    start = now - since
    rules, _problems = app.check_rules()  # a broken rules file must not hide what was sent
    with app.engine.connect() as connection:
        rows = ledger.contact_counts(connection, start)
        arms = {(c.rule, c.arm): c for c in ledger.goal_counts(connection, start)}
        funnel = ledger.funnel_counts(connection, start, sorted(DELIVERED_STATUSES))
        steps = ledger.step_counts(connection, start, [rule.name for rule in rules if rule.steps])
        controls = ledger.active_controls(connection, now)
    with_goal = [rule.name for rule in rules if rule.goal_condition is not None]

    def group(rule: str, arm: Arm) -> Group:
        found = arms.get((rule, arm))
        return Group(found.count, found.goal_met) if found else Group(0, 0)

    pause = controls.get(ledger.PAUSE)
    return Report(
        since=start,
        now=now,
        pause_reason=None if pause is None else (pause.reason or "paused"),
        silences=_silences(controls),
        contacts=tuple(ContactCount(r, s, c, n) for r, s, c, n in rows),
        funnel=tuple(
            FunnelRow(
                f.rule,
                f.matched,
                f.decided,
                f.held_out,
                f.sent,
                f.delivered,
                f.goal_met if f.rule in with_goal else None,
            )
            for f in funnel
        ),
        goals=tuple(
            GoalComparison(name, compare(group(name, Arm.MESSAGE), group(name, Arm.HOLDOUT)))
            for name in with_goal
        ),
        steps=tuple(steps),
    )

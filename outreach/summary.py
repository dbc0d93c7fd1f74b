"""What a tick did, for people: every contact it decided or sent with what became of it, and the
count of each outcome per rule — what `outreach run --once` and `outreach demo` print.

Outcomes, as an operator reads them:

    sent          the provider (or the outbox) accepted it in this tick
    send          due, and not sent in this tick (a dispatcher was not run)
    deferred      waiting for the end of quiet hours, or for the rule's `delay`
    held          waiting for `outreach resume` or the end of the rule's silence
    skipped       held back by a policy step, named after a colon: `skipped: cap`, `skipped: cooldown`
    suppressed    no channel with an address, consent and no suppression
    holdout       the rule's control group: recorded, never sent
    to retry      a provider's transient error: tried again later
    cancelled, expired, failed, unknown   as in the ledger (outreach.vocabulary)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from outreach import policy
from outreach.app import App
from outreach.controls import SilenceInfo, pause_reason, silences
from outreach.tick import TickReport
from outreach.vocabulary import State

DUPLICATE = "duplicate"  # policy's word for a match decided at an earlier tick


@dataclass(frozen=True)
class ContactOutcome:
    """One contact of the tick: its rule, customer, record, channel, outcome and why."""

    rule: str
    customer_id: str
    entity_id: str
    channel: str | None
    outcome: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "customer_id": self.customer_id,
            "entity_id": self.entity_id,
            "channel": self.channel,
            "outcome": self.outcome,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class OutcomeCount:
    rule: str
    outcome: str
    count: int

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "outcome": self.outcome, "count": self.count}


@dataclass(frozen=True)
class RunSummary:
    """A tick told for people: outcome counts per rule, each contact, what was sent, what holds."""

    now: datetime
    contacts: tuple[ContactOutcome, ...]  # sorted by rule, customer, record
    counts: tuple[OutcomeCount, ...]  # per rule, most frequent outcome first
    matches: int  # matches found, decided in this tick or before
    decided_before: int  # matches decided at an earlier tick, nothing new for them now
    sent: int  # messages sent in this tick, contacts decided earlier too
    dispatch: Mapping[str, int] | None  # the dispatcher's counts; None when nothing was dispatched
    pause_reason: str | None
    silences: tuple[SilenceInfo, ...]
    tasks: int
    failed_rules: Mapping[str, str]  # rule → why its query failed

    def as_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "paused": self.pause_reason is not None,
            "pause_reason": self.pause_reason,
            "silenced": {s.rule: {"until": _iso(s.until), "reason": s.reason} for s in self.silences},
            "matches": self.matches,
            "decided_before": self.decided_before,
            "sent": self.sent,
            "counts": [c.as_json() for c in self.counts],
            "contacts": [c.as_json() for c in self.contacts],
            "dispatch": None if self.dispatch is None else dict(self.dispatch),
            "tasks": self.tasks,
            "failed_rules": dict(self.failed_rules),
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _decided_word(decision: policy.Decision, now: datetime, controls: policy.Controls) -> tuple[str, str]:
    """What a decision of this tick that no dispatcher touched amounts to, and why."""
    if decision.state == State.PENDING:
        if decision.send_at is not None and decision.send_at > now:
            return "deferred", decision.reason
        held = controls.holding(decision.rule)
        if held is not None:
            return "held", f"{decision.reason}; {held}"
        return "send", decision.reason
    if decision.state == State.SKIPPED and decision.steps:
        return f"skipped: {decision.steps[-1][0]}", decision.reason
    return str(decision.state), decision.reason


def _sent_word(state: str, reason: str, held: str | None) -> str:
    """The outcome of a contact the dispatcher handled in this tick. One left pending was held
    (the gate's reason is the pause's or the silence's), deferred to the end of quiet hours, or
    is to be retried after a provider's transient error."""
    if state == State.PENDING:
        if held is not None and reason == held:
            return "held"
        return "deferred" if reason.startswith("quiet hours") else "to retry"
    return str(state)


def summary_of(app: App, report: TickReport) -> RunSummary:
    """REPORT told for people, with the pause and the silences in force at its instant."""
    return summarise(report, pause_reason(app, report.now), silences(app, report.now))


def summarise(
    report: TickReport, paused: str | None = None, silenced: tuple[SilenceInfo, ...] = ()
) -> RunSummary:
    """REPORT told for people. PAUSED (the pause's reason) and SILENCED are the controls in force
    at the tick's instant: a dispatcher leaves the contacts they hold alone, so they read as held."""
    controls = policy.Controls(paused=paused, silenced={s.rule: s.reason for s in silenced})
    outcomes = report.dispatch.outcomes if report.dispatch is not None else {}
    contacts: list[ContactOutcome] = []
    decided_before = 0
    for decision in report.decided.decisions:
        dispatched = outcomes.get(decision.dedupe_key)
        if decision.state == DUPLICATE and dispatched is None:
            decided_before += 1
            continue
        if dispatched is not None:
            state, why = dispatched
            word = _sent_word(state, why, controls.holding(decision.rule))
            reason = why if decision.state == DUPLICATE else f"{decision.reason}; {why}"
        else:
            word, reason = _decided_word(decision, report.now, controls)
        contacts.append(
            ContactOutcome(
                decision.rule, decision.customer_id, decision.entity_id, decision.channel, word, reason
            )
        )
    contacts.sort(key=lambda c: (c.rule, c.customer_id, c.entity_id))
    tally = Counter((c.rule, c.outcome) for c in contacts)
    counts = sorted(
        (OutcomeCount(rule, outcome, n) for (rule, outcome), n in tally.items()),
        key=lambda c: (c.rule, -c.count, c.outcome),
    )
    d = report.dispatch
    dispatch = (
        None
        if d is None
        else {
            "sent": d.sent,
            "deferred": d.deferred,
            "held": d.held,
            "rerouted": d.rerouted,
            "cancelled": d.cancelled,
            "expired": d.expired,
            "suppressed": d.suppressed,
            "failed": d.failed,
            "retried": d.retried,
            "unknown": d.unknown,
        }
    )
    return RunSummary(
        now=report.now,
        contacts=tuple(contacts),
        counts=tuple(counts),
        matches=len(report.decided.decisions),
        decided_before=decided_before,
        sent=0 if d is None else d.sent,
        dispatch=dispatch,
        pause_reason=paused,
        silences=silenced,
        tasks=len(report.decided.tasks),
        failed_rules=dict(report.decided.failed),
    )

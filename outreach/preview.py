"""`outreach preview` and `outreach explain`: what would happen, and why, without changing anything.

Both return frozen values with an `as_json()` giving the documented JSON; outreach.cli.render
shows them as tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from outreach import policy
from outreach.app import App
from outreach.delivery.decide import limits_of, plan
from outreach.errors import InputError, RenderError
from outreach.rendering import Renderer, RuleInfo
from outreach.rules.clauses import FailingClause, evaluate, failing_clauses
from outreach.rules.loader import Rule
from outreach.state import ledger, records


def decision_word(decision: policy.Decision, now: datetime) -> str:
    """The decision as a person reads it: send, deferred, holdout, suppressed, skipped, …"""
    if decision.state == "pending":
        return "send" if decision.send_at is None or decision.send_at <= now else "deferred"
    return decision.state


@dataclass(frozen=True)
class RenderedPreview:
    """A message as it would be rendered, or why it cannot be."""

    locale: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    sms: str | None = None
    segments: int | None = None
    encoding: str | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {"error": self.error}
        return {
            "locale": self.locale,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "sms": self.sms,
            "segments": self.segments,
            "encoding": self.encoding,
        }


@dataclass(frozen=True)
class PreviewMatch:
    """One match of the previewed rule and the decision it would get."""

    customer_id: str
    entity_id: str
    channel: str | None
    decision: str
    reason: str
    message: RenderedPreview | None = None  # with --render, for a match that has a channel

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "customer_id": self.customer_id,
            "entity_id": self.entity_id,
            "channel": self.channel,
            "decision": self.decision,
            "reason": self.reason,
        }
        if self.message is not None:
            document["message"] = self.message.as_json()
        return document


@dataclass(frozen=True)
class PreviewResult:
    rule: str
    now: datetime
    matches: tuple[PreviewMatch, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "now": self.now.isoformat(),
            "matches": [m.as_json() for m in self.matches],
        }


def _render(
    renderer: Renderer, rule: Rule, customer: Any, entity: Any, channel: str, now: datetime
) -> RenderedPreview:
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
        return RenderedPreview(error=str(exc))
    return RenderedPreview(
        locale=message.locale,
        subject=message.subject,
        text=message.text,
        html=message.html,
        sms=message.sms,
        segments=message.segments,
        encoding=message.encoding,
    )


@dataclass(frozen=True)
class TickMatch:
    """One match of a whole tick's preview: its rule and the decision it would get."""

    rule: str
    match: PreviewMatch

    def as_json(self) -> dict[str, Any]:
        return {"rule": self.rule, **self.match.as_json()}


@dataclass(frozen=True)
class TickPreview:
    """`preview --all`: every enabled rule at NOW, decided together as `run --once --now` would."""

    now: datetime
    matches: tuple[TickMatch, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "matches": [m.as_json() for m in self.matches]}


def preview_rule(app: App, name: str, now: datetime, *, render: bool = False) -> PreviewResult:
    """The matches of rule NAME at NOW with the decision each would get; nothing is written."""
    rule = app.load_rules().get(name)
    found = _preview(app, [rule], now, render=render)
    return PreviewResult(rule.name, now, tuple(match for _rule, match in found))


def preview_tick(
    app: App, now: datetime, *, render: bool = False, progress: Callable[[int, int], None] | None = None
) -> TickPreview:
    """The whole tick at NOW: every enabled rule's matches decided together — caps, priorities
    and inhibitions between rules — exactly as `run --once --now NOW` would decide them; nothing
    is written. PROGRESS is told (done, total) as the deciding goes on."""
    enabled = [rule for rule in app.load_rules() if rule.enabled]
    found = _preview(app, enabled, now, render=render, progress=progress)
    return TickPreview(now, tuple(TickMatch(rule, match) for rule, match in found))


def _preview(
    app: App,
    rules: Sequence[Rule],
    now: datetime,
    *,
    render: bool,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[str, PreviewMatch]]:
    """(rule name, match) for every match of RULES at NOW, by rule, customer and record."""
    by_name = {rule.name: rule for rule in rules}
    renderer = Renderer(app.settings) if render else None
    found: list[tuple[str, PreviewMatch]] = []
    with app.engine.connect() as connection:
        decisions = plan(connection, rules, now, limits_of(app.settings), progress=progress)
        # With RENDER, the customers and records rendered, read once per kind of record.
        wanted: dict[str, set[str]] = {}
        if render:
            for d in decisions:
                wanted.setdefault("customer", set()).add(d.customer_id)
                wanted.setdefault(by_name[d.rule].about, set()).add(d.entity_id)
        read = {about: records.rows_by_id(connection, about, ids) for about, ids in wanted.items()}
        for decision in sorted(decisions, key=lambda d: (d.rule, d.customer_id, d.entity_id)):
            rule = by_name[decision.rule]
            message = None
            if renderer is not None and decision.channel:
                customer = read["customer"][decision.customer_id]
                entity = read[rule.about].get(decision.entity_id)
                message = _render(renderer, rule, customer, entity, decision.channel, now)
            match = PreviewMatch(
                decision.customer_id,
                decision.entity_id,
                decision.channel,
                decision_word(decision, now),
                decision.reason,
                message,
            )
            found.append((rule.name, match))
    return found


# -- explain ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """A control in force that holds messages back: the pause, or a rule's silence."""

    what: str  # "pause" or "silence"
    until: datetime | None
    reason: str

    def describe(self) -> str:
        if self.what == "pause":
            return f"paused ({self.reason}): nothing is sent until `outreach resume`"
        until = self.until.isoformat() if self.until else "further notice"
        return f"silenced until {until} ({self.reason})"

    def as_json(self) -> dict[str, Any]:
        return {"until": self.until.isoformat() if self.until else None, "reason": self.reason}


@dataclass(frozen=True)
class TickDecision:
    """One decision the tick at the explained instant would take for the customer."""

    rule: str
    entity_id: str
    channel: str | None
    decision: str
    reason: str
    step: int = 1  # of the rule's journey
    of: int = 1  # the journey's length: 1 for a rule without follow-up steps

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "entity_id": self.entity_id,
            "step": self.step,
            "of": self.of,
            "channel": self.channel,
            "decision": self.decision,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger already says about one match."""

    state: str
    reason: str
    channel: str | None
    decided_at: datetime
    outbox_id: str
    step: int = 1  # of the rule's journey: the row of its latest step

    def as_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "state": self.state,
            "reason": self.reason,
            "channel": self.channel,
            "decided_at": self.decided_at.isoformat(),
            "outbox_id": self.outbox_id,
        }


@dataclass(frozen=True)
class RecordExplanation:
    """One record of a rule's `about` kind: does the condition hold, and what would happen."""

    entity_id: str
    holds: bool
    failing: tuple[FailingClause, ...]  # the smallest false or unknown clauses when it does not hold
    decision: str | None  # as `preview` says it; None when the rule does not match
    reason: str | None
    step: int  # of the journey the decision (or, without one, the latest ledger row) is about
    of: int  # the journey's length: 1 for a rule without follow-up steps
    steps: tuple[tuple[str, str], ...]
    held: Held | None  # a contact that would wait for the pause or the rule's silence
    competing: tuple[TickDecision, ...]  # the other rules' decisions for the customer in the same tick
    ledger: LedgerEntry | None

    def as_json(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "condition": "holds" if self.holds else "does not hold",
            "failing": [clause.as_json() for clause in self.failing],
            "step": self.step,
            "of": self.of,
            "decision": self.decision,
            "reason": self.reason,
            "steps": [{"step": step, "outcome": outcome} for step, outcome in self.steps],
            "held": None if self.held is None else self.held.describe(),
            "competing": [c.as_json() for c in self.competing],
            "ledger": None if self.ledger is None else self.ledger.as_json(),
        }


@dataclass(frozen=True)
class RuleExplanation:
    rule: str
    about: str
    when: str
    enabled: bool
    silenced: Held | None
    records: tuple[RecordExplanation, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "about": self.about,
            "when": self.when,
            "enabled": self.enabled,
            "silenced": None if self.silenced is None else self.silenced.as_json(),
            "records": [r.as_json() for r in self.records],
        }


@dataclass(frozen=True)
class CustomerExplanation:
    """`outreach explain`: for every rule, why the customer would or would not be contacted."""

    customer_id: str
    now: datetime
    paused: Held | None
    tick: tuple[TickDecision, ...]  # every decision the tick at NOW would take for the customer
    rules: tuple[RuleExplanation, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "now": self.now.isoformat(),
            "paused": self.paused is not None,
            "pause_reason": None if self.paused is None else self.paused.reason,
            "tick": [d.as_json() for d in self.tick],
            "rules": [r.as_json() for r in self.rules],
        }


def _held_by(controls: Mapping[str, ledger.Control]) -> tuple[Held | None, dict[str, Held]]:
    pause = controls.get(ledger.PAUSE)
    paused = None if pause is None else Held("pause", pause.until, pause.reason or "paused")
    silenced = {
        key.split(":", 1)[1]: Held("silence", c.until, c.reason)
        for key, c in controls.items()
        if key.startswith("silence:")
    }
    return paused, silenced


def _tick_decision(decision: policy.Decision, now: datetime, journey_length: int) -> TickDecision:
    return TickDecision(
        decision.rule,
        decision.entity_id,
        decision.channel,
        decision_word(decision, now),
        decision.reason,
        decision.step,
        journey_length,
    )


def explain_customer(app: App, customer_id: str, now: datetime) -> CustomerExplanation:
    """For every rule: does its condition hold for this customer's records (and if not, which
    clauses fail), what the tick at NOW would decide with every enabled rule competing for the
    customer's caps, what holds it back (pause, silences), and what the ledger already says."""
    rules = app.load_rules()
    limits = limits_of(app.settings)
    enabled = [rule for rule in rules if rule.enabled]
    with app.engine.connect() as connection:
        customer = records.rows_by_id(connection, "customer", [customer_id]).get(customer_id)
        if customer is None:
            raise InputError(f'no customer with id "{customer_id}"')
        history = ledger.contacts_of_customer(connection, customer_id)
        paused, silenced = _held_by(ledger.active_controls(connection, now))
        # All enabled rules planned together, as a tick would: caps and priorities between them.
        together = plan(connection, enabled, now, limits, customer_id=customer_id)
        decided: dict[tuple[str, str], policy.Decision] = {(d.rule, d.entity_id): d for d in together}
        for rule in rules:
            if not rule.enabled:  # what it would decide were it enabled, on its own
                for d in plan(connection, [rule], now, limits, customer_id=customer_id):
                    decided[(d.rule, d.entity_id)] = d
        length = {rule.name: rule.journey_length for rule in rules}
        tick = tuple(_tick_decision(d, now, length[d.rule]) for d in together if d.state != "duplicate")
        explained = tuple(
            _explain_rule(
                rule,
                customer,
                records.records_of_customer(connection, rule.about, customer_id),
                decided,
                history,
                tick,
                paused,
                silenced.get(rule.name),
                now,
            )
            for rule in rules
        )
    return CustomerExplanation(customer_id, now, paused, tick, explained)


def _explain_rule(
    rule: Rule,
    customer: Mapping[str, Any],
    entities: Sequence[Mapping[str, Any]],
    decided: Mapping[tuple[str, str], policy.Decision],
    history: Sequence[ledger.ContactView],
    tick: Sequence[TickDecision],
    paused: Held | None,
    silenced: Held | None,
    now: datetime,
) -> RuleExplanation:
    explained: list[RecordExplanation] = []
    competing = tuple(d for d in tick if d.rule != rule.name)
    for entity in entities:
        given = {"customer": customer, rule.about: entity}
        holds = evaluate(rule.condition, given, now) is True
        decision = decided.get((rule.name, entity["id"]))
        word = None if decision is None else decision_word(decision, now)
        rows = [c for c in history if c.rule == rule.name and c.entity_id == entity["id"]]
        row = max(rows, key=lambda c: c.step) if rows else None
        waiting = word in ("send", "deferred") or (row is not None and row.state == "pending")
        explained.append(
            RecordExplanation(
                entity_id=entity["id"],
                holds=holds,
                failing=() if holds else tuple(failing_clauses(rule.condition, given, now)),
                decision=word,
                reason=None if decision is None else decision.reason,
                step=decision.step if decision is not None else row.step if row is not None else 1,
                of=rule.journey_length,
                steps=() if decision is None else decision.steps,
                held=(paused or silenced) if waiting else None,
                competing=competing if decision is not None and rule.enabled else (),
                ledger=None
                if row is None
                else LedgerEntry(row.state, row.reason, row.channel, row.decided_at, row.id, row.step),
            )
        )
    return RuleExplanation(
        rule.name, rule.about, " ".join(rule.when.split()), rule.enabled, silenced, tuple(explained)
    )

"""One tick: evaluate the rules at one instant → decide → open tasks → measure goals → dispatch.

The sequence exists here only: `outreach run --once`, the daemon's rule jobs, the demo, the
Python API, the tests and the benchmarks all run a tick through `run_tick`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from outreach.app import App
from outreach.channels import make_channels
from outreach.clock import utcnow
from outreach.delivery.decide import TickResult, evaluate, limits_of
from outreach.delivery.dispatch import Dispatcher, DispatchStats
from outreach.delivery.goals import measure_goals
from outreach.delivery.tasks import post_due_tasks
from outreach.rendering import Renderer
from outreach.rules.loader import Rule, RuleSet


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class TickReport:
    """What one tick did: its instant, the decisions it recorded, goals met and what it sent."""

    now: datetime
    decided: TickResult
    goals_met: int
    dispatch: DispatchStats | None


def make_dispatcher(
    app: App, rules: Callable[[], RuleSet], renderer: Callable[[], Renderer], **options: Any
) -> Dispatcher:
    """The Dispatcher the settings describe. RULES and RENDERER are asked at every send, so a
    daemon's reload takes effect; OPTIONS are Dispatcher's own (observe, stopping, …)."""
    return Dispatcher(
        app.engine,
        rules=rules,
        renderer=renderer,
        channels=make_channels(app.settings),
        worker=worker_name(),
        limits=limits_of(app.settings),
        lease=timedelta(seconds=app.settings.daemon.lease_seconds),
        concurrency=app.settings.delivery.concurrency,
        at_least_once=app.settings.delivery.at_least_once,
        **options,
    )


def run_tick(
    app: App,
    rules: Sequence[Rule],
    now: datetime,
    *,
    dispatcher: Dispatcher | None = None,
    clock: Callable[[], datetime] | None = None,
) -> TickReport:
    """Evaluate RULES at NOW and record the decisions, open and announce tasks, measure goals,
    then (with a DISPATCHER) send what is due; CLOCK times the sends (default: NOW, frozen)."""
    decided = evaluate(
        app.engine,
        rules,
        now,
        limits_of(app.settings),
        announce_tasks=bool(app.settings.escalation.webhook_url),
    )
    post_due_tasks(app.engine, app.settings, now)
    goals_met = measure_goals(app.engine, rules, now)
    stats = dispatcher.dispatch_once(now, clock=clock or (lambda: now)) if dispatcher is not None else None
    return TickReport(now, decided, goals_met, stats)


def run_once(app: App, now: datetime | None = None) -> TickReport:
    """`outreach run --once`: every enabled rule at NOW (default: the current time), then dispatch."""
    rule_set = app.load_rules()
    at = now or utcnow()
    renderer = Renderer(app.settings)
    dispatcher = make_dispatcher(app, lambda: rule_set, lambda: renderer)
    try:
        enabled = [rule for rule in rule_set if rule.enabled]
        return run_tick(app, enabled, at, dispatcher=dispatcher, clock=None if now is not None else utcnow)
    finally:
        dispatcher.close()

"""`outreach run`: evaluate rules on their cadence and dispatch due contacts.

`run_once` is one tick (what `outreach run --once` and cron users get): every enabled rule is
evaluated at one instant, the decisions are recorded, and every due contact is dispatched.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from outreach.app import App
from outreach.channels import make_channels
from outreach.clock import utcnow
from outreach.delivery import Dispatcher, DispatchStats, TickResult, evaluate, limits_of, measure_goals
from outreach.escalation import post_new_tasks
from outreach.rendering import Renderer
from outreach.rules.loader import RuleSet


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class OnceResult:
    now: datetime
    tick: TickResult
    dispatch: DispatchStats


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
        lease=timedelta(seconds=app.settings.daemon.lease_seconds),
        concurrency=app.settings.delivery.concurrency,
        at_least_once=app.settings.delivery.at_least_once,
        **options,
    )


def run_once(app: App, now: datetime | None = None) -> OnceResult:
    """Evaluate every enabled rule at NOW, record the decisions, send what is due."""
    rules = app.load_rules()
    at = now or utcnow()
    enabled = [rule for rule in rules if rule.enabled]
    tick = evaluate(app.engine, enabled, at, limits_of(app.settings))
    post_new_tasks(app, tick.tasks)
    measure_goals(app.engine, enabled, at)
    renderer = Renderer(app.settings)
    dispatcher = make_dispatcher(app, lambda: rules, lambda: renderer)
    try:
        stats = dispatcher.dispatch_once(at, clock=(lambda: at) if now is not None else utcnow)
    finally:
        dispatcher.close()
    return OnceResult(at, tick, stats)


def run_forever(app: App) -> int:
    """The long-running daemon (see outreach.scheduler); returns the process exit code."""
    from outreach.scheduler import serve

    return serve(app)

"""Prometheus metrics of one `outreach run` process, served as text on `GET /metrics`.

Each daemon owns its own registry (not prometheus_client's global one), so several daemons can
live in one test process. Queue depth is read from the ledger when scraped, so every worker
reports the cluster-wide backlog.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from outreach import policy

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, queue_depth: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.matches = Counter(
            "outreach_matches",
            "Entities a rule matched at a tick (decided now or before).",
            ["rule"],
            registry=self.registry,
        )
        self.decisions = Counter(
            "outreach_decisions",
            "New decisions recorded, by state and, for those not sent, the policy step that stopped them "
            "(cap, cooldown, channel, holdout, expires).",
            ["rule", "state", "reason"],
            registry=self.registry,
        )
        self.sends = Counter(
            "outreach_sends",
            "Send attempts by channel and outcome (sent, transient, permanent, unknown).",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.provider_latency = Histogram(
            "outreach_provider_latency_seconds",
            "Time a provider took to answer a send.",
            ["channel", "provider"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tick_duration = Histogram(
            "outreach_tick_duration_seconds",
            "Time to evaluate one rule and record its decisions.",
            ["rule"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ticks = Counter(
            "outreach_ticks",
            "Rule ticks: evaluated here, skipped (taken by another worker) or failed.",
            ["rule", "result"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "outreach_rules_reloads",
            "Reloads of the rules and templates after an edit.",
            registry=self.registry,
        )
        self.reload_failures = Counter(
            "outreach_rules_reload_failures",
            "Edits of the rules or templates that were rejected (the last good set keeps running).",
            registry=self.registry,
        )
        self.dispatch_errors = Counter(
            "outreach_dispatch_errors",
            "Dispatch rounds that failed (database unreachable…).",
            registry=self.registry,
        )
        self.inbound_events = Counter(
            "outreach_inbound_events",
            "Events received over HTTP: provider webhooks by event kind, and records posted to /events by table.",
            ["source", "kind"],
            registry=self.registry,
        )
        self.inbound_rejections = Counter(
            "outreach_inbound_rejections",
            "Inbound requests refused: bad signature or token, endpoint not configured, unreadable body.",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "outreach_queue_depth",
            "Contacts due now and not yet claimed (all workers).",
            registry=self.registry,
        )
        if queue_depth is not None:
            self.queue_depth.set_function(_or_nan(queue_depth))

    def observe_send(self, channel: str, outcome: str, provider: str, seconds: float | None) -> None:
        """The Dispatcher's `observe` callback."""
        self.sends.labels(channel, outcome).inc()
        if seconds is not None:
            self.provider_latency.labels(channel, provider).observe(seconds)

    def observe_tick(self, rule: str, decisions: Sequence[policy.Decision], seconds: float) -> None:
        self.ticks.labels(rule, "evaluated").inc()
        self.matches.labels(rule).inc(len(decisions))
        for decision in decisions:
            if decision.state != "duplicate":
                # The step's name, not its text: a bounded set of label values.
                stopped_at = decision.step_names[-1] if decision.state != "pending" and decision.trace else ""
                self.decisions.labels(rule, decision.state, stopped_at).inc()
        self.tick_duration.labels(rule).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _or_nan(read: Callable[[], int]) -> Callable[[], float]:
    def value() -> float:
        try:
            return float(read())
        except Exception:  # noqa: BLE001 - a scrape must answer even when the database does not
            return math.nan

    return value

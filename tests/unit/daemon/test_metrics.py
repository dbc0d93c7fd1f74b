"""Metrics: skipped contacts are counted by the policy step that stopped them."""

from __future__ import annotations

from datetime import UTC, datetime

from outreach import policy
from outreach.daemon.metrics import Metrics

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _decision(state: str, steps: tuple[tuple[str, str], ...]) -> policy.Decision:
    return policy.Decision(
        rule="late-delivery",
        entity_id="o-1",
        customer_id="c-1",
        dedupe_key="late-delivery:order:o-1",
        state=state,
        channel="sms",
        reason=steps[-1][1],
        send_at=None,
        expires_at=None,
        trace=steps,
    )


def test_decisions_are_counted_by_state_and_the_step_that_stopped_them() -> None:
    """A contact held back by the daily cap counts under reason="cap"; one to send has no reason."""
    metrics = Metrics(queue_depth=lambda: 0)
    decisions = [
        _decision(
            "skipped",
            (("dedupe", "first"), ("channel", "sms"), ("cooldown", "none"), ("cap", "daily cap reached")),
        ),
        _decision("skipped", (("dedupe", "first"), ("channel", "sms"), ("cooldown", "sent 2h ago"))),
        _decision("pending", (("dedupe", "first"), ("channel", "sms"), ("quiet hours", "outside"))),
    ]
    metrics.observe_tick("late-delivery", decisions, 0.01)
    text = metrics.render().decode()
    assert 'outreach_decisions_total{reason="cap",rule="late-delivery",state="skipped"} 1.0' in text
    assert 'outreach_decisions_total{reason="cooldown",rule="late-delivery",state="skipped"} 1.0' in text
    assert 'outreach_decisions_total{reason="",rule="late-delivery",state="pending"} 1.0' in text

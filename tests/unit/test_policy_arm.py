"""Which arm of a rule's experiment a decision assigns its match to: the holdout, the message
(whatever happens to it after the holdout draw), or neither when a step before the draw held it back."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from outreach.policy import Candidate, Decision, RulePolicy, assigned_arm, decide
from outreach.vocabulary import Arm
from tests.unit.test_policy import LATE, LIMITS, NOW, customer, past, utc


def decision(rule: RulePolicy = LATE, *, now: datetime = NOW, capped: bool = False) -> Decision:
    """RULE's decision for order o-1; CAPPED: the customer had a message today already."""
    who = customer()
    history = [past(entity="o-0")] if capped else []
    [found] = decide([Candidate(rule, "o-1", who)], {who.id: history}, LIMITS, now)
    return found


def test_a_match_to_be_sent_is_assigned_to_the_message() -> None:
    assert (decision().state, assigned_arm(decision())) == ("pending", Arm.MESSAGE)


def test_a_match_drawn_for_the_control_group_is_assigned_to_the_holdout() -> None:
    held = decision(replace(LATE, holdout=1.0))
    assert (held.state, assigned_arm(held)) == ("holdout", Arm.HOLDOUT)


def test_a_match_deferred_by_quiet_hours_is_assigned_to_the_message() -> None:
    night = decision(now=utc(2026, 11, 24, 23))
    assert night.send_at is not None and night.send_at > utc(2026, 11, 24, 23)
    assert assigned_arm(night) == Arm.MESSAGE


def test_a_match_dropped_because_quiet_hours_outlast_its_expiry_stays_in_the_message_arm() -> None:
    """It went past the holdout draw: its twin in the holdout would have been counted there."""
    dropped = decision(replace(LATE, expires=timedelta(hours=1)), now=utc(2026, 11, 24, 23))
    assert (dropped.state, assigned_arm(dropped)) == ("expired", Arm.MESSAGE)


@pytest.mark.parametrize("why", ["cap", "no consent"])
def test_a_match_held_back_before_the_holdout_draw_is_in_neither_arm(why: str) -> None:
    if why == "cap":
        held = decision(capped=True)
    else:
        who = customer(email_opt_in=False, sms_opt_in=False)
        [held] = decide([Candidate(LATE, "o-1", who)], {}, LIMITS, NOW)
    assert held.state in ("skipped", "suppressed") and assigned_arm(held) is None

"""Delivery policy: dedupe, channel fallback, cooldown, caps, holdout, quiet hours, delay and expiry."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outreach.policy import (
    MAX_ATTEMPTS,
    Candidate,
    Controls,
    Decision,
    Limits,
    PastContact,
    QuietHours,
    Recipient,
    RulePolicy,
    Verdict,
    at_send_time,
    decide,
    dedupe_key,
    gate,
    in_holdout,
    quiet_hours_for,
    retry_at,
)

UTC = UTC
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # a Tuesday: 12:00 in London, 07:00 in New York
LIMITS = Limits(quiet_hours="21:00-09:00", max_per_day=1, max_per_week=3)
ROOMY = Limits(quiet_hours="21:00-09:00", max_per_day=10, max_per_week=10)

LATE = RulePolicy(name="late-delivery", about="order", channels=("sms", "email"), priority=20)
STALLED = RulePolicy(name="stalled-checkout", about="checkout", channels=("email", "sms"))
WELCOME = RulePolicy(name="welcome", about="customer", channels=("email",))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def customer(**fields: Any) -> Recipient:
    values: dict[str, Any] = {
        "id": "c-1",
        "timezone": "Europe/London",
        "preferred_channel": None,
        "email": "ann@example.com",
        "phone": "+447700900123",
        "email_opt_in": True,
        "sms_opt_in": True,
    }
    return Recipient(**{**values, **fields})


def past(
    rule: str = "late-delivery", entity: str = "o-0", state: str = "sent", at: datetime = NOW, **fields: Any
) -> PastContact:
    values: dict[str, Any] = {
        "rule": rule,
        "dedupe_key": f"{rule}:order:{entity}",
        "channel": "email",
        "state": state,
        "decided_at": at,
        "send_at": at,
    }
    return PastContact(**{**values, **fields})


def one(
    rule: RulePolicy = LATE,
    who: Recipient | None = None,
    history: list[PastContact] | None = None,
    limits: Limits = LIMITS,
    now: datetime = NOW,
    entity: str = "o-1",
) -> Decision:
    who = who or customer()
    [decision] = decide([Candidate(rule, entity, who)], {who.id: history or []}, limits, now)
    return decision


# -- quiet hours --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("21:00-09:00", time(21), time(9)),
        ("12:00-13:00", time(12), time(13)),
        (" 7:30 - 08:15 ", time(7, 30), time(8, 15)),
        ("23:59-00:00", time(23, 59), time(0)),
    ],
)
def test_quiet_hours_are_read_as_a_local_start_and_end(text: str, start: time, end: time) -> None:
    assert QuietHours.parse(text) == QuietHours(start, end)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("21-09", 'e.g. "21:00-09:00"'),
        ("", 'e.g. "21:00-09:00"'),
        ("off", '"off" for none'),
        ("9pm-9am", 'e.g. "21:00-09:00"'),
        ("25:00-09:00", "hours run 00-23"),
        ("21:00-09:60", "minutes 00-59"),
        ("09:00-09:00", "empty window"),
    ],
)
def test_a_malformed_quiet_hours_window_is_refused_with_an_example(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        QuietHours.parse(text)


@pytest.mark.parametrize(
    ("window", "zone", "instant", "expected"),
    [
        # outside the window: the instant itself
        ("21:00-09:00", "Europe/London", utc(2026, 11, 24, 20, 59), utc(2026, 11, 24, 20, 59)),
        ("21:00-09:00", "Europe/London", utc(2026, 11, 24, 9, 0), utc(2026, 11, 24, 9, 0)),
        # inside, before and after midnight: the next 09:00 local
        ("21:00-09:00", "Europe/London", utc(2026, 11, 24, 21, 0), utc(2026, 11, 25, 9, 0)),
        ("21:00-09:00", "Europe/London", utc(2026, 11, 25, 3, 0), utc(2026, 11, 25, 9, 0)),
        ("21:00-09:00", "Asia/Dubai", utc(2026, 11, 24, 17, 0), utc(2026, 11, 25, 5, 0)),
        ("21:00-09:00", "Asia/Kolkata", utc(2026, 11, 24, 16, 0), utc(2026, 11, 25, 3, 30)),
        ("21:00-09:00", "America/New_York", utc(2026, 11, 24, 12, 0), utc(2026, 11, 24, 14, 0)),
        # a window that does not wrap midnight
        ("12:00-13:00", "Europe/London", utc(2026, 11, 24, 12, 30), utc(2026, 11, 24, 13, 0)),
        ("12:00-13:00", "Europe/London", utc(2026, 11, 24, 13, 0), utc(2026, 11, 24, 13, 0)),
        ("12:00-13:00", "Asia/Kolkata", utc(2026, 11, 24, 6, 45), utc(2026, 11, 24, 7, 30)),
        # clocks change overnight: the window is shorter or longer in real time
        ("21:00-09:00", "Europe/London", utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 8, 0)),
        ("21:00-09:00", "Europe/London", utc(2026, 10, 24, 21, 0), utc(2026, 10, 25, 9, 0)),
        ("21:00-09:00", "America/New_York", utc(2026, 3, 8, 3, 0), utc(2026, 3, 8, 13, 0)),
        ("21:00-09:00", "America/New_York", utc(2026, 11, 1, 2, 0), utc(2026, 11, 1, 14, 0)),
        # the end falls in the skipped hour: the window ends when the clocks jump
        ("21:00-01:30", "Europe/London", utc(2026, 3, 28, 22, 0), utc(2026, 3, 29, 1, 0)),
        ("21:00-02:30", "America/New_York", utc(2026, 3, 8, 6, 0), utc(2026, 3, 8, 7, 0)),
        # the end falls in the repeated hour: the first 01:30 ends it, the second 01:30 too
        ("21:00-01:30", "Europe/London", utc(2026, 10, 24, 23, 10), utc(2026, 10, 25, 0, 30)),
        ("21:00-01:30", "Europe/London", utc(2026, 10, 25, 1, 10), utc(2026, 10, 25, 1, 30)),
    ],
)
def test_the_next_allowed_instant_is_the_end_of_the_local_window(
    window: str, zone: str, instant: datetime, expected: datetime
) -> None:
    assert QuietHours.parse(window).next_allowed(instant, ZoneInfo(zone)) == expected


def test_a_rule_s_quiet_hours_override_the_settings_and_off_switches_them_off() -> None:
    assert quiet_hours_for(LATE, LIMITS) == QuietHours(time(21), time(9))
    assert quiet_hours_for(replace(LATE, quiet_hours="12:00-13:00"), LIMITS) == QuietHours(time(12), time(13))
    assert quiet_hours_for(replace(LATE, quiet_hours="off"), LIMITS) is None
    assert quiet_hours_for(LATE, replace(LIMITS, quiet_hours="off")) is None


@pytest.mark.parametrize(
    ("zone", "send_at", "local"),
    [
        ("Europe/London", utc(2026, 11, 24, 18, 0), None),
        ("America/New_York", utc(2026, 11, 24, 18, 0), None),
        ("Asia/Dubai", utc(2026, 11, 25, 5, 0), "09:00 local on 2026-11-25"),
        ("Asia/Kolkata", utc(2026, 11, 25, 3, 30), "09:00 local on 2026-11-25"),
    ],
)
def test_a_contact_due_in_the_customer_s_quiet_hours_is_deferred_to_their_end_never_dropped(
    zone: str, send_at: datetime, local: str | None
) -> None:
    decision = one(who=customer(timezone=zone), now=utc(2026, 11, 24, 18, 0))
    assert (decision.state, decision.send_at) == ("pending", send_at)
    if local:
        assert f"quiet hours 21:00-09:00 in {zone}: deferred to {local}" in decision.reason


def test_quiet_hours_across_the_spring_change_end_at_09_00_summer_time() -> None:
    decision = one(now=utc(2026, 3, 28, 22, 0))
    assert decision.send_at == utc(2026, 3, 29, 8, 0)
    assert "deferred to 09:00 local on 2026-03-29" in decision.reason


def test_a_rule_with_quiet_hours_off_sends_at_night() -> None:
    decision = one(rule=replace(LATE, quiet_hours="off"), now=utc(2026, 11, 24, 23, 0))
    assert decision.send_at == utc(2026, 11, 24, 23, 0)
    assert ("quiet hours", "off for this rule") in decision.steps


# -- dedupe ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "about", "entity", "customer_id", "key"),
    [
        ("late-delivery", "order", "o-1", "c-1", "late-delivery:order:o-1"),
        ("late-delivery", "order", "o-1", "c-2", "late-delivery:order:o-1"),
        ("welcome", "customer", "c-1", "c-1", "welcome:customer:c-1"),
        ("welcome", "customer", "anything", "c-1", "welcome:customer:c-1"),
    ],
)
def test_the_dedupe_key_is_rule_and_entity_or_rule_and_customer(
    rule: str, about: str, entity: str, customer_id: str, key: str
) -> None:
    assert dedupe_key(rule, about, entity, customer_id) == key


@pytest.mark.parametrize(
    "state", ["pending", "claimed", "sending", "sent", "failed", "cancelled", "expired", "holdout", "unknown"]
)
def test_a_match_already_contacted_or_closed_is_a_duplicate(state: str) -> None:
    earlier = past(entity="o-1", state=state, at=NOW - timedelta(days=30))
    decision = one(history=[earlier])
    assert (decision.state, decision.channel, decision.send_at) == ("duplicate", None, None)
    assert (
        decision.reason
        == f"already decided 2026-10-25 12:00 UTC ({state}): one contact per rule and order, ever"
    )
    assert [name for name, _ in decision.steps] == ["dedupe"]


@pytest.mark.parametrize("state", ["skipped", "suppressed"])
def test_a_match_held_back_before_is_decided_again_keeping_its_first_expiry(state: str) -> None:
    rule = replace(LATE, expires=timedelta(days=2))
    earlier = past(
        entity="o-1",
        state=state,
        at=NOW - timedelta(days=1),
        send_at=None,
        expires_at=NOW + timedelta(days=1),
    )
    decision = one(rule=rule, history=[earlier])
    assert (decision.state, decision.send_at, decision.expires_at) == (
        "pending",
        NOW,
        NOW + timedelta(days=1),
    )
    assert decision.steps[0] == ("dedupe", f"decided again: {state} 2026-11-23 12:00 UTC")


def test_a_match_held_back_until_its_expiry_is_dropped_when_decided_again() -> None:
    earlier = past(entity="o-1", state="skipped", at=NOW - timedelta(days=2), send_at=None, expires_at=NOW)
    decision = one(rule=replace(LATE, expires=timedelta(days=2)), history=[earlier])
    assert (decision.state, decision.send_at) == ("expired", None)
    assert decision.reason == "held back until it expired at 2026-11-24 12:00 UTC: dropped"


def test_a_rule_about_customers_contacts_each_customer_once_even_within_one_run() -> None:
    who = customer()
    first, second = decide([Candidate(WELCOME, "c-1", who), Candidate(WELCOME, "x", who)], {}, ROOMY, NOW)
    assert first.state == "pending"
    assert (second.state, second.reason) == (
        "duplicate",
        "already decided in this run (pending): one contact per rule and customer",
    )


def test_another_rule_about_the_same_order_is_not_a_duplicate() -> None:
    assert one(history=[past(rule="order-shipped", entity="o-1")], limits=ROOMY).state == "pending"


# -- consent, addresses and suppressions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "who", "channel", "reason"),
    [
        (("sms", "email"), {}, "sms", "SMS opted in → sms"),
        (("sms", "email"), {"preferred_channel": "email"}, "email", "preferred email opted in → email"),
        (("email",), {"preferred_channel": "sms"}, "email", "email opted in → email"),
        (("sms", "email"), {"sms_opt_in": False}, "email", "no SMS consent; email opted in → email"),
        (("sms", "email"), {"phone": None}, "email", "no phone number; email opted in → email"),
        (
            ("sms", "email"),
            {"suppressed": frozenset({"sms"})},
            "email",
            "SMS suppressed (bounce, complaint or STOP); email opted in → email",
        ),
        (
            ("email", "sms"),
            {"preferred_channel": "sms", "suppressed": frozenset({"sms"})},
            "email",
            "SMS suppressed (bounce, complaint or STOP); email opted in → email",
        ),
        (("email", "sms"), {"email": None}, "sms", "no email address; SMS opted in → sms"),
        (
            ("email", "sms"),
            {"email_opt_in": False, "preferred_channel": "sms"},
            "sms",
            "preferred SMS opted in → sms",
        ),
    ],
)
def test_the_channel_is_the_first_with_address_consent_and_no_suppression_preferred_first(
    channels: tuple[str, ...], who: dict[str, Any], channel: str, reason: str
) -> None:
    decision = one(rule=replace(LATE, channels=channels), who=customer(**who))
    assert (decision.state, decision.channel, decision.reason) == ("pending", channel, reason)


@pytest.mark.parametrize(
    ("channels", "who", "reason"),
    [
        (
            ("sms", "email"),
            {"sms_opt_in": False, "email": None},
            "no channel left: no SMS consent; no email address",
        ),
        (("email",), {"email_opt_in": False}, "no channel left: no email consent"),
        (
            ("email", "sms"),
            {"suppressed": frozenset({"email", "sms"})},
            "no channel left: email suppressed (bounce, complaint or STOP); SMS suppressed (bounce, complaint or STOP)",
        ),
        (("fax",), {}, "no channel left: 'fax' is not a channel (email or sms)"),
    ],
)
def test_a_customer_with_no_usable_channel_is_suppressed_with_each_reason(
    channels: tuple[str, ...], who: dict[str, Any], reason: str
) -> None:
    decision = one(rule=replace(LATE, channels=channels), who=customer(**who))
    assert (decision.state, decision.channel, decision.send_at, decision.reason) == (
        "suppressed",
        None,
        None,
        reason,
    )


# -- cooldown ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cooldown", "state", "rule", "decided"),
    [
        (timedelta(days=7), "sent", "late-delivery", "skipped"),
        (timedelta(days=7), "pending", "late-delivery", "skipped"),
        (timedelta(days=7), "unknown", "late-delivery", "skipped"),
        (timedelta(days=1), "sent", "late-delivery", "pending"),
        (timedelta(days=7), "failed", "late-delivery", "pending"),
        (timedelta(days=7), "cancelled", "late-delivery", "pending"),
        (timedelta(days=7), "holdout", "late-delivery", "pending"),
        (timedelta(days=7), "sent", "stalled-checkout", "pending"),
        (None, "sent", "late-delivery", "pending"),
    ],
)
def test_cooldown_skips_a_second_contact_from_the_same_rule_within_it(
    cooldown: timedelta | None, state: str, rule: str, decided: str
) -> None:
    history = [past(rule=rule, entity="o-0", state=state, at=NOW - timedelta(days=2))]
    decision = one(rule=replace(LATE, cooldown=cooldown), history=history, limits=ROOMY)
    assert decision.state == decided
    if decided == "skipped":
        assert (
            decision.reason
            == "within the 1w cooldown of the last contact from late-delivery (2026-11-22 12:00 UTC)"
        )


def test_cooldown_counts_contacts_decided_earlier_in_the_same_run() -> None:
    rule = replace(LATE, cooldown=timedelta(days=1))
    who = customer()
    first, second = decide([Candidate(rule, "o-1", who), Candidate(rule, "o-2", who)], {}, ROOMY, NOW)
    assert (first.state, second.state) == ("pending", "skipped")


# -- frequency caps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["sent", "sending", "unknown", "pending", "claimed"])
def test_a_contact_that_is_or_will_be_sent_today_holds_back_the_next_one(state: str) -> None:
    earlier = past(rule="stalled-checkout", state=state, at=NOW - timedelta(hours=3))
    decision = one(history=[earlier])
    assert (decision.state, decision.channel, decision.send_at) == ("skipped", "sms", None)
    assert decision.reason == "daily cap reached (1 a day) by stalled-checkout on 2026-11-24 (Europe/London)"


@pytest.mark.parametrize("state", ["failed", "cancelled", "expired", "holdout", "suppressed", "skipped"])
def test_a_contact_that_never_went_out_does_not_count_against_the_caps(state: str) -> None:
    earlier = past(rule="stalled-checkout", state=state, at=NOW - timedelta(hours=3))
    assert one(history=[earlier]).send_at == NOW


@pytest.mark.parametrize(
    ("zone", "state"),
    [
        # 21:00 UTC on the 23rd is already the 24th in Dubai and Kolkata, still the 23rd in London and New York
        ("Europe/London", "pending"),
        ("America/New_York", "pending"),
        ("Asia/Dubai", "skipped"),
        ("Asia/Kolkata", "skipped"),
    ],
)
def test_the_daily_cap_counts_the_customer_s_local_calendar_day(zone: str, state: str) -> None:
    earlier = past(rule="stalled-checkout", at=utc(2026, 11, 23, 21, 0))
    assert one(who=customer(timezone=zone), history=[earlier]).state == state


@pytest.mark.parametrize(
    ("earlier", "state"),
    [
        (utc(2026, 3, 28, 23, 30), "pending"),  # 23:30 GMT on the 28th
        (utc(2026, 3, 29, 0, 30), "skipped"),  # 00:30 GMT on the 29th, before the clocks go forward
        (utc(2026, 3, 29, 22, 30), "skipped"),  # 23:30 BST on the 29th
        (utc(2026, 3, 29, 23, 30), "pending"),  # 00:30 BST on the 30th
    ],
)
def test_the_daily_cap_follows_the_local_day_across_a_clock_change(earlier: datetime, state: str) -> None:
    history = [past(rule="stalled-checkout", state="pending", at=earlier)]
    assert one(history=history, now=utc(2026, 3, 29, 19, 0)).state == state


def test_a_contact_deferred_by_quiet_hours_counts_against_the_local_day_it_will_be_sent() -> None:
    evening = utc(2026, 11, 24, 22, 0)
    tomorrow = past(
        rule="stalled-checkout",
        state="pending",
        at=evening - timedelta(hours=1),
        send_at=utc(2026, 11, 25, 9, 0),
    )
    today = past(rule="detractor-follow-up", at=utc(2026, 11, 24, 10, 0))
    assert one(history=[today], now=evening).state == "pending"
    decision = one(history=[today, tomorrow], now=evening)
    assert decision.reason == "daily cap reached (1 a day) by stalled-checkout on 2026-11-25 (Europe/London)"


def test_the_weekly_cap_counts_the_local_week_from_monday() -> None:
    limits = replace(LIMITS, max_per_day=5, max_per_week=3)
    history = [
        past(rule="a", entity="1", at=utc(2026, 11, 23, 10, 0)),
        past(rule="b", entity="2", at=utc(2026, 11, 23, 11, 0)),
        past(rule="c", entity="3", at=utc(2026, 11, 24, 10, 0)),
    ]
    decision = one(history=history, limits=limits)
    assert (decision.state, decision.reason) == (
        "skipped",
        "weekly cap reached (3 a week) by a, b, c in the week of 2026-11-24 (Europe/London)",
    )
    assert one(history=history[1:], limits=limits).state == "pending"
    last_sunday = past(rule="a", entity="1", at=utc(2026, 11, 22, 18, 0))
    assert one(history=[last_sunday, *history[1:]], limits=limits).state == "pending"


def test_higher_priority_takes_the_only_contact_of_the_day_whatever_the_order_of_matches() -> None:
    who = customer()
    stalled, late = decide([Candidate(STALLED, "k-1", who), Candidate(LATE, "o-1", who)], {}, LIMITS, NOW)
    assert (late.state, late.send_at) == ("pending", NOW)
    assert (stalled.state, stalled.reason) == (
        "skipped",
        "daily cap reached (1 a day) by late-delivery on 2026-11-24 (Europe/London)",
    )


def test_equal_priorities_are_weighed_in_rule_name_order() -> None:
    who = customer()
    b_rule, a_rule = replace(LATE, name="b-rule", priority=5), replace(LATE, name="a-rule", priority=5)
    b, a = decide([Candidate(b_rule, "o-1", who), Candidate(a_rule, "o-2", who)], {}, LIMITS, NOW)
    assert (a.state, b.state) == ("pending", "skipped")


def test_caps_are_per_customer() -> None:
    ann, bob = customer(), customer(id="c-2")
    decisions = decide([Candidate(LATE, "o-1", ann), Candidate(LATE, "o-2", bob)], {}, LIMITS, NOW)
    assert [d.state for d in decisions] == ["pending", "pending"]


@pytest.mark.parametrize("limits", [replace(LIMITS, max_per_day=0), replace(LIMITS, max_per_week=0)])
def test_a_cap_of_zero_skips_every_contact(limits: Limits) -> None:
    decision = one(limits=limits)
    assert (decision.state, decision.send_at) == ("skipped", None)
    assert "frequency cap is 0" in decision.reason


def test_a_held_out_contact_leaves_the_day_s_contact_to_the_next_rule() -> None:
    who = customer()
    held = replace(LATE, holdout=1.0)
    late, stalled = decide([Candidate(held, "o-1", who), Candidate(STALLED, "k-1", who)], {}, LIMITS, NOW)
    assert (late.state, stalled.state, stalled.send_at) == ("holdout", "pending", NOW)


# -- holdout ----------------------------------------------------------------------------------------


def test_holdout_is_recorded_with_its_channel_and_never_scheduled() -> None:
    decision = one(rule=replace(STALLED, holdout=1.0), entity="k-1")
    assert (decision.state, decision.channel, decision.send_at) == ("holdout", "email", None)
    assert decision.reason == "held out (100% control group): recorded, never sent"


def test_no_customer_is_held_out_of_a_rule_without_holdout() -> None:
    assert not any(in_holdout("late-delivery", f"c-{n}", 0.0) for n in range(1000))
    assert all(in_holdout("late-delivery", f"c-{n}", 1.0) for n in range(1000))


def test_the_control_group_is_close_to_the_configured_fraction_over_ten_thousand_customers() -> None:
    held = sum(in_holdout("stalled-checkout", f"c-{n}", 0.10) for n in range(10_000))
    assert 900 <= held <= 1100


def test_the_control_group_does_not_change_between_runs_or_releases() -> None:
    # Pinned: a new hashing would silently reshuffle every running experiment.
    held = [n for n in range(100) if in_holdout("stalled-checkout", f"c-{n}", 0.10)]
    assert held == HELD_OUT_OF_FIRST_100


def test_a_larger_fraction_keeps_everyone_already_held_out() -> None:
    ids = [f"c-{n}" for n in range(2000)]
    five = {i for i in ids if in_holdout("stalled-checkout", i, 0.05)}
    ten = {i for i in ids if in_holdout("stalled-checkout", i, 0.10)}
    assert five < ten


def test_each_rule_draws_its_own_control_group() -> None:
    ids = [f"c-{n}" for n in range(10_000)]
    both = sum(in_holdout("a", i, 0.1) and in_holdout("b", i, 0.1) for i in ids)
    assert both < 200  # about 1% by chance, not the 10% of a shared group


def test_a_holdout_fraction_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"holdout 10 must be a fraction from 0 to 1 \(10% is 0.1\)"):
        in_holdout("a", "c-1", 10)


# -- delay and expiry -----------------------------------------------------------------------------


def test_a_delayed_contact_is_due_the_delay_after_the_match() -> None:
    decision = one(rule=replace(LATE, delay=timedelta(hours=2)))
    assert decision.send_at == NOW + timedelta(hours=2)
    assert decision.reason == "SMS opted in → sms; delay 2h"


def test_a_delay_that_ends_in_quiet_hours_is_deferred_to_their_end() -> None:
    decision = one(rule=replace(LATE, delay=timedelta(hours=10)))
    assert decision.send_at == utc(2026, 11, 25, 9, 0)


def test_expiry_is_measured_from_the_match() -> None:
    assert one(rule=replace(LATE, expires=timedelta(days=1))).expires_at == NOW + timedelta(days=1)
    assert one().expires_at is None


def test_a_contact_quiet_hours_would_hold_past_its_expiry_is_dropped_and_recorded() -> None:
    decision = one(rule=replace(LATE, expires=timedelta(hours=2)), now=utc(2026, 11, 24, 22, 0))
    assert (decision.state, decision.send_at) == ("expired", None)
    assert decision.reason == (
        "would be sent 09:00 local on 2026-11-25, after it expires at 00:00 local on 2026-11-25"
        " (2h after the match): dropped"
    )


@pytest.mark.parametrize(
    ("expires_at", "now", "expired"),
    [
        (None, NOW, False),
        (NOW + timedelta(seconds=1), NOW, False),
        (NOW, NOW, True),
        (NOW - timedelta(hours=1), NOW, True),
    ],
)
def test_a_due_contact_past_its_expiry_is_not_sent(
    expires_at: datetime | None, now: datetime, expired: bool
) -> None:
    reason = at_send_time(expires_at, now)
    assert (reason is not None) == expired
    if reason:
        assert reason.startswith("expired at ")


# -- the whole decision ---------------------------------------------------------------------------


def test_a_contact_records_every_step_in_the_order_of_the_contract() -> None:
    decision = one(rule=replace(LATE, cooldown=timedelta(days=1), holdout=0.0001, expires=timedelta(days=2)))
    assert [name for name, _ in decision.steps] == [
        "dedupe",
        "channel",
        "cooldown",
        "cap",
        "holdout",
        "quiet hours",
        "delay",
        "expires",
    ]
    assert (
        dict(decision.steps)["cap"] == "within caps: 0 of 1 on 2026-11-24, 0 of 3 that week (Europe/London)"
    )


def test_decisions_come_back_in_the_order_of_the_candidates() -> None:
    who = customer()
    candidates = [Candidate(STALLED, "k-1", who), Candidate(LATE, "o-1", who), Candidate(WELCOME, "c-1", who)]
    assert [d.rule for d in decide(candidates, {}, ROOMY, NOW)] == [
        "stalled-checkout",
        "late-delivery",
        "welcome",
    ]


def test_time_without_an_offset_is_refused() -> None:
    with pytest.raises(ValueError, match="has no UTC offset"):
        one(now=datetime(2026, 11, 24, 12, 0))


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"channels": ()}, 'rule "late-delivery": no channels'),
        ({"holdout": 1.5}, "holdout 1.5 must be a fraction from 0 to 1"),
        ({"delay": timedelta(hours=-1)}, "delay must not be negative"),
        (
            {"delay": timedelta(hours=2), "expires": timedelta(hours=1)},
            r"expires \(1h\) must be longer than delay \(2h\)",
        ),
        ({"quiet_hours": "9-5"}, "rule \"late-delivery\": '9-5' is not a quiet-hours window"),
    ],
)
def test_a_rule_policy_that_could_never_deliver_sensibly_is_refused(
    fields: dict[str, Any], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        replace(LATE, **fields)


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (
            lambda: Limits(quiet_hours="nights", max_per_day=1, max_per_week=3),
            "delivery.quiet_hours: 'nights'",
        ),
        (lambda: Limits(quiet_hours="off", max_per_day=-1, max_per_week=3), "must not be negative"),
        (lambda: customer(timezone="Mars/Olympus"), "customer 'c-1': unknown time zone 'Mars/Olympus'"),
    ],
)
def test_limits_and_customers_that_policy_cannot_use_are_refused(build: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        build()


# -- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 30), (2, 60), (3, 120), (5, 480), (7, 1920)])
def test_retries_back_off_exponentially_with_full_jitter(attempt: int, ceiling: float) -> None:
    rng = random.Random(7)
    waits = [(retry_at(attempt, NOW, None, None, rng) - NOW).total_seconds() for _ in range(500)]  # type: ignore[operator]
    assert 0 <= min(waits) < ceiling * 0.1
    assert ceiling * 0.9 < max(waits) <= ceiling


def test_the_backoff_never_waits_more_than_an_hour_unless_the_provider_asks() -> None:
    rng = random.Random(3)
    for attempt in range(1, MAX_ATTEMPTS):
        assert retry_at(attempt, NOW, None, None, rng) <= NOW + timedelta(hours=1)  # type: ignore[operator]
    assert retry_at(7, NOW, 7200, None, rng) == NOW + timedelta(hours=2)


def test_retry_after_is_a_floor_under_the_backoff() -> None:
    assert retry_at(1, NOW, 45.0, None, random.Random(1)) == NOW + timedelta(seconds=45)


def test_a_seeded_random_source_gives_the_same_retry_instant() -> None:
    assert retry_at(4, NOW, None, None, random.Random(9)) == retry_at(4, NOW, None, None, random.Random(9))


def test_retries_stop_after_the_last_attempt_or_past_the_expiry() -> None:
    assert retry_at(MAX_ATTEMPTS, NOW, None, None, random.Random(1)) is None
    assert retry_at(1, NOW, 120.0, NOW + timedelta(seconds=60), random.Random(1)) is None
    assert retry_at(1, NOW, 30.0, NOW + timedelta(seconds=60), random.Random(1)) == NOW + timedelta(
        seconds=30
    )


def test_a_retry_that_would_land_in_quiet_hours_waits_for_them_to_end() -> None:
    late_evening = utc(2026, 11, 24, 20, 59)
    when = retry_at(
        1, late_evening, 120.0, None, random.Random(1), quiet=LIMITS_QUIET, timezone="Europe/London"
    )
    assert when == utc(2026, 11, 25, 9, 0)


def test_attempts_are_counted_from_one() -> None:
    with pytest.raises(ValueError, match="starting at 1"):
        retry_at(0, NOW, None, None, random.Random(1))


LIMITS_QUIET = QuietHours.parse(LIMITS.quiet_hours)
HELD_OUT_OF_FIRST_100 = [21, 57, 87, 89, 96, 97, 98]


# -- a higher priority takes the place of a waiting lower one ----------------------------------


def waiting(
    rule: str = "stalled-checkout", at: datetime = NOW + timedelta(hours=10), priority: int = 0
) -> PastContact:
    """A contact of the ledger still pending for its send time AT (deferred by quiet hours, say)."""
    return past(rule=rule, entity="k-1", state="pending", at=at, id=f"row-{rule}", priority=priority)


def test_a_higher_priority_contact_takes_the_day_of_a_lower_one_still_waiting() -> None:
    # 23:30 in London: a late parcel (priority 20) is decided while a stalled checkout (0),
    # deferred by quiet hours to 09:00 tomorrow, holds tomorrow's only contact.
    late_night = utc(2026, 11, 24, 23, 30)
    deferred = waiting(at=utc(2026, 11, 25, 9, 0))
    decision = one(history=[deferred], now=late_night)
    assert decision.state == "pending" and decision.send_at == utc(2026, 11, 25, 9, 0)
    [displaced] = decision.displaced
    assert displaced.contact_id == "row-stalled-checkout"
    assert displaced.reason.startswith("gave its place to late-delivery (priority 20 over 0)")
    assert displaced.recheck_at == utc(2026, 11, 26, 0, 0), "decided again on its next local day"
    assert ("cap", "took the place of stalled-checkout (priority 0), still waiting") in decision.steps


@pytest.mark.parametrize(
    ("earlier", "why"),
    [
        (waiting(priority=20), "an equal priority keeps its place"),
        (waiting(priority=30), "a higher priority keeps its place"),
        (
            past(rule="stalled-checkout", state="pending", at=NOW - timedelta(minutes=1), id="due"),
            "already due",
        ),
        (
            past(rule="stalled-checkout", state="claimed", at=NOW + timedelta(hours=1), id="claimed"),
            "claimed",
        ),
        (past(rule="stalled-checkout", state="sent", at=NOW - timedelta(hours=1), id="sent"), "already sent"),
    ],
)
def test_a_contact_keeps_its_place_unless_it_is_waiting_with_a_lower_priority(
    earlier: PastContact, why: str
) -> None:
    decision = one(history=[earlier])
    assert decision.state == "skipped", why
    assert decision.displaced == ()


def test_a_held_out_match_takes_no_one_s_place() -> None:
    decision = one(rule=replace(LATE, holdout=1.0), history=[waiting()])
    assert decision.state == "holdout" and decision.displaced == ()


def test_displacing_frees_the_week_as_well_as_the_day() -> None:
    weekly = Limits(quiet_hours="21:00-09:00", max_per_day=5, max_per_week=1)
    decision = one(history=[waiting(at=NOW + timedelta(days=2))], limits=weekly)
    assert decision.state == "pending" and len(decision.displaced) == 1
    assert decision.displaced[0].recheck_at == utc(2026, 11, 30, 0, 0), "the Monday after, London time"


# -- when a held-back match is decided again ---------------------------------------------------


def test_a_match_held_by_the_daily_cap_is_decided_again_at_the_next_local_midnight() -> None:
    tokyo = customer(timezone="Asia/Tokyo")  # 21:00 in Tokyo at NOW
    earlier = past(rule="stalled-checkout", state="sent", at=NOW - timedelta(hours=1))
    decision = one(who=tokyo, history=[earlier], limits=replace(LIMITS, quiet_hours="off"))
    assert decision.state == "skipped"
    assert decision.recheck_at == utc(2026, 11, 24, 15, 0), "00:00 on the 25th in Tokyo"


def test_a_match_held_by_the_cooldown_is_decided_again_when_it_ends() -> None:
    history = [past(state="sent", at=NOW - timedelta(days=2))]
    decision = one(rule=replace(LATE, cooldown=timedelta(days=7)), history=history, limits=ROOMY)
    assert decision.recheck_at == NOW + timedelta(days=5)


def test_a_held_back_match_is_decided_again_by_its_expiry_at_the_latest() -> None:
    earlier = past(rule="stalled-checkout", state="sent", at=NOW - timedelta(hours=1))
    decision = one(rule=replace(LATE, expires=timedelta(hours=2)), history=[earlier])
    assert decision.state == "skipped" and decision.recheck_at == NOW + timedelta(hours=2)


def test_a_match_without_a_consented_channel_waits_for_a_consent_change_not_for_a_time() -> None:
    decision = one(who=customer(email_opt_in=False, sms_opt_in=False))
    assert decision.state == "suppressed" and decision.recheck_at is None


# -- the send-time gate ----------------------------------------------------------------------------


def gate_of(**overrides: Any) -> Verdict:
    """The gate for an SMS of late-delivery due at NOW (12:00 in London), everything allowing it."""
    arguments: dict[str, Any] = {
        "rule": LATE,
        "channel": "sms",
        "expires_at": None,
        "recipient": customer(),
        "condition_holds": True,
        "limits": LIMITS,
        "controls": Controls(),
        "now": NOW,
        **overrides,
    }
    return gate(**arguments)


def test_a_contact_whose_state_still_allows_it_is_sent_on_its_channel() -> None:
    assert gate_of() == Verdict("send", "", "sms")


@pytest.mark.parametrize(
    ("overrides", "action", "reason"),
    [
        ({"rule": None}, "cancel", "the rule no longer exists"),
        ({"expires_at": NOW}, "expire", "expired at 2026-11-24 12:00 UTC"),
        ({"recipient": None}, "cancel", "the customer or the record is gone"),
        ({"condition_holds": False}, "cancel", "the condition no longer holds at send time"),
        ({"goal_met": True}, "cancel", "the goal was met"),
        (
            {"recipient": customer(sms_opt_in=False, email_opt_in=False)},
            "suppress",
            "at send time: no channel left",
        ),
        ({"controls": Controls(paused="carrier outage")}, "hold", "sending is paused (carrier outage)"),
        (
            {"controls": Controls(silenced={"late-delivery": "freeze"})},
            "hold",
            "rule late-delivery is silenced",
        ),
    ],
)
def test_the_gate_stops_a_contact_the_state_no_longer_allows(
    overrides: dict[str, Any], action: str, reason: str
) -> None:
    verdict = gate_of(**overrides)
    assert verdict.action == action
    assert verdict.reason.startswith(reason), verdict.reason


@pytest.mark.parametrize(
    ("who", "why"),
    [
        (customer(sms_opt_in=False), "no SMS consent"),
        (customer(suppressed=frozenset({"sms"})), "SMS suppressed"),
        (customer(phone=None), "no phone number"),
    ],
)
def test_a_withdrawn_channel_falls_back_to_the_rule_s_next_consented_one(who: Recipient, why: str) -> None:
    verdict = gate_of(recipient=who)
    assert (verdict.action, verdict.channel) == ("reroute", "email")
    assert why in verdict.reason


def test_quiet_hours_are_read_in_the_customer_s_current_zone_at_send_time() -> None:
    # Decided for Berlin at 10:00; the customer moved to Auckland, where it is 01:00.
    verdict = gate_of(recipient=customer(timezone="Pacific/Auckland"))
    assert verdict.action == "defer"
    assert verdict.until == utc(2026, 11, 24, 20, 0), "09:00 in Auckland"
    assert "quiet hours 21:00-09:00 in Pacific/Auckland" in verdict.reason


def test_a_deferral_past_the_expiry_is_an_expiry() -> None:
    verdict = gate_of(recipient=customer(timezone="Pacific/Auckland"), expires_at=NOW + timedelta(hours=2))
    assert verdict.action == "expire"


def test_a_message_carried_into_a_full_local_day_is_held_back_to_the_next_one() -> None:
    # Counted for its own day when decided; a deferral, a retry or a move brought it to a day
    # on which the customer already got one.
    morning = past(rule="stalled-checkout", entity="k-1", at=NOW - timedelta(hours=2))
    verdict = gate_of(delivered=[morning])
    assert verdict.action == "cap"
    assert verdict.until == utc(2026, 11, 25, 0, 0), "midnight in London"
    assert verdict.reason.startswith("at send time: daily cap reached (1 a day) by stalled-checkout")


def test_the_caps_at_send_time_are_the_local_week_of_the_customer_s_current_zone() -> None:
    # One message a week. The last one left on Sunday in São Paulo, which was already Monday in
    # Auckland; the customer has moved there since.
    weekly = Limits(quiet_hours="21:00-09:00", max_per_day=1, max_per_week=1)
    sunday = past(at=utc(2026, 11, 22, 20, 0))  # 17:00 Sunday in São Paulo, 09:00 Monday in Auckland
    monday = utc(2026, 11, 23, 20, 0)  # 17:00 Monday in São Paulo, 09:00 Tuesday in Auckland
    sao_paulo = customer(timezone="America/Sao_Paulo")
    assert gate_of(recipient=sao_paulo, now=monday, limits=weekly, delivered=[sunday]).action == "send"
    verdict = gate_of(
        recipient=customer(timezone="Pacific/Auckland"), now=monday, limits=weekly, delivered=[sunday]
    )
    assert verdict.action == "cap" and "weekly cap reached (1 a week)" in verdict.reason
    assert verdict.until == utc(2026, 11, 29, 11, 0), "00:00 next Monday in Auckland"


def test_quiet_hours_come_before_a_pause_so_a_resumed_backlog_never_goes_out_at_night() -> None:
    night = utc(2026, 11, 24, 18, 0)  # 23:30 in Kolkata
    verdict = gate_of(recipient=customer(timezone="Asia/Kolkata"), now=night, controls=Controls())
    assert verdict.action == "defer" and verdict.until == utc(2026, 11, 25, 3, 30)

"""Delivery policy holds for any customers, time zones, clocks and runs: caps, quiet hours, holdout."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.policy import (
    LIVE_STATES,
    Candidate,
    Limits,
    PastContact,
    QuietHours,
    Recipient,
    RulePolicy,
    decide,
    in_holdout,
)

UTC = UTC
# Half-hour offsets, half-hour DST (Lord Howe), a whole skipped day (Apia, 2011-12-30).
ZONES = [
    "Europe/London",
    "Asia/Dubai",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/Santiago",
    "UTC",
]

zones = st.sampled_from(ZONES)
any_instant = st.datetimes(
    min_value=datetime(2010, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
# Quarter hours too, so instants fall exactly on the edges of windows (in whole-hour zones).
instants = st.one_of(
    any_instant, any_instant.map(lambda d: d.replace(minute=d.minute // 15 * 15, second=0, microsecond=0))
)
wall_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
windows = st.tuples(wall_times, wall_times).filter(lambda w: w[0] != w[1]).map(lambda w: QuietHours(*w))


@settings(max_examples=400, deadline=None)
@given(window=windows, zone=zones, instant=instants)
def test_the_next_allowed_instant_is_the_first_outside_the_window(
    window: QuietHours, zone: str, instant: datetime
) -> None:
    tz = ZoneInfo(zone)
    allowed = window.next_allowed(instant, tz)
    assert allowed >= instant
    assert not window.contains(allowed.astimezone(tz).time())
    if allowed != instant:
        assert window.contains((allowed - timedelta(seconds=1)).astimezone(tz).time())
        assert allowed - instant <= timedelta(hours=26)


customers = st.builds(
    Recipient,
    id=st.sampled_from(["c-1", "c-2"]),
    timezone=zones,
    preferred_channel=st.sampled_from([None, "email", "sms"]),
    email=st.just("a@example.com"),
    phone=st.just("+447700900123"),
    email_opt_in=st.just(True),
    sms_opt_in=st.booleans(),
)
rules = st.builds(
    RulePolicy,
    name=st.sampled_from(["late-delivery", "stalled-checkout", "detractor-follow-up"]),
    about=st.just("order"),
    channels=st.just(("email", "sms")),
    priority=st.integers(0, 3),
    delay=st.sampled_from([None, timedelta(hours=1), timedelta(hours=14)]),
    quiet_hours=st.sampled_from([None, "off", "12:00-13:00"]),
    holdout=st.sampled_from([0.0, 0.5]),
)


@settings(max_examples=150, deadline=None)
@given(
    ticks=st.lists(
        st.tuples(
            st.integers(1, 40 * 60),  # minutes since the previous run
            st.lists(st.tuples(rules, st.integers(0, 30), customers), max_size=6),
        ),
        min_size=1,
        max_size=12,
    ),
    start=instants,
    max_per_day=st.integers(1, 3),
    max_per_week=st.integers(1, 5),
)
def test_no_customer_gets_more_contacts_than_the_caps_in_any_local_day_or_week(
    ticks: list[tuple[int, list[tuple[RulePolicy, int, Recipient]]]],
    start: datetime,
    max_per_day: int,
    max_per_week: int,
) -> None:
    limits = Limits(quiet_hours="21:00-09:00", max_per_day=max_per_day, max_per_week=max_per_week)
    ledger: dict[str, list[PastContact]] = {}
    zone_of: dict[str, str] = {}
    now = start
    for minutes, matches in ticks:
        now += timedelta(minutes=minutes)
        # A customer keeps the time zone they first came with.
        for _rule, _entity, who in matches:
            zone_of.setdefault(who.id, who.timezone)
        candidates = [
            Candidate(rule, f"o-{entity}", replace(who, timezone=zone_of[who.id]))
            for rule, entity, who in matches
        ]
        for decision in decide(candidates, ledger, limits, now):
            if decision.state == "duplicate":
                continue
            rows = ledger.setdefault(decision.customer_id, [])
            for out in decision.displaced:
                # A displaced contact is held back: it no longer counts, and it had a lower priority.
                [row] = [r for r in rows if r.id == out.contact_id]
                assert row.state == "pending" and row.priority < decision.priority and row.at > now
                rows[rows.index(row)] = replace(row, state="skipped", send_at=None)
            rows[:] = [r for r in rows if r.dedupe_key != decision.dedupe_key]  # decided again
            rows.append(
                PastContact(
                    rule=decision.rule,
                    dedupe_key=decision.dedupe_key,
                    channel=decision.channel,
                    state=decision.state,
                    decided_at=now,
                    send_at=decision.send_at,
                    expires_at=decision.expires_at,
                    id=f"row-{len(rows)}-{decision.dedupe_key}",
                    priority=decision.priority,
                )
            )
    for customer_id, rows in ledger.items():
        tz = ZoneInfo(zone_of[customer_id])
        days = Counter(row.at.astimezone(tz).date() for row in rows if row.state in LIVE_STATES)
        weeks = Counter(row.at.astimezone(tz).isocalendar()[:2] for row in rows if row.state in LIVE_STATES)
        assert max(days.values(), default=0) <= max_per_day
        assert max(weeks.values(), default=0) <= max_per_week


@settings(max_examples=300, deadline=None)
@given(rule=rules, who=customers, now=instants)
def test_a_scheduled_contact_is_never_due_inside_the_quiet_hours_that_apply_to_it(
    rule: RulePolicy, who: Recipient, now: datetime
) -> None:
    limits = Limits(quiet_hours="21:00-09:00", max_per_day=5, max_per_week=10)
    [decision] = decide([Candidate(rule, "o-1", who)], {}, limits, now)
    if decision.state == "pending" and rule.quiet_hours != "off":
        assert decision.send_at is not None and decision.send_at >= now
        window = QuietHours.parse(rule.quiet_hours or limits.quiet_hours)
        assert not window.contains(decision.send_at.astimezone(ZoneInfo(who.timezone)).time())


@settings(max_examples=300, deadline=None)
@given(
    rule=st.text(min_size=1, max_size=20),
    customer_id=st.text(min_size=1, max_size=20),
    low=st.floats(0, 1),
    high=st.floats(0, 1),
)
def test_whoever_is_held_out_at_a_fraction_is_held_out_at_any_larger_one(
    rule: str, customer_id: str, low: float, high: float
) -> None:
    low, high = min(low, high), max(low, high)
    if in_holdout(rule, customer_id, low):
        assert in_holdout(rule, customer_id, high)

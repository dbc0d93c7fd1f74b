"""The only place that reads the wall clock; everything else takes `now` as an argument."""

from __future__ import annotations

from datetime import UTC, datetime

# The instants outreach takes from users (records, --now, rule tests). Rules move instants by
# at most a century (outreach.durations.MAX_DURATION), so every `now() - 1d` or
# `order.placed_at + 2d` stays far inside what datetime and both databases can hold; a feed
# with year 1 or 9999 in it is a mistake, and is told so.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)  # exclusive
RANGE_TEXT = "from 1900 to 2199"


def in_range(value: datetime, text: str | None = None) -> datetime:
    """VALUE (aware) if it lies between EARLIEST and LATEST; ValueError naming the range otherwise."""
    if not EARLIEST <= value < LATEST:
        shown = text if text is not None else value.isoformat()
        raise ValueError(f"{shown!r} is out of range: outreach takes times {RANGE_TEXT}")
    return value


def utcnow() -> datetime:
    """The current instant, aware, in UTC."""
    return datetime.now(UTC)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with an offset (or Z), as aware UTC; ValueError says what is wrong."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-24T09:30:00Z)") from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset: add Z or +HH:MM")
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, year 9999 with a negative one
        raise ValueError(f"{text!r} is out of range: outreach takes times {RANGE_TEXT}") from None
    return in_range(utc, text)


def to_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; naive values are taken to be UTC already (as stored)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)

"""Quiet hours: a daily window of a customer's local time in which nothing is sent (`"21:00-09:00"`).

Settings validate the window, policy defers a contact out of it, the gate re-checks it in the
customer's current time zone. Instants are aware; local days come from the IANA zone, so a
window across a clock change ends at the local time it says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

OFF = "off"  # no quiet hours (a rule's `quiet_hours: off`)

_QUIET_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class QuietHours:
    """A daily window of the customer's local time in which nothing is sent; may wrap midnight."""

    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError(
                f'quiet hours "{self}" are an empty window: write e.g. "21:00-09:00", or "off" for none'
            )

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """`"21:00-09:00"` → QuietHours(21:00, 09:00); ValueError with an example otherwise."""
        found = _QUIET_RE.match(text)
        if found is None:
            raise ValueError(
                f'{text!r} is not a quiet-hours window: write local HH:MM-HH:MM, e.g. "21:00-09:00"'
                ' (wraps midnight) or "12:00-13:00", or "off" for none'
            )
        h1, m1, h2, m2 = (int(part) for part in found.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ValueError(f"{text!r} is not a quiet-hours window: hours run 00-23, minutes 00-59")
        return cls(time(h1, m1), time(h2, m2))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, wall: time) -> bool:
        """Whether a local wall-clock time falls inside the window (start included, end not)."""
        if self.start < self.end:
            return self.start <= wall < self.end
        return wall >= self.start or wall < self.end

    def next_allowed(self, instant: datetime, tz: ZoneInfo) -> datetime:
        """INSTANT if it is outside the window in TZ, else the instant the window ends (aware UTC)."""
        instant = _aware_utc(instant, "instant")
        local = instant.astimezone(tz)
        wall = local.time()
        if not self.contains(wall):
            return instant
        day = local.date()
        if self.start > self.end and wall >= self.start:
            day += timedelta(days=1)
        return first_instant_at(datetime.combine(day, self.end), tz, not_before=instant)


def first_instant_at(wall: datetime, tz: ZoneInfo, *, not_before: datetime) -> datetime:
    """The first instant at or after NOT_BEFORE when TZ's clocks read WALL (naive), as aware UTC.

    A wall time repeated when clocks go back has two instants; one skipped when they go forward
    has none, and then the first valid instant after it is the moment the clocks jump.
    """
    instants = sorted(
        {
            utc
            for fold in (0, 1)
            if (utc := wall.replace(tzinfo=tz, fold=fold).astimezone(UTC)).astimezone(tz).replace(tzinfo=None)
            == wall
        }
    )
    later = [utc for utc in instants if utc >= not_before]
    return later[0] if later else max(_clocks_jump(wall, tz), not_before)


def _clocks_jump(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant the clocks jump over WALL, a local time that does not exist in TZ."""
    # PEP 495: in a gap, fold=0 reads WALL with the offset before the jump and fold=1 with the
    # one after, so the jump lies between the two readings. Offsets change on whole seconds.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    low, high = min(low, high), max(low, high)
    after = high.astimezone(tz).utcoffset()
    lo, hi = 0, int((high - low).total_seconds())
    while lo < hi:
        mid = (lo + hi) // 2
        if (low + timedelta(seconds=mid)).astimezone(tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid + 1
    return low + timedelta(seconds=lo)


def _aware_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} has no UTC offset: policy needs aware instants")
    return value.astimezone(UTC)

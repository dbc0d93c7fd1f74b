"""Durations as users write them: `30s`, `15m`, `2h`, `1d`, `1w`, and sums like `1h30m`."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
DURATION_RE = re.compile(r"^(?:\d+[smhdw])+$")

# The longest duration outreach takes anywhere (a rule's every, cooldown, delay, expires,
# goal_window, a `when` literal, a silence). Beyond a century nothing is meant, and keeping
# every offset this small keeps `now() ± duration` and a stored instant ± duration far inside
# the range of datetime (years 1 to 9999) and of the databases.
MAX_DURATION = timedelta(days=36525)
MAX_DURATION_TEXT = "36525d (100 years)"


def parse_duration(text: str) -> timedelta:
    """`1h30m` → timedelta(hours=1, minutes=30); ValueError with an example otherwise."""
    cleaned = str(text).strip()
    if not DURATION_RE.match(cleaned):
        raise ValueError(
            f"{_shown(text)} is not a duration: write a number and a unit (s, m, h, d, w), e.g. 15m, 2h, 1d"
        )
    seconds = 0
    for number, unit in _PART.findall(cleaned):
        # Twelve digits of weeks is already far past the limit; longer runs would make int()
        # slow (or refuse: Python caps int() at 4,300 digits).
        seconds += int(number) * UNITS[unit] if len(number) <= 12 else 10**13
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{_shown(text)} is too long: a duration is at most {MAX_DURATION_TEXT}")
    return timedelta(seconds=seconds)


def _shown(text: str) -> str:
    """TEXT quoted for a message, cut short when it is long."""
    text = str(text)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def format_duration(value: timedelta) -> str:
    """The shortest spelling of a duration, e.g. 90 minutes → `1h30m`."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in sorted(UNITS.items(), key=lambda kv: -kv[1]):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)

"""Durations as users write them: `30s`, `15m`, `2h`, `1d`, `1w`, and sums like `1h30m`."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
DURATION_RE = re.compile(r"^(?:\d+[smhdw])+$")


def parse_duration(text: str) -> timedelta:
    """`1h30m` → timedelta(hours=1, minutes=30); ValueError with an example otherwise."""
    cleaned = str(text).strip()
    if not DURATION_RE.match(cleaned):
        raise ValueError(
            f"{text!r} is not a duration: write a number and a unit (s, m, h, d, w), e.g. 15m, 2h, 1d"
        )
    return timedelta(seconds=sum(int(n) * UNITS[u] for n, u in _PART.findall(cleaned)))


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

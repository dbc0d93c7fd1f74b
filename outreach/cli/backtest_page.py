"""`outreach backtest --html FILE`: the replay as one self-contained page — a bar chart per rule
and day (inline SVG, no script, nothing fetched), the numbers under it, and the messages per
customer and week."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from jinja2 import Environment, select_autoescape

if TYPE_CHECKING:
    from outreach.backtest import BacktestResult, DayCounts

# What a bar is made of, bottom to top, and its colour.
SERIES = (
    ("sent by email", "#2f6fb2"),
    ("sent by SMS", "#53a653"),
    ("held back", "#e0a030"),
    ("expired", "#c0504d"),
)
WIDTH, HEIGHT, MARGIN = 720, 180, 36


@dataclass(frozen=True)
class _Bar:
    x: float
    width: float
    day: date
    parts: tuple[tuple[float, float, str, str, int], ...]  # (y, height, colour, series, count)


@dataclass(frozen=True)
class _Chart:
    rule: str
    bars: tuple[_Bar, ...]
    top: int
    days: tuple[DayCounts, ...]


def _values(d: DayCounts) -> tuple[int, ...]:
    return (d.sent.get("email", 0), d.sent.get("sms", 0), sum(d.held.values()), d.expired)


def _chart(rule: str, days: list[DayCounts], first: date, last: date) -> _Chart:
    span = (last - first).days + 1
    by_day = {d.day: d for d in days}
    top = max((sum(_values(d)) for d in days), default=0) or 1
    slot = (WIDTH - MARGIN) / span
    bars = []
    for i in range(span):
        day = first + timedelta(days=i)
        found = by_day.get(day)
        y = float(HEIGHT)
        parts = []
        for (series, colour), count in zip(SERIES, _values(found) if found else (0, 0, 0, 0), strict=True):
            height = (HEIGHT - 10) * count / top
            y -= height
            if count:
                parts.append((y, height, colour, series, count))
        bars.append(_Bar(MARGIN + i * slot + slot * 0.1, slot * 0.8, day, tuple(parts)))
    return _Chart(rule, tuple(bars), top, tuple(sorted(days, key=lambda d: d.day)))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>outreach backtest {{ r.start.date() }} – {{ r.end.date() }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 780px; color: #222; }
table { border-collapse: collapse; margin: .5em 0 2em; font-size: 13px; }
td, th { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.legend span { display: inline-block; margin-right: 1em; }
.legend i { display: inline-block; width: .9em; height: .9em; margin-right: .3em; vertical-align: -1px; }
.note { color: #8a5a00; }
</style></head><body>
<h1>What the rules would have done</h1>
<p>{{ r.ticks }} ticks every {{ every }} from {{ r.start.isoformat() }} to {{ r.end.isoformat() }},
replayed on a scratch copy: nothing was sent.
{% if r.forecast_from %}After {{ r.forecast_from.isoformat() }} this is a forecast on today's state.{% endif %}</p>
{% for rule, fields in r.approximate.items() %}
<p class="note">{{ rule }} reads {{ fields | join(", ") }}: before the earliest version outreach kept of a
record, these are taken from that version.</p>
{% endfor %}
<p class="legend">{% for name, colour in series %}<span><i style="background: {{ colour }}"></i>{{ name }}</span>{% endfor %}</p>
{% for c in charts %}
<h2>{{ c.rule }}</h2>
<svg width="{{ width }}" height="{{ height + 20 }}" role="img" aria-label="{{ c.rule }} per day">
<line x1="{{ margin }}" y1="{{ height }}" x2="{{ width }}" y2="{{ height }}" stroke="#999"/>
<text x="{{ margin - 4 }}" y="18" text-anchor="end" font-size="11">{{ c.top }}</text>
<text x="{{ margin - 4 }}" y="{{ height }}" text-anchor="end" font-size="11">0</text>
{% for b in c.bars %}{% for y, h, colour, name, count in b.parts %}
<rect x="{{ '%.1f' % b.x }}" y="{{ '%.1f' % y }}" width="{{ '%.1f' % b.width }}" height="{{ '%.1f' % h }}" fill="{{ colour }}"><title>{{ b.day }}: {{ count }} {{ name }}</title></rect>
{% endfor %}{% if loop.first or loop.last or b.day.day == 1 %}
<text x="{{ '%.1f' % (b.x + b.width / 2) }}" y="{{ height + 14 }}" text-anchor="middle" font-size="10">{{ b.day.strftime("%m-%d") }}</text>
{% endif %}{% endfor %}
</svg>
<table><tr><th>day</th><th>decided</th><th>email</th><th>SMS</th><th>held back</th><th>deferred</th><th>holdout</th><th>expired</th></tr>
{% for d in c.days %}<tr><td>{{ d.day }}</td><td>{{ d.decided }}</td><td>{{ d.sent.get("email", 0) }}</td><td>{{ d.sent.get("sms", 0) }}</td>
<td title="{% for why, n in d.held.items() %}{{ why }} {{ n }} {% endfor %}">{{ d.held.values() | sum }}</td><td>{{ d.deferred }}</td><td>{{ d.holdout }}</td><td>{{ d.expired }}</td></tr>
{% endfor %}</table>
{% endfor %}
<h2>Messages per customer and week</h2>
<table><tr><th>week</th>{% for n in counts %}<th>{{ n }}</th>{% endfor %}</tr>
{% for week, hist in r.tally.per_week.items() %}<tr><td>{{ week }}</td>{% for n in counts %}<td>{{ hist.get(n, 0) }}</td>{% endfor %}</tr>
{% endfor %}</table>
</body></html>
"""

_environment = Environment(autoescape=select_autoescape(default=True, default_for_string=True))


def backtest_page(result: BacktestResult) -> str:
    """RESULT as an HTML page."""
    first, last = result.start.date(), (result.end - timedelta(microseconds=1)).date()
    charts = [
        _chart(rule, [d for d in result.tally.days if d.rule == rule], first, last) for rule in result.rules
    ]
    most = max((n for hist in result.tally.per_week.values() for n in hist), default=0)
    return _environment.from_string(_PAGE).render(
        r=result,
        every=result.as_json()["every"],
        charts=charts,
        series=SERIES,
        counts=list(range(1, most + 1)),
        width=WIDTH,
        height=HEIGHT,
        margin=MARGIN,
    )

"""`outreach backtest`: what the rules would have done over a period, replayed on a scratch copy.

The replay runs the real tick (`tick.run_tick`: evaluate, decide, open tasks, measure goals,
dispatch) at every instant of the period, on a scratch SQLite database whose customer state is
put back, before each tick, to what it was at that instant. The real database is only read;
messages go to a scratch outbox and are thrown away.

State as of an instant:

- exact from the first time outreach stored a record: the versions an ingest or `POST /events`
  replaced are kept (`state.history`), each until the instant it was replaced;
- before that, the earliest version kept, reconstructed from the record's own time fields: an
  order exists from `placed_at` and is undelivered until `delivered_at` (a `delivered` status
  reads `shipped` before then), a checkout exists from `started_at` and is open until
  `completed_at`, a survey response exists from `responded_at`. Other fields (a customer's
  consent and time zone, an order's status otherwise, attributes, …) are taken from that
  earliest version: the result names the rules whose conditions read them (`approximate`).

The ledger starts as the real one held it before the period (contacts decided earlier count
for caps, cooldowns and dedupe), and suppressions are replayed at the instant they were made.
Not replayed: `pause` and silences (a backtest answers what the rules would do with sending on)
and a suppression lifted by START (it reads as never made). A period reaching past TODAY is a
forecast: the ticks after it run on today's state.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from outreach.app import App
from outreach.controls import apply_consent_changes
from outreach.durations import format_duration
from outreach.errors import InputError
from outreach.rules import expressions as e
from outreach.rules.loader import Rule
from outreach.settings import DatabaseSettings, EscalationSettings
from outreach.state import history, ingest, ledger
from outreach.state.db import make_engine
from outreach.state.models import STATE_TABLES
from outreach.state.types import JSONDocument, UTCDateTime
from outreach.vocabulary import State

# The field whose instant a record of each table comes into being (customers always exist).
CREATED = {"orders": "placed_at", "checkouts": "started_at", "survey_responses": "responded_at"}
# Fields a record's own instants give back exactly before its earliest kept version.
RECONSTRUCTED = {
    "customer": frozenset({"id"}),
    "order": frozenset(
        {"id", "customer_id", "placed_at", "delivered_at", "promised_at", "total", "currency"}
    ),
    "checkout": frozenset(
        {"id", "customer_id", "started_at", "completed_at", "cart_value", "currency", "items", "recovery_url"}
    ),
    "survey": frozenset({"id", "customer_id", "kind", "score", "comment", "responded_at"}),
}
# A ceiling on the ticks of one backtest: a year at 15 minutes is 35,040.
MAX_TICKS = 40_000

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DayCounts:
    """What one rule did on one day (UTC) of the replay."""

    day: date
    rule: str
    decided: int  # matches decided that day: new ones, and held ones decided again
    sent: Mapping[str, int]  # messages sent, by channel
    held: Mapping[str, int]  # decided that day and held back, by why: cap, cooldown, inhibition, consent
    deferred: int  # decided that day to go out later, at the end of quiet hours or after `delay`
    holdout: int
    expired: int  # not sent within the rule's `expires`, counted on the day it expired

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "rule": self.rule,
            "decided": self.decided,
            "sent": dict(self.sent),
            "held": dict(self.held),
            "deferred": self.deferred,
            "holdout": self.holdout,
            "expired": self.expired,
        }


@dataclass(frozen=True)
class LedgerTally:
    """A ledger's contacts over a period, per day and rule, and messages per customer and week."""

    days: tuple[DayCounts, ...]  # by day, then rule
    per_week: Mapping[str, Mapping[int, int]]  # ISO week ("2026-W47") → {messages: customers}

    def as_json(self) -> dict[str, Any]:
        return {
            "days": [d.as_json() for d in self.days],
            "messages_per_customer_week": {
                week: {str(n): count for n, count in sorted(hist.items())}
                for week, hist in self.per_week.items()
            },
        }


@dataclass(frozen=True)
class BacktestResult:
    start: datetime
    end: datetime
    every: timedelta
    rules: tuple[str, ...]
    ticks: int
    forecast_from: datetime | None  # TODAY when the period reaches past it
    approximate: Mapping[str, tuple[str, ...]]  # rule → fields read that reconstruction cannot give
    versions_used: int  # kept versions of records that fall in or before the period
    tally: LedgerTally

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "every": format_duration(self.every),
            "rules": list(self.rules),
            "ticks": self.ticks,
            "forecast_from": None if self.forecast_from is None else self.forecast_from.isoformat(),
            "approximate": {rule: list(fields) for rule, fields in self.approximate.items()},
            "versions_used": self.versions_used,
            **self.tally.as_json(),
        }


def backtest(
    app: App,
    start: datetime,
    end: datetime,
    *,
    today: datetime,
    every: timedelta | None = None,
    rules: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    """Replay ticks every EVERY (default: the shortest `every` of the rules) from START to END
    (ticks at START, START + EVERY, … before END) with RULES (default: the enabled ones); the
    real database is read, never written. TODAY is the present: later ticks are a forecast."""
    if end <= start:
        raise InputError(f"--to ({end.isoformat()}) must be after --from ({start.isoformat()})")
    rule_set = app.load_rules()
    chosen = [rule_set.get(name) for name in rules] if rules else [r for r in rule_set if r.enabled]
    if not chosen:
        raise InputError("no rule to replay: every rule is disabled (name them with --rules)")
    step = every if every is not None else min(rule.every for rule in chosen)
    if step <= timedelta(0):
        raise InputError("--every must be a positive duration, e.g. 15m")
    count = -(-(end - start) // step)
    if count > MAX_TICKS:
        raise InputError(
            f"{count:,} ticks from {start:%Y-%m-%d} to {end:%Y-%m-%d} every {format_duration(step)}:"
            f" at most {MAX_TICKS:,}; take a longer --every or a shorter period"
        )
    instants = [start + i * step for i in range(count)]
    with _Scratch(app) as scratch, app.engine.connect() as source:
        versions_used = scratch.load(source, start, min(end, today))
        for done, instant in enumerate(instants, 1):
            scratch.tick(chosen, instant)
            if progress is not None:
                progress(done, len(instants))
        with scratch.engine.connect() as connection:
            tally = tally_ledger(connection, start, end, [r.name for r in chosen])
    return BacktestResult(
        start=start,
        end=end,
        every=step,
        rules=tuple(r.name for r in chosen),
        ticks=len(instants),
        forecast_from=today if end > today else None,
        approximate={r.name: fields for r in chosen if (fields := unreconstructed_fields(r))},
        versions_used=versions_used,
        tally=tally,
    )


def unreconstructed_fields(rule: Rule) -> tuple[str, ...]:
    """The fields RULE's `when` and `goal` read that are not given back exactly before a record's
    earliest kept version (`entity.field`, sorted)."""
    read: set[tuple[str, str]] = set()
    for condition in (rule.condition, rule.goal_condition):
        if condition is not None:
            read |= set(_fields_read(condition))
    return tuple(
        sorted(
            f"{entity}.{name}" for entity, name in read if name not in RECONSTRUCTED.get(entity, frozenset())
        )
    )


def _fields_read(expr: Any) -> Iterator[tuple[str, str]]:
    if isinstance(expr, (e.Field, e.JsonField)):
        yield expr.entity, expr.name
        return
    if dataclasses.is_dataclass(expr):
        for field in dataclasses.fields(expr):
            value = getattr(expr, field.name)
            values = value if isinstance(value, tuple) else (value,)
            for item in values:
                if isinstance(item, e.Expr):
                    yield from _fields_read(item)


# -- the tally, of a scratch ledger or a real one -------------------------------------------


def held_reason(entry: ledger.LedgerEntry) -> str:
    """Why a held-back contact was held: the policy step that stopped it (cap, cooldown,
    inhibition, …), `consent` when no channel could reach the customer."""
    if entry.state == State.SUPPRESSED:
        return "consent"
    if entry.steps:
        last = entry.steps[-1]
        return str(last[0] if isinstance(last, list) and last else last)
    return "other"


def tally_ledger(connection: Connection, start: datetime, end: datetime, rules: Sequence[str]) -> LedgerTally:
    """RULES' contacts in [START, END) per UTC day: decided (and of those: held back by why,
    deferred, holdout), sent by channel, expired; and per ISO week how many customers got 1, 2, 3…
    messages. The same for a backtest's scratch ledger and the real one, so the two compare."""
    wanted = set(rules)
    cells: dict[tuple[date, str], dict[str, Any]] = {}

    def cell(day: date, rule: str) -> dict[str, Any]:
        return cells.setdefault(
            (day, rule),
            {"decided": 0, "sent": Counter(), "held": Counter(), "deferred": 0, "holdout": 0, "expired": 0},
        )

    per_customer_week: Counter[tuple[str, str]] = Counter()
    for entry in ledger.entries_between(connection, start, end):
        if entry.rule not in wanted:
            continue
        if start <= entry.decided_at < end:
            counts = cell(entry.decided_at.date(), entry.rule)
            counts["decided"] += 1
            if entry.state in (State.SKIPPED, State.SUPPRESSED):
                counts["held"][held_reason(entry)] += 1
            elif entry.state == State.HOLDOUT:
                counts["holdout"] += 1
            elif entry.send_at is not None and entry.send_at > entry.decided_at:
                counts["deferred"] += 1
        if entry.sent_at is not None and start <= entry.sent_at < end and entry.state == State.SENT:
            cell(entry.sent_at.date(), entry.rule)["sent"][entry.channel or "?"] += 1
            iso = entry.sent_at.isocalendar()
            per_customer_week[(entry.customer_id, f"{iso.year}-W{iso.week:02d}")] += 1
        if entry.state == State.EXPIRED and start <= entry.updated_at < end:
            cell(entry.updated_at.date(), entry.rule)["expired"] += 1
    per_week: dict[str, Counter[int]] = defaultdict(Counter)
    for (_customer, week), messages in per_customer_week.items():
        per_week[week][messages] += 1
    days = tuple(
        DayCounts(
            day,
            rule,
            c["decided"],
            dict(c["sent"]),
            dict(c["held"]),
            c["deferred"],
            c["holdout"],
            c["expired"],
        )
        for (day, rule), c in sorted(cells.items())
    )
    return LedgerTally(days, {week: dict(hist) for week, hist in sorted(per_week.items())})


# -- the scratch copy -------------------------------------------------------------------------

_events_metadata = sa.MetaData()
# The changes to replay, each at its instant: a version of a record becoming current, or a
# suppression being made. Only in the scratch database.
_events = sa.Table(
    "backtest_events",
    _events_metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("rank", sa.Integer, nullable=False),  # customers first, then the tables that name them
    sa.Column("table_name", sa.String, nullable=False),
    sa.Column("data", JSONDocument, nullable=False),
)
_SUPPRESSIONS = "suppressions"
_RANK = {t.name: i for i, t in enumerate(STATE_TABLES)} | {_SUPPRESSIONS: len(STATE_TABLES)}
_CHUNK = 5000


class _Scratch:
    """A scratch SQLite database, outbox and app for one backtest; removed afterwards."""

    def __init__(self, app: App) -> None:
        self.real = app

    def __enter__(self) -> _Scratch:
        from outreach.rendering import Renderer
        from outreach.tick import make_dispatcher

        self._folder = tempfile.TemporaryDirectory(prefix="outreach-backtest-")
        root = Path(self._folder.name)
        url = f"sqlite:///{root / 'backtest.db'}"
        self.engine: Engine = make_engine(url)  # created and migrated
        _events_metadata.create_all(self.engine)
        base = self.real.settings
        settings = base.model_copy(
            update={
                "database": DatabaseSettings(url=url),
                "paths": base.paths.model_copy(update={"outbox": str(root / "outbox.jsonl")}),
                # Never a provider, never a webhook: messages go to the scratch outbox.
                "delivery": base.delivery.model_copy(update={"mode": "outbox"}),
                "escalation": EscalationSettings(),
            }
        )
        self.app = App(settings, _engine=self.engine)
        rule_set = self.app.load_rules()
        renderer = Renderer(settings)
        self.dispatcher = make_dispatcher(self.app, lambda: rule_set, lambda: renderer)
        self.applied_until: datetime | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispatcher.close()
        self.engine.dispose()
        self._folder.cleanup()

    def load(self, source: Connection, start: datetime, known_until: datetime) -> int:
        """State as of START into the scratch tables, every later change up to KNOWN_UTIL as an
        event; the real ledger before START. How many kept versions were read."""
        used = 0
        with self.engine.begin() as target:
            for table in STATE_TABLES:
                kept = history.versions(source, table.name)
                used += sum(len(v) for v in kept.values())
                initial: list[dict[str, Any]] = []
                later: list[dict[str, Any]] = []
                for row in history.current_rows(source, table.name):
                    for at, version in timeline(table.name, kept.get(row["id"], []), row):
                        if at is None or at <= start:
                            if initial and initial[-1]["id"] == version["id"]:
                                initial[-1] = version
                            else:
                                initial.append(version)
                        elif at <= known_until:
                            later.append(_event(at, table.name, history.encode(version)))
                    if len(initial) >= _CHUNK:
                        ingest.upsert_rows(target, table.name, initial)
                        initial.clear()
                    if len(later) >= _CHUNK:
                        target.execute(sa.insert(_events), later)
                        later.clear()
                if initial:
                    ingest.upsert_rows(target, table.name, initial)
                if later:
                    target.execute(sa.insert(_events), later)
            ledger.copy_before(source, target, start)
            made = ledger.suppressions_between(source, start, known_until)
            if made:
                target.execute(
                    sa.insert(_events),
                    [_event(row["created_at"], _SUPPRESSIONS, history.encode(row)) for row in made],
                )
        self.applied_until = start
        return used

    def tick(self, rules: Sequence[Rule], now: datetime) -> None:
        from outreach.tick import run_tick

        if self.apply_until(now):
            apply_consent_changes(self.app, now)
        run_tick(self.app, rules, now, dispatcher=self.dispatcher)

    def apply_until(self, now: datetime) -> bool:
        """Apply the changes made after the last instant applied, up to NOW; whether a customer changed."""
        assert self.applied_until is not None
        query = (
            sa.select(_events.c.table_name, _events.c.data)
            .where(_events.c.at > self.applied_until, _events.c.at <= now)
            .order_by(_events.c.at, _events.c.rank, _events.c.seq)
        )
        customers_changed = False
        with self.engine.begin() as connection:
            run: list[dict[str, Any]] = []
            run_table = ""
            for table_name, data in connection.execute(query).all():
                if table_name != run_table and run:
                    _write(connection, run_table, run, now)
                    run = []
                run_table = table_name
                run.append(data)
                customers_changed = customers_changed or table_name == "customers"
            if run:
                _write(connection, run_table, run, now)
        self.applied_until = now
        return customers_changed


def _event(at: datetime, table: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"at": at, "rank": _RANK[table], "table_name": table, "data": data}


def _write(connection: Connection, table: str, encoded: Sequence[Mapping[str, Any]], at: datetime) -> None:
    if table == _SUPPRESSIONS:
        for data in encoded:
            ledger.add_suppression_row(
                connection, dict(data) | {"created_at": datetime.fromisoformat(data["created_at"])}
            )
        return
    rows = [history.decode(table, data) for data in encoded]
    ingest.store_rows(connection, table, rows, at, keep_versions=False)


def timeline(
    table: str, kept: Sequence[tuple[datetime, dict[str, Any]]], current: dict[str, Any]
) -> list[tuple[datetime | None, dict[str, Any]]]:
    """A record's versions, each from the instant it became current (None: since before
    anything is known): the earliest reconstructed from its own time fields, then each kept
    version from the instant the one before it was replaced, then CURRENT."""
    rows = [version for _at, version in kept] + [current]
    until = kept[0][0] if kept else None
    changes = _reconstructed(table, rows[0], until)
    for (replaced_at, _old), row in zip(kept, rows[1:], strict=True):
        changes.append((replaced_at, row))
    return changes


def _reconstructed(
    table: str, earliest: dict[str, Any], until: datetime | None
) -> list[tuple[datetime | None, dict[str, Any]]]:
    """EARLIEST over the time before UNTIL (None: for ever): from its creation instant, and
    before its delivery or completion without it."""
    created_field = CREATED.get(table)
    created = earliest.get(created_field) if created_field else None

    def before(at: datetime | None) -> bool:
        return at is not None and (until is None or at < until) and (created is None or at > created)

    ended_field = {"orders": "delivered_at", "checkouts": "completed_at"}.get(table)
    ended = earliest.get(ended_field) if ended_field else None
    if not before(ended):
        return [(created if created is not None and (until is None or created < until) else None, earliest)]
    assert ended_field is not None
    earlier = dict(earliest, **{ended_field: None})
    if table == "orders" and earliest.get("status") == "delivered":
        earlier["status"] = "shipped"
    return [(created, earlier), (ended, earliest)]

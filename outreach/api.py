"""The Python API: outreach inside another scheduler (Airflow, Celery, cron in Python), a web
application or a test suite — the operations of the `outreach` command, as typed values.

    from datetime import UTC, datetime
    from outreach import Outreach

    with Outreach.open("settings.toml") as outreach:
        outreach.ingest("customers.jsonl", "orders.jsonl")
        report = outreach.tick(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
        print(report.decided.decisions, report.dispatch)

Time is always an argument: `tick`, `preview` and `explain` take the instant they work at, an
aware datetime, and the HTTP app takes a clock. Nothing here reads the wall clock unless told to.
Errors are outreach's own (`outreach.errors`): `RulesError`, `IngestError`, … each with the
problems it found and where.

This module imports the heavy parts of outreach (SQLAlchemy, the rule compiler, Jinja2) on first
use of a method, so `import outreach` stays cheap for the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

from outreach.clock import utcnow
from outreach.errors import IngestError, InputError, OutreachError, Problem, RulesError
from outreach.logs import configure as configure_logging
from outreach.settings import Settings, load_settings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from outreach.app import App
    from outreach.backtest import BacktestResult
    from outreach.checks import Checked
    from outreach.feedback import Secrets
    from outreach.preview import CustomerExplanation, PreviewResult, TickPreview
    from outreach.rules.loader import RuleSet
    from outreach.state.ingest import FileReport
    from outreach.summary import RunSummary
    from outreach.tick import TickReport

__all__ = [
    "IngestError",
    "InputError",
    "Outreach",
    "OutreachError",
    "Problem",
    "RulesError",
    "Settings",
    "configure_logging",
    "load_settings",
]


def _aware(now: datetime, name: str = "now") -> datetime:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, e.g. datetime(2026, 11, 24, 9, 0, tzinfo=UTC)")
    return now.astimezone(UTC)


class Outreach:
    """One outreach deployment: its settings, database, rules and templates.

    Open it with `Outreach.open(...)`; close it (or use it as a context manager) to release the
    database connections. Rules and templates are read from their folders at each call, so an
    edit is picked up without reopening. Safe to share between threads, as the daemon does.
    """

    def __init__(self, settings: Settings) -> None:
        from outreach.app import App

        self._app: App = App(settings)

    @classmethod
    def open(cls, settings: str | os.PathLike[str] | Settings | None = None, **overrides: Any) -> Outreach:
        """Open the deployment a settings file describes (default: $OUTREACH_SETTINGS, else
        ./settings.toml if present, else the built-in defaults), with the environment's
        `OUTREACH_SECTION__KEY` overrides, then OVERRIDES (sections as mappings, e.g.
        `database={"url": "sqlite:///:memory:"}`). Or pass a Settings object as it is.

        Relative paths in the file are taken from the file's folder. ConfigError if the file is
        missing or wrong.
        """
        if isinstance(settings, Settings):
            if overrides:
                raise TypeError("overrides go with a settings file, not with a Settings object")
            return cls(settings)
        return cls(load_settings(settings, **overrides))

    @property
    def settings(self) -> Settings:
        return self._app.settings

    # -- rules and templates ----------------------------------------------------------------
    def rules(self) -> RuleSet:
        """The rules of the rules folder; RulesError listing every problem if any."""
        return self._app.load_rules()

    def check(self) -> Checked:
        """Every problem of the rules files and templates, as `outreach check` finds them
        (`.ok` is false when any is an error)."""
        from outreach.checks import check_all

        return check_all(self._app)

    # -- customer state ---------------------------------------------------------------------
    def ingest(
        self, *paths: str | os.PathLike[str], table: str | None = None, now: datetime | None = None
    ) -> list[FileReport]:
        """Load JSONL or CSV files as `outreach ingest` does: upserted by id, customers files
        first, each file whole or not at all. Returns a report per file; IngestError listing every
        bad line of every rejected file (the other files are loaded). Contacts waiting on a
        channel whose consent a customers file withdrew are re-routed, and the records it
        changes keep their earlier versions (for `backtest`), as of NOW (default: the current
        time)."""
        from outreach.state.ingest import TABLES, ingest_files, rejection

        if table is not None and table not in TABLES:
            raise InputError(f"{table!r} is not a table: use one of {', '.join(TABLES)}")
        at = None if now is None else _aware(now)
        reports = ingest_files(self._app.engine, [str(p) for p in paths], table=table, now=at)
        if any(r.table == "customers" and not r.rejected for r in reports):
            self._consent_changed(now)
        error = rejection(reports)
        if error is not None:
            raise error
        return reports

    def ingest_records(
        self, table: str, records: Iterable[Mapping[str, Any]], *, now: datetime | None = None
    ) -> int:
        """Load in-memory records (as `POST /events` takes them: the fields of `outreach ingest`,
        values as JSON would give them) into TABLE, all or nothing. Returns how many were loaded;
        IngestError naming every bad record (`records[3].phone: …`) and nothing written. NOW
        (default: the current time) is when they arrived, as in `ingest`."""
        from outreach.events import EventsBatch, load_events
        from outreach.state.ingest import TABLES, Numbered

        if table not in TABLES:
            raise InputError(f"{table!r} is not a table: use one of {', '.join(TABLES)}")
        numbered: list[Numbered] = []
        for index, record in enumerate(records):
            if isinstance(record, Mapping):
                numbered.append((index, record))
            else:
                numbered.append((index, Problem("records", index, None, "a record must be a mapping")))
        at = None if now is None else _aware(now)
        problems = load_events(self._app.engine, EventsBatch(table, tuple(numbered), "records"), at)
        if problems:
            raise IngestError("\n".join(problems))
        if table == "customers":
            self._consent_changed(now)
        return len(numbered)

    def _consent_changed(self, now: datetime | None) -> None:
        from outreach.controls import apply_consent_changes

        apply_consent_changes(self._app, utcnow() if now is None else _aware(now))

    # -- one tick -----------------------------------------------------------------------------
    def tick(self, now: datetime, *, rules: Sequence[str] | None = None, send: bool = True) -> TickReport:
        """One tick at NOW, as `outreach run --once --now NOW`: evaluate every enabled rule (or the
        RULES named), record the decisions, open tasks, measure goals, then send what is due at
        NOW through the configured channel (unless SEND is false: then decisions are recorded and
        nothing leaves). Returns what it did (outreach.tick.TickReport)."""
        from outreach.rendering import Renderer
        from outreach.tick import make_dispatcher, run_tick

        at = _aware(now)
        rule_set = self._app.load_rules()
        ticking = (
            [rule_set.get(name) for name in rules]
            if rules is not None
            else [rule for rule in rule_set if rule.enabled]
        )
        if not send:
            return run_tick(self._app, ticking, at)
        renderer = Renderer(self._app.settings)
        dispatcher = make_dispatcher(self._app, lambda: rule_set, lambda: renderer)
        try:
            return run_tick(self._app, ticking, at, dispatcher=dispatcher)
        finally:
            dispatcher.close()

    def summary(self, report: TickReport) -> RunSummary:
        """REPORT as `outreach run --once` prints it: each contact's outcome (sent, deferred, held,
        skipped: cap, …) and the counts per rule, with the pause and silences at its instant."""
        from outreach.summary import summary_of

        return summary_of(self._app, report)

    # -- what would happen, and why -------------------------------------------------------------
    def preview(self, rule: str, now: datetime, *, render: bool = False) -> PreviewResult:
        """Who RULE would contact at NOW, on which channel, and why (`outreach preview`); writes
        nothing. With RENDER, each message as it would be sent."""
        from outreach.preview import preview_rule

        return preview_rule(self._app, rule, _aware(now), render=render)

    def preview_tick(self, now: datetime, *, render: bool = False) -> TickPreview:
        """The whole tick at NOW (`outreach preview --all`): every enabled rule's matches decided
        together, caps and priorities between rules, exactly as `tick(NOW)` would decide them;
        writes nothing."""
        from outreach.preview import preview_tick

        return preview_tick(self._app, _aware(now), render=render)

    def explain(self, customer_id: str, now: datetime) -> CustomerExplanation:
        """For every rule, why the customer would or would not be contacted at NOW (`outreach
        explain`): failing clauses, each policy step, competing rules, pause and silences."""
        from outreach.preview import explain_customer

        return explain_customer(self._app, customer_id, _aware(now))

    def backtest(
        self,
        start: datetime,
        end: datetime,
        *,
        every: timedelta | None = None,
        rules: Sequence[str] | None = None,
        today: datetime | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> BacktestResult:
        """Replay ticks every EVERY (default: the rules' shortest `every`) from START to END on a
        scratch copy (`outreach backtest`): the database is read, never written, and nothing is
        sent. State at each tick is what the kept versions of records say, reconstructed from
        their own instants before the earliest. TODAY (default: the current time) is the
        present: the ticks after it are a forecast. PROGRESS is called with (ticks done, ticks)."""
        from outreach.backtest import backtest

        return backtest(
            self._app,
            _aware(start, "start"),
            _aware(end, "end"),
            today=utcnow() if today is None else _aware(today, "today"),
            every=every,
            rules=rules,
            progress=progress,
        )

    # -- the daemon's HTTP side -------------------------------------------------------------------
    def http_app(
        self, *, clock: Callable[[], datetime] = utcnow, secrets: Secrets | None = None
    ) -> Starlette:
        """The daemon's HTTP endpoints as an ASGI app to mount or test (`starlette.testclient`):
        POST /events, the Twilio and SendGrid webhooks, GET /healthz (the database answers),
        GET /metrics. CLOCK stamps what the requests record; SECRETS default to the environment's
        (OUTREACH_EVENTS_TOKEN, TWILIO_AUTH_TOKEN, SENDGRID_WEBHOOK_PUBLIC_KEY)."""
        from outreach.daemon.http import Health, inbound_from_settings, make_app
        from outreach.daemon.metrics import Metrics
        from outreach.state import ledger
        from outreach.state.db import reachable

        engine = self._app.engine

        def health() -> Health:
            ok = reachable(engine)
            return Health(ok, {"database_reachable": ok})

        def queue_depth() -> int:
            with engine.connect() as connection:
                return ledger.queue_depth(connection, clock())

        def rules() -> RuleSet | None:
            try:
                return self._app.load_rules()
            except RulesError:
                return None  # waiting contacts are held back, decided again once the rules load

        inbound = inbound_from_settings(engine, self._app.settings, secrets=secrets, clock=clock, rules=rules)
        return make_app(health, Metrics(queue_depth=queue_depth), inbound)

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the database connections."""
        self._app.close()

    def __enter__(self) -> Outreach:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outreach(database={self._app.settings.database.url!r}, rules={str(self._app.rules_dir)!r})"

"""The `outreach` command: arguments in, exit code out. Holds no logic of its own.

Exit codes: 0 success, 1 the input is wrong (the message says where), 2 usage error.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click
from click.shell_completion import CompletionItem
from rich.console import Console

from outreach import __version__
from outreach.clock import parse_instant, utcnow
from outreach.errors import OutreachError
from outreach.settings import Settings, load_settings

if TYPE_CHECKING:
    from outreach.app import App

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def handle_errors(func: F) -> F:
    """Turn outreach's errors into a message on stderr and exit code 1.

    A database that is locked past the busy timeout, or unreachable, is one of them: the
    driver's error is translated (without its SQL or parameters) rather than shown as a traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OutreachError as exc:
            err_console.print(str(exc), markup=False, soft_wrap=True)
            sys.exit(1)
        except Exception as exc:
            translated = _database_error(exc)
            if translated is None:
                raise
            err_console.print(str(translated), markup=False, soft_wrap=True)
            sys.exit(1)

    return cast(F, wrapper)


def _database_error(exc: Exception) -> OutreachError | None:
    if "sqlalchemy" not in sys.modules:  # nothing touched a database
        return None
    from outreach.state.db import unavailable

    ctx = click.get_current_context(silent=True)
    obj = ctx.obj if ctx is not None and isinstance(ctx.obj, dict) else {}
    settings = obj.get("settings")
    return unavailable(exc, settings.database_url if isinstance(settings, Settings) else None)


def _instant(ctx: click.Context, param: click.Parameter, value: str | datetime | None) -> datetime | None:
    """An instant option (ISO 8601 with an offset); a bad one is a usage error (exit 2)."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _duration(ctx: click.Context, param: click.Parameter, value: str | timedelta) -> timedelta:
    """A duration option (`7d`, `1h30m`); a bad one is a usage error (exit 2)."""
    if isinstance(value, timedelta):
        return value
    from outreach.durations import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _optional_duration(
    ctx: click.Context, param: click.Parameter, value: str | timedelta | None
) -> timedelta | None:
    return None if value is None else _duration(ctx, param, value)


def _rule_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of a RULE argument: the names in the rules files, quietly nothing when
    the settings or the rules cannot be read (a completion must never print an error)."""
    try:
        from outreach.app import App

        settings = load_settings(ctx.find_root().params.get("settings_path"))
        rules, _problems = App(settings).check_rules()
        return [
            CompletionItem(rule.name, help=rule.description or None)
            for rule in rules
            if rule.name.startswith(incomplete)
        ]
    except Exception:  # noqa: BLE001 - whatever is wrong shows in `outreach check`, not in a completion
        return []


def settings_of(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings(obj.get("settings_path"))
    settings: Settings = obj["settings"]
    return settings


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, ensure_ascii=False, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="outreach", message="%(prog)s %(version)s")
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False),
    envvar="OUTREACH_SETTINGS",
    help="settings.toml to read (default: ./settings.toml if present).",
)
@click.pass_context
def cli(ctx: click.Context, settings_path: str | None) -> None:
    """Proactive outreach: rules over customer state → templated email and SMS."""
    from outreach.logs import configure

    # Commands print their own summaries; the daemon (`run` without --once) logs every event.
    configure(os.environ.get("OUTREACH_LOG_LEVEL", "warning"))
    ctx.ensure_object(dict)["settings_path"] = settings_path


@cli.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.pass_context
@handle_errors
def db_upgrade(ctx: click.Context) -> None:
    """Create or migrate the database schema to this version of outreach."""
    from outreach.state.db import make_engine
    from outreach.state.migrate import current_revision, upgrade

    settings = settings_of(ctx)
    engine = make_engine(
        settings.database_url, migrate_sqlite=False, busy_timeout=settings.database.busy_timeout
    )
    upgrade(engine)
    click.echo(f"database at revision {current_revision(engine)}")


def app_of(ctx: click.Context) -> App:
    from outreach.app import App

    obj = ctx.ensure_object(dict)
    if "app" not in obj:
        obj["app"] = App(settings_of(ctx))
        ctx.call_on_close(obj["app"].close)
    app: App = obj["app"]
    return app


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def check(ctx: click.Context, as_json: bool) -> None:
    """Validate every rules file and template; list every problem with its place."""
    from outreach.checks import check_all

    result = check_all(app_of(ctx))
    if as_json:
        emit_json(result.as_json())
    else:
        from outreach.cli.render import print_check

        print_check(out_console, err_console, result)
    if not result.ok:
        sys.exit(1)


@cli.command()
@click.argument("rule", required=False, shell_complete=_rule_names)
@click.option(
    "--all",
    "whole_tick",
    is_flag=True,
    help="Every enabled rule at once, decided together as `run --once --now` would (instead of RULE).",
)
@click.option(
    "--now",
    "now",
    callback=_instant,
    metavar="TIME",
    help="Evaluate at this instant (ISO 8601 with offset); default: the current time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--render", is_flag=True, help="Also render each message (subject, text, html, sms, segments).")
@click.pass_context
@handle_errors
def preview(
    ctx: click.Context, rule: str | None, whole_tick: bool, now: datetime | None, as_json: bool, render: bool
) -> None:
    """Show who RULE would contact at an instant, and why; changes nothing.

    With --all instead of RULE: a dry run of the whole tick, every enabled rule competing for the
    same caps, exactly what `run --once --now TIME` would decide.
    """
    if (rule is None) == (not whole_tick):
        raise click.UsageError("give a RULE or --all" if rule is None else "give a RULE or --all, not both")
    from outreach.cli.render import print_preview, print_tick_preview
    from outreach.preview import preview_rule, preview_tick

    app = app_of(ctx)
    at = now or utcnow()
    if rule is not None:
        result = preview_rule(app, rule, at, render=render)
        if as_json:
            emit_json(result.as_json())
        else:
            print_preview(out_console, result)
        return
    with _count_progress("deciding") as progress:
        tick = preview_tick(app, at, render=render, progress=progress)
    if as_json:
        emit_json(tick.as_json())
    else:
        print_tick_preview(out_console, tick)


def _known_table(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from outreach.state.ingest import TABLES

    if value is not None and value not in TABLES:
        raise click.BadParameter(f"{value!r} is not a table: use one of {', '.join(TABLES)}")
    return value


@contextlib.contextmanager
def _file_progress() -> Iterator[Callable[[str], Callable[[int, int], None]] | None]:
    """A progress bar per file on a terminal; nothing when stderr is a pipe or a file."""
    if not err_console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console) as bars:

        def for_file(path: str) -> Callable[[int, int], None]:
            task = bars.add_task(path, total=None)
            return lambda done, size: bars.update(task, completed=done, total=size)

        yield for_file


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--table",
    callback=_known_table,
    help="Load every FILE into this table (default: the table a file is named after, e.g. orders.jsonl).",
)
@click.option(
    "--max-errors",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="List at most this many problems per file (0: all); bad lines are always counted.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def ingest(
    ctx: click.Context, files: tuple[str, ...], table: str | None, max_errors: int, as_json: bool
) -> None:
    """Load customer state from JSONL or CSV FILES, upserting by id.

    Customers files are loaded first. Each file is loaded whole or not at all: a file with any
    bad line loads nothing, and every bad line is listed as FILE:LINE: problem (exit code 1).
    """
    from outreach.state.ingest import ingest_files, rejection

    with _file_progress() as progress:
        reports = ingest_files(
            app_of(ctx).engine, files, table=table, max_problems=max_errors, progress=progress
        )
    if not as_json:
        for report in reports:
            if not report.rejected:
                click.echo(report.summary())
    changed = 0
    if any(report.table == "customers" and not report.rejected for report in reports):
        from outreach.controls import apply_consent_changes

        changed = apply_consent_changes(app_of(ctx), utcnow())
        if changed and not as_json:
            click.echo(f"{changed} waiting contact(s) moved to another channel or held back: consent changed")
    if as_json:
        from outreach.checks import problem_json

        emit_json(
            {
                "files": [
                    {
                        "path": r.path,
                        "table": r.table,
                        "loaded": not r.rejected,
                        "records": r.records,
                        "bad_lines": r.bad_lines,
                        "problems": [problem_json(p) for p in r.problems],
                    }
                    for r in reports
                ],
                "consent_changed": changed,
            }
        )
        if any(r.rejected for r in reports):
            sys.exit(1)
        return
    error = rejection(reports)
    if error is not None:
        raise error


@cli.command()
@click.argument("customer_id")
@click.option(
    "--now", "now", callback=_instant, metavar="TIME", help="Explain at this instant (ISO 8601 with offset)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def explain(ctx: click.Context, customer_id: str, now: datetime | None, as_json: bool) -> None:
    """For every rule, why CUSTOMER_ID would or would not be contacted: the clauses of `when`
    that fail, each policy step, the other rules competing in the same tick, pause and silences."""
    from outreach.cli.render import print_explain
    from outreach.preview import explain_customer

    report = explain_customer(app_of(ctx), customer_id, now or utcnow())
    if as_json:
        emit_json(report.as_json())
    else:
        print_explain(out_console, report)


@cli.command()
@click.option("--once", is_flag=True, help="Do one tick (evaluate every rule, send what is due) and exit.")
@click.option(
    "--now", "now", callback=_instant, metavar="TIME", help="With --once: the tick's instant (default: now)."
)
@click.option("--rows", is_flag=True, help="With --once: list every contact with its outcome and reason.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print one JSON document.")
@click.pass_context
@handle_errors
def run(ctx: click.Context, once: bool, now: datetime | None, rows: bool, as_json: bool) -> None:
    """Evaluate rules on their cadence and send due contacts (the daemon); --once: one tick.

    `run --once` prints the contacts of the tick counted by rule and outcome (sent, deferred,
    held, skipped: cap, suppressed, holdout, …); --rows lists each one with its reason.
    """
    if not once:
        for flag, given in (("--now", now is not None), ("--rows", rows), ("--json", as_json)):
            if given:
                raise click.UsageError(f"{flag} goes with --once")
    app = app_of(ctx)
    if once:
        from outreach.summary import summary_of
        from outreach.tick import run_once

        summary = summary_of(app, run_once(app, now))
        if as_json:
            emit_json(summary.as_json())
        else:
            from outreach.cli.render import print_summary

            print_summary(out_console, summary, rows=rows)
        return
    from outreach.daemon import serve
    from outreach.logs import configure

    configure(os.environ.get("OUTREACH_LOG_LEVEL", "info"))
    sys.exit(serve(app))


@cli.command()
@click.option(
    "--now",
    "now",
    callback=_instant,
    metavar="TIME",
    help="The demo's instant (default: 12:00 UTC today, daytime for most sample customers).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, now: datetime | None, as_json: bool) -> None:
    """Load the bundled sample customers into a fresh var/demo.db and run one tick through the outbox."""
    from outreach.demo import run_demo

    at = now or utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    if not as_json:
        out_console.print(
            f"demo at {at.isoformat()} on var/demo.db (bundled sample customers, outbox channel)",
            markup=False,
            soft_wrap=True,
        )
    summary, outbox = run_demo(settings_of(ctx), at)
    if as_json:
        emit_json({**summary.as_json(), "outbox": str(outbox)})
        return
    from outreach.cli.render import print_summary

    # The sample is small: every contact is listed, with why it was or was not sent.
    print_summary(out_console, summary, rows=True)
    out_console.print(f"\nmessages written to {outbox}", markup=False, soft_wrap=True)


@cli.command()
@click.option("--reason", default="", help="Why sending is paused (shown by report and explain).")
@click.pass_context
@handle_errors
def pause(ctx: click.Context, reason: str) -> None:
    """Stop all sending at once (matches are still recorded) until `outreach resume`."""
    from outreach.controls import pause as do_pause

    do_pause(app_of(ctx), reason, utcnow())
    click.echo("paused: no message will be sent until `outreach resume`")


@cli.command()
@click.pass_context
@handle_errors
def resume(ctx: click.Context) -> None:
    """Resume sending after `outreach pause`."""
    from outreach.controls import resume as do_resume

    click.echo("resumed" if do_resume(app_of(ctx)) else "was not paused")


@cli.command()
@click.argument("rule", shell_complete=_rule_names)
@click.option(
    "--for",
    "duration",
    required=True,
    callback=_duration,
    metavar="DURATION",
    help="How long, e.g. 6h or 2d.",
)
@click.option("--reason", required=True, help="Why, e.g. a carrier outage or a campaign freeze.")
@click.pass_context
@handle_errors
def silence(ctx: click.Context, rule: str, duration: timedelta, reason: str) -> None:
    """Hold RULE's messages for a while, with a recorded reason (`outreach unsilence RULE` lifts it)."""
    from outreach.controls import silence as do_silence

    until = do_silence(app_of(ctx), rule, duration, reason, utcnow())
    click.echo(f"{rule} silenced until {until.isoformat()}: {reason}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def silences(ctx: click.Context, as_json: bool) -> None:
    """List the silences in force (rule, until, reason) and the pause, if any."""
    from outreach.controls import pause_reason
    from outreach.controls import silences as silences_at

    app, now = app_of(ctx), utcnow()
    found, paused = silences_at(app, now), pause_reason(app, now)
    if as_json:
        emit_json(
            {
                "now": now.isoformat(),
                "paused": paused is not None,
                "pause_reason": paused,
                "silences": [s.as_json() for s in found],
            }
        )
        return
    from outreach.cli.render import print_silences

    print_silences(out_console, paused, found)


@cli.command()
@click.argument("rule", shell_complete=_rule_names)
@click.pass_context
@handle_errors
def unsilence(ctx: click.Context, rule: str) -> None:
    """Lift RULE's silence now: its waiting messages go out at the next dispatch."""
    from outreach.controls import unsilence as do_unsilence

    if do_unsilence(app_of(ctx), rule, utcnow()):
        click.echo(f"{rule}: silence lifted")
    else:
        click.echo(f"{rule} was not silenced")


@cli.group(invoke_without_command=True)
@click.option(
    "--status",
    type=click.Choice(["open", "closed", "all"]),
    default="open",
    show_default=True,
    help="Which tasks to list.",
)
@click.option("--all", "show_all", is_flag=True, hidden=True, help="Same as --status all.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def tasks(ctx: click.Context, status: str, show_all: bool, as_json: bool) -> None:
    """List tasks opened for a person by rules with `escalate: true` (`tasks close ID` closes one)."""
    if ctx.invoked_subcommand is not None:
        return
    from outreach.cli.render import print_tasks, task_json
    from outreach.controls import list_tasks

    found = list_tasks(app_of(ctx), "all" if show_all else status)
    if as_json:
        emit_json({"status": "all" if show_all else status, "tasks": [task_json(t) for t in found]})
    else:
        print_tasks(out_console, found)


@tasks.command("close")
@click.argument("task_id")
@click.option("--note", required=True, help='What was done, e.g. "called, refund issued".')
@click.pass_context
@handle_errors
def tasks_close(ctx: click.Context, task_id: str, note: str) -> None:
    """Close task TASK_ID with a note."""
    from outreach.controls import close_task

    task = close_task(app_of(ctx), task_id, note, utcnow())
    click.echo(f"closed task {task.id} ({task.rule}, customer {task.customer_id})")


@cli.command()
@click.option(
    "--since", callback=_duration, default="7d", show_default=True, help="How far back, e.g. 24h or 7d."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def report(ctx: click.Context, since: timedelta, as_json: bool) -> None:
    """Contacts by rule, state and channel over a period; each rule's funnel, and its goal rate
    against its holdout (intention to treat) with a 95% confidence interval."""
    from outreach.cli.render import print_report
    from outreach.controls import report_since

    result = report_since(app_of(ctx), since, utcnow())
    if as_json:
        emit_json(result.as_json())
    else:
        print_report(out_console, result)


@cli.command()
@click.option(
    "--from", "start", callback=_instant, metavar="TIME", help="First tick (ISO 8601); default: 7 days ago."
)
@click.option(
    "--to", "end", callback=_instant, metavar="TIME", help="End of the period (ISO 8601); default: now."
)
@click.option(
    "--every",
    callback=_optional_duration,
    metavar="DURATION",
    help="Between ticks; default: the rules' shortest `every`.",
)
@click.option(
    "--rules", "rule_names", metavar="A,B", help="Replay these rules only (default: the enabled ones)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write a page with a chart per rule.",
)
@click.pass_context
@handle_errors
def backtest(
    ctx: click.Context,
    start: datetime | None,
    end: datetime | None,
    every: timedelta | None,
    rule_names: str | None,
    as_json: bool,
    html_path: str | None,
) -> None:
    """Replay ticks over a period on a scratch copy: what the rules would have done, per day and
    rule, and how many messages customers would have got a week. Nothing is sent or changed."""
    from outreach.backtest import backtest as replay

    now = utcnow()
    until = end or now
    since = start or until - timedelta(days=7)
    names = [n.strip() for n in rule_names.split(",") if n.strip()] if rule_names else None
    with _count_progress("ticks") as progress:
        result = replay(app_of(ctx), since, until, today=now, every=every, rules=names, progress=progress)
    if html_path is not None:
        from outreach.cli.backtest_page import backtest_page

        Path(html_path).write_text(backtest_page(result), encoding="utf-8")
    if as_json:
        emit_json(result.as_json())
        return
    from outreach.cli.render import print_backtest

    print_backtest(out_console, result)
    if html_path is not None:
        err_console.print(f"wrote {html_path}")


@contextlib.contextmanager
def _count_progress(label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar over LABEL's steps (done of total) on a terminal; nothing when stderr is
    not one."""
    if not err_console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bars:
        task = bars.add_task(label, total=None)
        yield lambda done, total: bars.update(task, completed=done, total=total)


@cli.command("test-rules")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def test_rules(ctx: click.Context, as_json: bool) -> None:
    """Run the rule unit tests in rules/tests/*.yaml; exit 1 if any fails or a test file is wrong.

    A test sets records at one or several instants and checks what the real tick decides and
    sends at each: decision, channel, send time, reason, and text in the message (README).
    """
    from outreach.cli.render import print_rule_tests
    from outreach.rule_tests import run_rule_tests

    app = app_of(ctx)
    run = run_rule_tests(app, app.load_rules())
    if as_json:
        emit_json(run.as_json())
    else:
        print_rule_tests(out_console, err_console, run)
    if not run.ok:
        sys.exit(1)


@cli.command()
@click.option("--host", help="Address to listen on (default: settings [studio] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: settings [studio] port, 8090).")
@click.pass_context
@handle_errors
def studio(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the marketers' page: every message as a customer will get it, its SMS segments,
    its `check` problems, and test sends to allow-listed addresses.

    On loopback (the default) only this machine can open it; on any other address it needs the
    token printed in its URL (set your own with OUTREACH_STUDIO_TOKEN).
    """
    from outreach.studio import serve

    settings = settings_of(ctx)
    serve(
        app_of(ctx),
        host or settings.studio.host,
        settings.studio.port if port is None else port,
        echo=lambda line: out_console.print(line, markup=False, soft_wrap=True),
    )


@cli.command("send-test")
@click.argument("rule", shell_complete=_rule_names)
@click.option(
    "--customer",
    "customer_id",
    required=True,
    help="Render as this customer (database or bundled sample id).",
)
@click.option("--to", "to", required=True, help="An address of settings [studio] test_recipients.")
@click.option(
    "--channel",
    type=click.Choice(["email", "sms"]),
    help="email or sms (default: what the address is; the two must agree).",
)
@click.option("--locale", help="Render in this locale (default: the customer's).")
@click.option(
    "--record",
    "record_id",
    help="The order, checkout or survey to render with (default: one the rule matches).",
)
@click.option(
    "--now", "now", callback=_instant, metavar="TIME", help="Render at this instant (ISO 8601 with offset)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def send_test(
    ctx: click.Context,
    rule: str,
    customer_id: str,
    to: str,
    channel: str | None,
    locale: str | None,
    record_id: str | None,
    now: datetime | None,
    as_json: bool,
) -> None:
    """Send RULE's message, rendered as a customer and marked [TEST], to an allow-listed address.

    Sent through the configured channel and recorded as a test send: never counted against a
    customer's caps, never deduplicated against real contacts.
    """
    from outreach.studio import Studio
    from outreach.studio.sending import send_test as do_send_test

    result = do_send_test(
        Studio(app_of(ctx)),
        rule,
        customer_id=customer_id,
        to=to,
        channel=channel,
        locale=locale,
        at=now,
        record_id=record_id,
    )
    if as_json:
        emit_json(result.as_json())
    else:
        from outreach.cli.render import print_test_send

        print_test_send(out_console, result)
    if result.outcome != "sent":
        if not as_json:
            err_console.print(f"not sent: {result.error}", markup=False, soft_wrap=True)
        sys.exit(1)


def main() -> None:
    cli(prog_name="outreach")


__all__ = ["cli", "main"]

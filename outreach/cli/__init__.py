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
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

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

    return wrapper  # type: ignore[return-value]


def _database_error(exc: Exception) -> OutreachError | None:
    if "sqlalchemy" not in sys.modules:  # nothing touched a database
        return None
    from outreach.state.db import unavailable

    ctx = click.get_current_context(silent=True)
    obj = ctx.obj if ctx is not None and isinstance(ctx.obj, dict) else {}
    settings = obj.get("settings")
    return unavailable(exc, settings.database_url if isinstance(settings, Settings) else None)


class InstantType(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_instant(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


INSTANT = InstantType()


def settings_of(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        obj["settings"] = load_settings(obj.get("settings_path"))
    return obj["settings"]


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, ensure_ascii=False, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    return obj["app"]  # type: ignore[no-any-return]


@cli.command()
@click.pass_context
@handle_errors
def check(ctx: click.Context) -> None:
    """Validate every rules file and template; list every problem with its place."""
    from outreach.checks import check_all

    checked = check_all(app_of(ctx))
    for problem in checked.problems:
        err_console.print(problem.format(), markup=False, soft_wrap=True)
    if not checked.ok:
        err_console.print(f"{len(checked.errors)} error(s), {len(checked.warnings)} warning(s)", markup=False)
        sys.exit(1)
    click.echo(
        f"ok: {len(checked.rules)} rule(s) in {app_of(ctx).rules_dir}, {len(checked.warnings)} warning(s)"
    )


@cli.command()
@click.argument("rule")
@click.option(
    "--now",
    "now",
    type=INSTANT,
    help="Evaluate at this instant (ISO 8601 with offset); default: the current time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--render", is_flag=True, help="Also render each message (subject, text, html, sms, segments).")
@click.pass_context
@handle_errors
def preview(ctx: click.Context, rule: str, now: datetime | None, as_json: bool, render: bool) -> None:
    """Show who RULE would contact at an instant, and why; changes nothing."""
    from outreach.preview import preview_rule

    app = app_of(ctx)
    result = preview_rule(app, rule, now or utcnow(), render=render)
    if as_json:
        emit_json(result.as_json())
        return
    from outreach.cli.render import print_preview

    print_preview(out_console, result)


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
@click.pass_context
@handle_errors
def ingest(ctx: click.Context, files: tuple[str, ...], table: str | None, max_errors: int) -> None:
    """Load customer state from JSONL or CSV FILES, upserting by id.

    Customers files are loaded first. Each file is loaded whole or not at all: a file with any
    bad line loads nothing, and every bad line is listed as FILE:LINE: problem (exit code 1).
    """
    from outreach.state.ingest import ingest_files, rejection

    with _file_progress() as progress:
        reports = ingest_files(
            app_of(ctx).engine, files, table=table, max_problems=max_errors, progress=progress
        )
    for report in reports:
        if not report.rejected:
            click.echo(report.summary())
    error = rejection(reports)
    if error is not None:
        raise error


@cli.command()
@click.argument("customer_id")
@click.option("--now", "now", type=INSTANT, help="Explain at this instant (ISO 8601 with offset).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def explain(ctx: click.Context, customer_id: str, now: datetime | None, as_json: bool) -> None:
    """For every rule, why CUSTOMER_ID would or would not be contacted."""
    from outreach.cli.render import print_explain
    from outreach.preview import explain_customer

    report = explain_customer(app_of(ctx), customer_id, now or utcnow())
    if as_json:
        emit_json(report)
    else:
        print_explain(out_console, report)


@cli.command()
@click.option("--once", is_flag=True, help="Do one tick (evaluate every rule, send what is due) and exit.")
@click.option("--now", "now", type=INSTANT, hidden=True, help="With --once: the tick's instant.")
@click.pass_context
@handle_errors
def run(ctx: click.Context, once: bool, now: datetime | None) -> None:
    """Evaluate rules on their cadence and send due contacts (the daemon)."""
    from outreach.cli.render import print_summary
    from outreach.daemon import serve
    from outreach.tick import run_once

    app = app_of(ctx)
    if once:
        print_summary(out_console, run_once(app, now))
        return
    from outreach.logs import configure

    configure(os.environ.get("OUTREACH_LOG_LEVEL", "info"))
    sys.exit(serve(app))


@cli.command()
@click.option(
    "--now",
    "now",
    type=INSTANT,
    help="The demo's instant (default: 12:00 UTC today, daytime for most sample customers).",
)
@click.pass_context
@handle_errors
def demo(ctx: click.Context, now: datetime | None) -> None:
    """Load the bundled sample customers into a fresh var/demo.db and run one tick through the outbox."""
    from outreach.cli.render import print_summary
    from outreach.demo import run_demo

    at = now or utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    out_console.print(
        f"demo at {at.isoformat()} on var/demo.db (bundled sample customers, outbox channel)", markup=False
    )
    result, outbox = run_demo(settings_of(ctx), at)
    print_summary(out_console, result)
    out_console.print(f"\nmessages written to {outbox}", markup=False)


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
@click.argument("rule")
@click.option("--for", "duration", required=True, help="How long, e.g. 6h or 2d.")
@click.option("--reason", required=True, help="Why, e.g. a carrier outage or a campaign freeze.")
@click.pass_context
@handle_errors
def silence(ctx: click.Context, rule: str, duration: str, reason: str) -> None:
    """Hold RULE's messages for a while, with a recorded reason."""
    from outreach.controls import silence as do_silence

    until = do_silence(app_of(ctx), rule, duration, reason, utcnow())
    click.echo(f"{rule} silenced until {until.isoformat()}: {reason}")


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Include closed tasks.")
@click.pass_context
@handle_errors
def tasks(ctx: click.Context, show_all: bool) -> None:
    """List tasks opened for a person by rules with `escalate: true`."""
    from outreach.cli.render import print_tasks
    from outreach.controls import list_tasks

    print_tasks(out_console, list_tasks(app_of(ctx), show_all))


@cli.command()
@click.option("--since", default="7d", show_default=True, help="How far back, e.g. 24h or 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
@handle_errors
def report(ctx: click.Context, since: str, as_json: bool) -> None:
    """Contacts by rule, state and channel over a period."""
    from outreach.cli.render import print_report
    from outreach.controls import report_since

    data = report_since(app_of(ctx), since, utcnow())
    if as_json:
        emit_json(data)
    else:
        print_report(out_console, data)


@cli.command("test-rules")
@click.pass_context
@handle_errors
def test_rules(ctx: click.Context) -> None:
    """Run the rule unit tests in rules/tests/*.yaml; exit 1 if any fails."""
    from outreach.rules.testing import run_rule_tests

    app = app_of(ctx)
    results, problems = run_rule_tests(app.rules_dir, app.load_rules())
    for result in results:
        mark = "ok  " if result.passed else "FAIL"
        out_console.print(
            f"{mark} {result.name}" + ("" if result.passed else f": {result.message} ({result.file})"),
            markup=False,
            soft_wrap=True,
        )
    for problem in problems:
        err_console.print(problem.format(), markup=False)
    failed = sum(not r.passed for r in results)
    out_console.print(f"{len(results) - failed} passed, {failed} failed", markup=False)
    if failed or problems:
        sys.exit(1)


def main() -> None:
    cli(prog_name="outreach")


__all__ = ["INSTANT", "cli", "main", "utcnow"]

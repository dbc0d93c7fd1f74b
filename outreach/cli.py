"""The `outreach` command: arguments in, exit code out. Holds no logic of its own.

Exit codes: 0 success, 1 the input is wrong (the message says where), 2 usage error.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click
from rich.console import Console

from outreach.clock import parse_instant, utcnow
from outreach.errors import OutreachError
from outreach.settings import Settings, load_settings

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def handle_errors(func: F) -> F:
    """Turn outreach's errors into a message on stderr and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OutreachError as exc:
            err_console.print(str(exc), markup=False, soft_wrap=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


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

    engine = make_engine(settings_of(ctx).database_url, migrate_sqlite=False)
    upgrade(engine)
    click.echo(f"database at revision {current_revision(engine)}")


def main() -> None:
    cli(prog_name="outreach")


__all__ = ["cli", "main", "INSTANT", "utcnow"]

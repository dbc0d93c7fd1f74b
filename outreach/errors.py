"""The one exception tree of outreach.

    OutreachError                      anything outreach raises on purpose
    ├── ConfigError                    settings.toml or the environment is wrong
    ├── InputError                     a user's file or argument is wrong (exit code 1)
    │   ├── RulesError                 rules files have problems (all of them, located)
    │   ├── TemplateError              templates have problems (all of them, located)
    │   └── IngestError                an ingest file has bad records (every bad line)
    ├── DatabaseNotReady               the database schema is missing or behind
    ├── DatabaseUnavailable            the database is locked past the busy timeout, or unreachable
    ├── RenderError                    one message cannot be rendered (missing value, sandbox)
    └── DeliveryError                  a channel could not deliver one message
        ├── TransientDeliveryError     try again later (429, 5xx, timeout before sending)
        ├── PermanentDeliveryError     never retry (invalid number, unsubscribed)
        └── UnknownOutcomeError        the request may have reached the provider

The class docstring is the default message.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from outreach.encoding import made_storable


@dataclass(frozen=True)
class Problem:
    """One located mistake in a user's file: FILE:LINE:COL, what is wrong, the line and a caret."""

    file: str
    line: int | None
    col: int | None
    message: str
    rule: str | None = None
    source_line: str | None = None
    severity: str = "error"

    def format(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        who = f'rule "{self.rule}": ' if self.rule else ""
        tag = "warning: " if self.severity == "warning" else ""
        text = f"{where}: {tag}{who}{self.message}"
        if self.source_line is not None and self.col is not None:
            source, col = _window(self.source_line.rstrip(), self.col)
            caret = " " * (col - 1) + "^"
            text += f"\n    {source}\n    {caret}"
        return text

    def __str__(self) -> str:
        return self.format()


SOURCE_WIDTH = 100


def _window(line: str, col: int) -> tuple[str, int]:
    """At most SOURCE_WIDTH characters of LINE around column COL, and COL within them."""
    if len(line) <= SOURCE_WIDTH:
        return line, col
    start = max(0, min(col - 1 - SOURCE_WIDTH // 2, len(line) - SOURCE_WIDTH))
    shown = line[start : start + SOURCE_WIDTH]
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + SOURCE_WIDTH < len(line) else ""
    return prefix + shown + suffix, col - start + len(prefix)


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice most like WORD, if any is close enough to be what was meant."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest of CHOICES, or "" when none is close."""
    close = closest(word, choices)
    return f" (did you mean {close!r}?)" if close else ""


class OutreachError(Exception):
    """outreach failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(OutreachError):
    """The settings are wrong."""


class InputError(OutreachError):
    """The input is wrong."""

    def __init__(self, message: str | None = None, problems: Sequence[Problem] = ()) -> None:
        self.problems = list(problems)
        if message is None and self.problems:
            message = "\n".join(p.format() for p in self.problems)
        super().__init__(message)


class RulesError(InputError):
    """The rules files have problems."""


class TemplateError(InputError):
    """The templates have problems."""


class IngestError(InputError):
    """The file has bad records; nothing was loaded."""


class DatabaseNotReady(OutreachError):
    """The database schema is missing or out of date: run `outreach db upgrade`."""


class DatabaseUnavailable(OutreachError):
    """The database cannot be used right now: it is locked by another process, or unreachable."""


class RenderError(OutreachError):
    """The message could not be rendered."""


class DeliveryError(OutreachError):
    """The message could not be delivered.

    The message quotes the provider, whose words may hold what no database stores and no
    terminal prints (a NUL, a lone surrogate): each such character is replaced."""

    def __init__(self, message: str | None = None, *, code: str | None = None) -> None:
        self.code = made_storable(code)
        super().__init__(made_storable(message))


class TransientDeliveryError(DeliveryError):
    """The provider is unavailable for now; try again later."""

    def __init__(
        self, message: str | None = None, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, code=code)


class PermanentDeliveryError(DeliveryError):
    """The provider refused the message for good; do not retry."""


class UnknownOutcomeError(DeliveryError):
    """The request may have reached the provider; its outcome is unknown."""


def describe(exc: BaseException) -> str:
    """An exception as one line for a log or a health report, without a statement's parameters.

    A database driver error (SQLAlchemy's `StatementError` keeps the failed statement and its
    parameters — emails, phone numbers — in its text) is described by the driver's own message.
    """
    original = getattr(exc, "orig", None)
    if isinstance(original, BaseException):
        exc = original
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

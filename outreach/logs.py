"""Structured logs: JSON lines when not on a terminal, readable on one; events, never prose.

Phone numbers and email addresses are never logged at info level: log ids (customer_id,
outbox_id), not contact details. As a last line of defence every event, tracebacks included,
is scrubbed of email addresses, phone numbers and provider credentials (`outreach.redact`)
before it is written: an exception's text can quote the row a driver choked on.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from outreach.redact import scrub


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub_value(item) for item in value)
    if isinstance(value, dict):
        return {key: _scrub_value(item) for key, item in value.items()}
    return value


def scrub_event(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: every string of the event (and of its traceback) scrubbed."""
    return {key: _scrub_value(value) for key, value in event.items()}


def configure(level: str = "info", *, json: bool | None = None) -> None:
    """Set up structlog for the process; JSON when stderr is not a terminal unless told."""
    as_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )

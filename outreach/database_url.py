"""Database URLs: read with SQLAlchemy's parser, normalised to the drivers outreach uses, and
only ever shown without their password."""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url

from outreach.errors import ConfigError

# `user:password@` in a URL, and `password=…` in its query, whatever else is malformed in it.
_USERINFO_PASSWORD = re.compile(r"(?<=://)([^/@\s:]*):[^/\s]*@")
_QUERY_PASSWORD = re.compile(r"(?i)((?:^|[?&;])(?:password|passwd|pass|sslpassword|secret)=)[^&;#\s]*")
HIDDEN = "***"


def redact_url(url: str) -> str:
    """URL as it may be shown: the password (in the user part or the query) replaced by ***."""
    text = _USERINFO_PASSWORD.sub(lambda m: f"{m.group(1)}:{HIDDEN}@", str(url))
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + HIDDEN, text)


def _without(secret: str | None, text: str) -> str:
    return text.replace(secret, HIDDEN) if secret else text


def normalise_url(url: str) -> str:
    """`postgresql://…` means psycopg 3 here; SQLAlchemy would otherwise look for psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def check_url(url: str) -> str:
    """URL if SQLAlchemy can read it; ConfigError (without the password) saying why not otherwise."""
    try:
        parsed = make_url(normalise_url(url))
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError/ValueError with terse messages
        password = _USERINFO_PASSWORD.search(url)
        secret = password.group(0).split(":", 1)[1][:-1] if password else None
        reason = _without(secret, str(exc)) or type(exc).__name__
        raise ConfigError(
            f"database url {redact_url(url)} is not valid: {reason} "
            "(e.g. sqlite:///var/outreach.db or postgresql://user@host/dbname)"
        ) from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"database url {redact_url(url)}: outreach runs on SQLite or PostgreSQL, not {parsed.get_backend_name()}"
        )
    return url

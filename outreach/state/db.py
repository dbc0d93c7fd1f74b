"""Engines and sessions: SQLite tuned for one writer and many readers, PostgreSQL via psycopg 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url

from outreach.errors import ConfigError, DatabaseNotReady


def normalise_url(url: str) -> str:
    """`postgresql://…` means psycopg 3 here; SQLAlchemy would otherwise look for psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _require_psycopg() -> None:
    """ConfigError saying how to install the PostgreSQL driver (an extra) when it is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ConfigError(
            "a postgresql:// database needs the PostgreSQL driver, psycopg 3: "
            "pip install 'outreach[postgres]'"
        ) from None


def make_engine(url: str, *, migrate_sqlite: bool = True) -> Engine:
    """An engine for URL; a SQLite file (and its folder) is created and migrated on first use."""
    try:
        url = normalise_url(url)
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises ArgumentError with a terse message
        raise ConfigError(f"database url {url!r} is not valid: {exc}") from None
    if parsed.get_backend_name() == "postgresql":
        _require_psycopg()
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _tune_sqlite)
        if migrate_sqlite:
            from outreach.state.migrate import upgrade

            upgrade(engine)
    return engine


def require_current_schema(engine: Engine) -> None:
    """Raise DatabaseNotReady unless the schema is at the newest migration."""
    from outreach.state.migrate import SCHEMA_HEAD as head
    from outreach.state.migrate import current_revision

    current = current_revision(engine)
    if current != head:
        raise DatabaseNotReady(
            f"database schema is at {current or 'nothing'}, this outreach needs {head}: "
            "run `outreach db upgrade`"
        )


def reachable(engine: Engine) -> bool:
    """Whether the database answers a trivial query now."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means unreachable; the caller says so
        return False
    return True

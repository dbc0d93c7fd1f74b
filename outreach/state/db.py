"""Engines and sessions: SQLite tuned for one writer and many readers, PostgreSQL via psycopg 3.

Database URLs are only ever shown without their password (`redact_url`), and SQL parameters
never appear in an error's text (`hide_parameters`): they hold customers' emails and phones.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url

from outreach.database_url import check_url, normalise_url, redact_url
from outreach.errors import ConfigError, DatabaseNotReady, DatabaseUnavailable

# How long a SQLite connection waits for another process's write lock before giving up.
DEFAULT_BUSY_TIMEOUT = 10.0


def _sqlite_tuning(busy_timeout: float) -> Any:
    milliseconds = max(0, int(busy_timeout * 1000))

    def tune(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={milliseconds}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return tune


# SQLite caches 2 MB of pages by default. Writing 10^5 rows into a table of a million (a load,
# a first tick's decisions) then spills dirty index pages to the WAL and writes them again and
# again: 15-20 % of the CPU time of loading the orders of bench/ at 1M customers, a quarter of
# recording a first tick's decisions. 64 MB holds the pages such a write keeps coming back to.
LARGE_CACHE_KIB = 65536


@contextmanager
def large_sqlite_cache(connection: Connection) -> Iterator[None]:
    """A SQLite connection's page cache, LARGE_CACHE_KIB while a bulk write runs, then as it was
    (the memory is given back). Nothing on other databases."""
    if connection.dialect.name != "sqlite":
        yield
        return
    # On the driver's connection: a pragma is no statement of the caller's transactions.
    cursor = connection.connection.cursor()
    try:
        previous = int(cursor.execute("PRAGMA cache_size").fetchone()[0])
        cursor.execute(f"PRAGMA cache_size=-{LARGE_CACHE_KIB}")
        try:
            yield
        finally:
            cursor.execute(f"PRAGMA cache_size={previous}")
    finally:
        cursor.close()


def _require_psycopg() -> None:
    """ConfigError saying how to install the PostgreSQL driver (an extra) when it is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise ConfigError(
            "a postgresql:// database needs the PostgreSQL driver, psycopg 3: pip install 'outreach[postgres]'"
        ) from None


def make_engine(
    url: str, *, migrate_sqlite: bool = True, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
) -> Engine:
    """An engine for URL; a SQLite file (and its folder) is created and migrated on first use."""
    check_url(url)
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        _require_psycopg()
    kwargs: dict[str, Any] = {"hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_tuning(busy_timeout))
        if migrate_sqlite:
            from outreach.state.migrate import upgrade

            upgrade(engine)
    return engine


def unavailable(exc: BaseException, url: str | None = None) -> DatabaseUnavailable | None:
    """The error a person should read for EXC, a driver's failure to use the database; None if EXC is not one.

    Only the driver's own first line is kept: the statement and its parameters (emails, phones)
    never are, and the URL is shown without its password.
    """
    if not isinstance(exc, sa_exc.OperationalError):
        return None
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
    where = f" {redact_url(url)}" if url else ""
    if "database is locked" in reason or "database table is locked" in reason:
        return DatabaseUnavailable(
            f"the database{where} is locked by another process and stayed locked past the busy "
            f"timeout: try again once the other command is done (database.busy_timeout sets the wait)"
        )
    if "unable to open database file" in reason:
        return DatabaseUnavailable(
            f"cannot open the database file{where}: check the path and its permissions"
        )
    return DatabaseUnavailable(f"cannot use the database{where}: {reason}")


def is_transient(exc: BaseException) -> bool:
    """Whether EXC says the database is busy or out of reach for now (a retry may succeed)."""
    if not isinstance(exc, sa_exc.OperationalError):
        return False
    if exc.connection_invalidated:
        return True
    text = str(exc.orig)
    if "database is locked" in text or "database table is locked" in text:
        return True
    # PostgreSQL: connection exceptions, operator intervention (shutdown), insufficient
    # resources, serialization failures and deadlocks.
    sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
    return sqlstate.startswith(("08", "57P", "53", "40"))


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

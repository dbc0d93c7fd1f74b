"""A rule's last sweep: the instant it was evaluated over every record, and what that saw.

A tick's query for a rule brings into Python only the matches the ledger knows nothing of; but
finding them still joins every current match against the ledger, which grows with every tick.
After a sweep at T0 every record that matched at T0 has a ledger row, so the next sweep at T1
only has to look at the records that could be new matches:

- those written since the sweep read the database (or whose customer was, when the rule reads
  the customer), and
- those whose condition did not hold at T0 and may have come true by the passage of time.

Everything else matched at T0 already and was decided then. What "written since" means is the
database's: on PostgreSQL every row version carries the id of the transaction that wrote it
(`xmin`), and a snapshot's `xmin` bounds the transactions it could not see, so the horizon is
exact even for a load that was still running when the sweep read. SQLite keeps no such thing:
there a rule is swept whole at every tick.

A sweep is only used by the rule it was made for, with the same condition (a changed `when`, or
a change in how outreach compiles it, sweeps whole again), on the same database (a restore or a
cutover to another server sweeps whole), within 2^30 transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy import BigInteger
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

from outreach.state.models import table_of
from outreach.state.types import UTCDateTime

# A row's xmin is 32 bits and wraps around; the horizon is 64 (epoch and xid). Differences are
# read modulo 2^32, which is exact while fewer than 2^31 transactions separate the two: a sweep
# older than 2^30 transactions is not used.
_XID_SPAN = 1 << 32
_XID_HALF = 1 << 31
_OLDEST_USABLE = 1 << 30


class RuleSweep(SQLModel, table=True):
    """The newest sweep of each rule: its instant, what the rule's condition was, and the
    database's horizon (every transaction before it was visible to the sweep)."""

    __tablename__ = "rule_sweeps"

    rule: str = Field(primary_key=True)
    condition: str  # what the matches depend on (`outreach.rules.evaluate.query_fingerprint`)
    swept_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    horizon: int = Field(sa_type=BigInteger, nullable=False)
    # Which database the horizon counts the transactions of: the server's system identifier and
    # the database's oid (`_WHERE_AND_WHEN`).
    database: str


rule_sweeps = table_of(RuleSweep)


class Horizon(NamedTuple):
    """Every transaction of DATABASE below XID had ended when it was read."""

    xid: int
    database: str


class Sweep(NamedTuple):
    rule: str
    condition: str
    swept_at: datetime
    horizon: int
    database: str


# A snapshot's bounds (64 bits: epoch and xid) and the database they count in. The system
# identifier is new with every cluster (initdb; a logical replica has its own), the oid with every
# database (a pg_restore into a new one): on another database the same xids mean other writes.
_WHERE_AND_WHEN = (
    "SELECT pg_snapshot_{bound}(pg_current_snapshot())::text,"
    " (SELECT system_identifier FROM pg_control_system())::text || '/' ||"
    " (SELECT oid FROM pg_database WHERE datname = current_database())::text"
)


def kept_on(dialect: str) -> bool:
    """Whether sweeps are kept on a database of DIALECT: only PostgreSQL can tell what was
    written since one."""
    return dialect == "postgresql"


def _read(connection: Connection, bound: str) -> Horizon | None:
    """A bound of the current snapshot and the database it counts in; None on SQLite, or where
    the role may not read the server's identity (it was revoked from PUBLIC): without it a
    horizon could be taken for one of another server, so no sweep is built on."""
    if not kept_on(connection.dialect.name):
        return None
    allowed = connection.exec_driver_sql(
        "SELECT has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')"
    ).scalar_one()
    if not allowed:
        return None
    xid, database = connection.exec_driver_sql(_WHERE_AND_WHEN.format(bound=bound)).one()
    return Horizon(int(xid), str(database))


def horizon(connection: Connection) -> Horizon | None:
    """Read before a sweep's query: every transaction below it had ended, so what it wrote is
    what the query sees; None where the database cannot tell (`_read`)."""
    return _read(connection, "xmin")


def usable(connection: Connection, wanted: Mapping[str, str]) -> dict[str, Sweep]:
    """The last sweeps of the rules of WANTED (rule → fingerprint) that a sweep may build on.

    The instant of the sweep does not matter: a record that matches now and did not then is in
    the query either way, so a clock set back (or a worker's clock ahead) costs nothing."""
    newest = _read(connection, "xmax") if wanted else None
    if newest is None:
        return {}
    query = sa.select(rule_sweeps).where(rule_sweeps.c.rule.in_(sorted(wanted)))
    found = {}
    for row in connection.execute(query):
        sweep = Sweep(row.rule, row.condition, row.swept_at, row.horizon, row.database)
        if (
            sweep.condition == wanted[sweep.rule]
            and sweep.database == newest.database
            and 0 <= newest.xid - sweep.horizon < _OLDEST_USABLE
        ):
            found[sweep.rule] = sweep
    return found


def record(connection: Connection, sweeps: Sequence[Sweep]) -> None:
    """Remember SWEEPS, once every decision they found is committed.

    Every such sweep is one the next may build on, whichever of two racing workers wrote last:
    each decided every match it saw before it was recorded."""
    for sweep in sweeps:
        statement = postgresql.insert(rule_sweeps).values(sweep._asdict())
        excluded = statement.excluded
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["rule"],
                set_={name: excluded[name] for name in Sweep._fields if name != "rule"},
            )
        )


def written_since(horizon: int) -> Callable[[sa.Table], sa.ColumnElement[bool]]:
    """The condition "this row was written at or after HORIZON" on a table (PostgreSQL)."""
    low = horizon % _XID_SPAN

    def condition(table: sa.Table) -> sa.ColumnElement[bool]:
        xmin = sa.cast(sa.cast(sa.literal_column(f"{table.name}.xmin"), sa.Text()), sa.BigInteger())
        return (xmin - low).op("&", return_type=sa.BigInteger())(_XID_SPAN - 1) < _XID_HALF

    return condition

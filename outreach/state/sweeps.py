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

A sweep is only used by the rule it was made for, with the same condition (a changed `when`, a
new version of outreach sweeps whole again), at a later instant, within 2^30 transactions.
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
    condition: str  # what the matches depend on (`outreach.delivery.decide.sweep_fingerprint`)
    swept_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    horizon: int = Field(sa_type=BigInteger, nullable=False)


rule_sweeps = table_of(RuleSweep)


class Sweep(NamedTuple):
    rule: str
    condition: str
    swept_at: datetime
    horizon: int


def horizon(connection: Connection) -> int | None:
    """Read before a sweep's query: every transaction below it had ended, so what it wrote is
    what the query sees; None where the database cannot tell (SQLite)."""
    if connection.dialect.name != "postgresql":
        return None
    return int(
        connection.exec_driver_sql("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").scalar_one()
    )


def usable(connection: Connection, wanted: Mapping[str, str], now: datetime) -> dict[str, Sweep]:
    """The last sweeps of the rules of WANTED (rule → fingerprint) that a sweep at NOW may build on."""
    if connection.dialect.name != "postgresql" or not wanted:
        return {}
    newest = int(
        connection.exec_driver_sql("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").scalar_one()
    )
    query = sa.select(rule_sweeps).where(rule_sweeps.c.rule.in_(sorted(wanted)))
    found = {}
    for row in connection.execute(query):
        sweep = Sweep(row.rule, row.condition, row.swept_at, row.horizon)
        if (
            sweep.condition == wanted[sweep.rule]
            and sweep.swept_at <= now
            and 0 <= newest - sweep.horizon < _OLDEST_USABLE
        ):
            found[sweep.rule] = sweep
    return found


def record(connection: Connection, sweeps: Sequence[Sweep]) -> None:
    """Remember SWEEPS, once every decision they found is committed; a rule keeps its newest."""
    for sweep in sweeps:
        statement = postgresql.insert(rule_sweeps).values(sweep._asdict())
        excluded = statement.excluded
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=["rule"],
                set_={
                    "condition": excluded.condition,
                    "swept_at": excluded.swept_at,
                    "horizon": excluded.horizon,
                },
                where=sa.or_(
                    rule_sweeps.c.condition != excluded.condition, rule_sweeps.c.swept_at <= excluded.swept_at
                ),
            )
        )


def written_since(horizon: int) -> Callable[[sa.Table], sa.ColumnElement[bool]]:
    """The condition "this row was written at or after HORIZON" on a table (PostgreSQL)."""
    low = horizon % _XID_SPAN

    def condition(table: sa.Table) -> sa.ColumnElement[bool]:
        xmin = sa.cast(sa.cast(sa.literal_column(f"{table.name}.xmin"), sa.Text()), sa.BigInteger())
        return (xmin - low).op("&", return_type=sa.BigInteger())(_XID_SPAN - 1) < _XID_HALF

    return condition

"""Writing many rows with one statement: compiled once, its rows handed to the driver's executemany.

`Connection.execute(statement, rows)` spends about 5 µs a row building parameters (and, with
RETURNING, SQLAlchemy's insertmanyvalues batches on top) — a third of the cost of loading an
order and most of the cost of recording a decision, measured with `bench/`. Here a Core
statement is compiled once per dialect, and each row's values go through the bind processors
of the columns' own types (UTCDateTime, JSON, …) straight into `cursor.executemany`, so what
is stored is exactly what `Connection.execute` would have stored.

On PostgreSQL a statement may also be prepared *staged*: a large set of rows is then copied
(`COPY … FROM STDIN`) into a temporary table of the statement's columns and written by one
`INSERT … SELECT` from it, the same statement with the same `ON CONFLICT` clause. Each row of an
executemany is a statement of its own for the server: recording a first tick's 107,937
decisions at 1M customers took 55 µs a row that way (py-spy, `bench/bench_ticks.py`'s data).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(frozen=True)
class _Bind:
    """A column whose type processes bound values, and what it makes of the column's default."""

    index: int
    process: Callable[[Any], Any]
    default: Any
    processed_default: Any


# Fewer rows than this are written by executemany even where the statement is staged: the
# temporary table and the COPY cost more than they save for a handful of rows.
STAGED_FROM = 500


@dataclass(frozen=True)
class _Staged:
    """The statements of a staged write (PostgreSQL)."""

    create: str  # the temporary table, if the session has none yet; its rows go at each commit
    copy: str  # COPY into it
    insert: str  # the statement, its rows read from the temporary table
    empty: str  # for the next write in the same transaction
    key: str  # the column ON CONFLICT names: a staged write needs it unique among the rows
    json: tuple[int, ...] = ()  # the positions of JSON columns, copied as their text


@dataclass(frozen=True)
class Prepared:
    """A statement compiled for a dialect, with the bind processors of its parameters' columns."""

    sql: str
    defaults: tuple[tuple[str, Any], ...]  # (column, value when a row leaves it out) in parameter order
    binds: tuple[_Bind, ...]
    positional: bool
    staged: _Staged | None = None

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """ROWS as the driver takes them."""
        if self.positional:
            return [tuple(values) for values in self._values(rows)]
        names = [name for name, _ in self.defaults]
        return [dict(zip(names, values, strict=True)) for values in self._values(rows)]

    def _values(self, rows: Sequence[Mapping[str, Any]]) -> Iterator[list[Any]]:
        """The processed values of each of ROWS, in parameter order.

        A value object the rows share (the default, the tick's `now`, a send time many
        decisions were given) is processed once: the memo is by identity, so equal values of
        different types are never confused, and every object in it lives as long as ROWS."""
        defaults, binds = self.defaults, self.binds
        memo: dict[tuple[int, int], Any] = {}
        for row in rows:
            values = [row.get(name, default) for name, default in defaults]
            for bind in binds:
                value = values[bind.index]
                if value is bind.default:
                    values[bind.index] = bind.processed_default
                    continue
                key = (bind.index, id(value))
                if key in memo:
                    values[bind.index] = memo[key]
                else:
                    values[bind.index] = memo[key] = bind.process(value)
            yield values

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run the statement once per row of ROWS in one driver call; the rows it changed.

        Both drivers sum the rows each execution changed (an upsert whose `WHERE` refused the
        update changes none)."""
        if not rows:
            return 0
        staged = self.staged
        if (
            staged is not None
            and len(rows) >= STAGED_FROM
            and _unique(rows, staged.key)
            and _may_stage(connection)
        ):
            return self._execute_staged(connection, staged, rows)
        result = connection.exec_driver_sql(self.sql, self.parameters(rows))
        return int(result.rowcount)

    def _execute_staged(
        self, connection: Connection, staged: _Staged, rows: Sequence[Mapping[str, Any]]
    ) -> int:
        """ROWS copied into the temporary table, written by one INSERT … SELECT, then cleared
        from it; all within the caller's transaction."""
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(staged.create)
            # A JSON value many rows share (a tick's few lists of steps) is serialised once: the
            # driver would dump it again for every row (a twentieth of a first tick, measured).
            texts: dict[int, tuple[Any, str]] = {}
            with cursor.copy(staged.copy) as copy:
                for values in self._values(rows):
                    for index in staged.json:
                        value = values[index]
                        if value is None:
                            continue
                        known = texts.get(id(value))
                        if known is None:  # the value is kept with its text, so its id is not reused
                            known = texts[id(value)] = (value, _text_of(cursor, value))
                        values[index] = known[1]
                    copy.write_row(values)
            cursor.execute(staged.insert)
            written = int(cursor.rowcount)
            cursor.execute(staged.empty)
        finally:
            cursor.close()
        return written


def _text_of(cursor: Any, value: Any) -> str:
    """VALUE as the driver would send it in text, e.g. a JSON document (`psycopg.types.json.Jsonb`)."""
    from psycopg.adapt import PyFormat  # PostgreSQL only: psycopg is an optional dependency

    dumper = cursor.adapters.get_dumper(type(value), PyFormat.TEXT)(type(value))
    return bytes(dumper.dump(value)).decode()


_TEMPORARY = "outreach.bulk.temporary"  # the key of `_may_stage`'s answer in a connection's info


def _may_stage(connection: Connection) -> bool:
    """Whether the role may create temporary tables here (PUBLIC may, unless an administrator
    revoked it): asked once per connection of the pool; without it, writes are not staged."""
    info = connection.connection.info
    if _TEMPORARY not in info:
        query = "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
        info[_TEMPORARY] = bool(connection.exec_driver_sql(query).scalar())
    return bool(info[_TEMPORARY])


def _unique(rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    """Whether no two of ROWS have the same KEY: `ON CONFLICT DO UPDATE` refuses to change a row
    twice in one statement, where an executemany writes the second over the first."""
    return len({row[key] for row in rows}) == len(rows)


_InsertT = TypeVar("_InsertT", bound=sa.Insert)


def rows_of(insert: _InsertT, columns: Sequence[str], rows_from: sa.Select[Any] | None) -> _InsertT:
    """INSERT of one row of parameters, one per column of COLUMNS; or, for a staged write, of the
    rows of ROWS_FROM (a SELECT of those columns, in its own order)."""
    if rows_from is None:
        return insert.values({name: sa.bindparam(name) for name in columns})
    return insert.from_select([column.name for column in rows_from.selected_columns], rows_from)


def prepare(
    dialect: Dialect,
    statement: sa.ClauseElement,
    table: sa.Table,
    defaults: Mapping[str, Any],
    *,
    staged: Callable[[sa.Select[Any]], sa.ClauseElement] | None = None,
    key: str = "id",
) -> Prepared:
    """STATEMENT compiled for DIALECT; its parameters must be columns of TABLE, one each.

    DEFAULTS gives the value of a column a row leaves out (None when not given). Constant
    conditions belong in the statement as literals, not parameters: every parameter must be a
    column, which is checked here so that a statement binding something else fails at once.

    STAGED, on PostgreSQL, builds the same statement with its rows read from a SELECT of the
    columns (`INSERT … SELECT`, the conflict on KEY): large writes then go through COPY.
    """
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.params)
    unknown = [name for name in names if name not in table.c]
    if unknown or len(set(names)) != len(names):
        raise AssertionError(f"statement on {table.name} binds {names}: expected one parameter per column")
    binds = []
    for index, name in enumerate(names):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            default = defaults.get(name)
            binds.append(_Bind(index, process, default, process(default)))
    return Prepared(
        compiled.string,
        tuple((name, defaults.get(name)) for name in names),
        tuple(binds),
        bool(compiled.positional),
        _stage(dialect, table, names, staged, key) if staged and dialect.name == "postgresql" else None,
    )


def _stage(
    dialect: Dialect,
    table: sa.Table,
    names: Sequence[str],
    staged: Callable[[sa.Select[Any]], sa.ClauseElement],
    key: str,
) -> _Staged:
    quote = dialect.identifier_preparer.quote
    # Named by its columns too: statements staging different columns of a table never share one.
    name = f"staged_{table.name}_{hashlib.sha1(','.join(names).encode()).hexdigest()[:8]}"
    staging = sa.Table(name, sa.MetaData(), *(sa.Column(n, table.c[n].type) for n in names))
    insert = staged(sa.select(*staging.c)).compile(dialect=dialect)
    if insert.params:
        raise AssertionError(f"staged statement on {table.name} binds {sorted(insert.params)}: expected none")
    columns = ", ".join(quote(n) for n in names)
    json = tuple(i for i, n in enumerate(names) if isinstance(table.c[n].type.dialect_impl(dialect), sa.JSON))
    return _Staged(
        create=f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote(name)} ON COMMIT DELETE ROWS"
        f" AS SELECT {columns} FROM {quote(table.name)} WITH NO DATA",
        copy=f"COPY {quote(name)} ({columns}) FROM STDIN",
        insert=insert.string,
        empty=f"TRUNCATE {quote(name)}",
        key=key,
        json=json,
    )

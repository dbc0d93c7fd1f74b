"""Writing many rows with one statement: compiled once, its rows handed to the driver's executemany.

`Connection.execute(statement, rows)` spends about 5 µs a row building parameters (and, with
RETURNING, SQLAlchemy's insertmanyvalues batches on top) — a third of the cost of loading an
order and most of the cost of recording a decision, measured with `bench/`. Here a Core
statement is compiled once per dialect, and each row's values go through the bind processors
of the columns' own types (UTCDateTime, JSON, …) straight into `cursor.executemany`, so what
is stored is exactly what `Connection.execute` would have stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Prepared:
    """A statement compiled for a dialect, with the bind processors of its parameters' columns."""

    sql: str
    defaults: tuple[tuple[str, Any], ...]  # (column, value when a row leaves it out) in parameter order
    binds: tuple[_Bind, ...]
    positional: bool

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        """ROWS as the driver takes them.

        A value object the rows share (the default, the tick's `now`, a send time many
        decisions were given) is processed once: the memo is by identity, so equal values of
        different types are never confused, and every object in it lives as long as ROWS."""
        defaults, binds = self.defaults, self.binds
        memo: dict[tuple[int, int], Any] = {}
        out: list[Any] = []
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
            if self.positional:
                out.append(tuple(values))
            else:
                out.append({name: value for (name, _), value in zip(defaults, values, strict=True)})
        return out

    def execute(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Run the statement once per row of ROWS in one driver call; the rows it changed.

        Both drivers sum the rows each execution changed (an upsert whose `WHERE` refused the
        update changes none)."""
        if not rows:
            return 0
        result = connection.exec_driver_sql(self.sql, self.parameters(rows))
        return int(result.rowcount)


def prepare(
    dialect: Dialect, statement: sa.ClauseElement, table: sa.Table, defaults: Mapping[str, Any]
) -> Prepared:
    """STATEMENT compiled for DIALECT; its parameters must be columns of TABLE, one each.

    DEFAULTS gives the value of a column a row leaves out (None when not given). Constant
    conditions belong in the statement as literals, not parameters: every parameter must be a
    column, which is checked here so that a statement binding something else fails at once.
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
    )

"""Compile a typed expression into a SQLAlchemy condition for one set-based query.

Sub-expressions that read no field (`now() - 1d`, `2 * 3`) are computed once in Python and bound
as parameters, so `order.promised_at < now() - 1d` is an index range scan and both compilers
see the very same constant. What remains is written per dialect where SQLite and PostgreSQL
differ:
- instants are integer microseconds on SQLite (exact arithmetic), timestamptz on PostgreSQL;
- strings order by code point: SQLite's BINARY collation, PostgreSQL's "C" collation;
- `lower()` folds ASCII only (SQLite's built-in lower(); `translate` on PostgreSQL);
- division is in double precision and by zero is null (`NULLIF`);
- JSON attributes read as the type their context asks for, anything else reads as null.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from outreach.rules import expressions as e
from outreach.rules.schema import Type
from outreach.rules.to_python import compile_python
from outreach.state.models import entity_table
from outreach.state.types import UTCDateTime, to_micros

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _table(entity: str) -> sa.Table:
    return entity_table(entity)


class SqlCompiler:
    """Compiles expressions for one dialect at one evaluation instant."""

    def __init__(self, dialect: str, now: datetime) -> None:
        if dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"rules run on SQLite or PostgreSQL, not {dialect}")
        self.dialect = dialect
        self.now = now
        self.sqlite = dialect == "sqlite"

    def condition(self, expr: e.Expr) -> ColumnElement[Any]:
        return self.compile(expr)

    def compile(self, expr: e.Expr) -> ColumnElement[Any]:
        if e.is_constant(expr):
            return self.constant(compile_python(expr)({}, self.now), expr.type)
        if isinstance(expr, e.Field):
            column = _table(expr.entity).c[expr.name]
            if expr.type is Type.TIME and self.sqlite:
                return sa.type_coerce(column, sa.BigInteger())
            return column
        if isinstance(expr, e.JsonField):
            return self.json_value(expr)
        if isinstance(expr, e.Lower):
            operand = self.compile(expr.operand)
            if self.sqlite:
                return sa.func.lower(operand, type_=sa.String())
            return sa.func.translate(operand, _UPPER, _UPPER.lower(), type_=sa.String())
        if isinstance(expr, e.Negate):
            return -self.compile(expr.operand)
        if isinstance(expr, e.Arith):
            return self.arith(expr)
        if isinstance(expr, e.Compare):
            left, right = self.compile(expr.left), self.compile(expr.right)
            if expr.left.type is Type.STRING and expr.op in ("<", "<=", ">", ">=") and not self.sqlite:
                left = left.collate("C")
            return left.operate(_OPERATORS[expr.op], right)
        if isinstance(expr, e.In):
            needle = self.compile(expr.needle)
            values = [self.constant(v, expr.needle.type) for v in expr.values]
            return needle.not_in(values) if expr.negated else needle.in_(values)
        if isinstance(expr, e.IsNull):
            return self.is_null(expr.operand, expr.negated)
        if isinstance(expr, e.And):
            return sa.and_(self.compile(expr.left), self.compile(expr.right))
        if isinstance(expr, e.Or):
            return sa.or_(self.compile(expr.left), self.compile(expr.right))
        if isinstance(expr, e.Not):
            return sa.not_(self.compile(expr.operand))
        raise TypeError(f"cannot compile {expr!r}")

    def constant(self, value: Any, kind: Type) -> ColumnElement[Any]:
        if value is None:
            # A computed null (`0 / 0`) is a typed NULL parameter: SQLAlchemy would turn
            # `x == NULL` into `x IS NULL` (true for a null x, where SQL and Python say unknown)
            # and refuses `<` with a bare NULL.
            return sa.literal(None, self._type_of(kind))
        if kind is Type.TIME:
            if self.sqlite:
                return sa.literal(to_micros(value), sa.BigInteger())
            return sa.literal(value, sa.DateTime(timezone=True))
        if kind is Type.DURATION:
            if self.sqlite:
                return sa.literal(value // timedelta(microseconds=1), sa.BigInteger())
            return sa.literal(value, sa.Interval())
        if kind is Type.BOOL:
            return sa.true() if value else sa.false()
        if kind is Type.NUMBER:
            return sa.literal(value, sa.Float() if isinstance(value, float) else sa.BigInteger())
        return sa.literal(value, sa.String())

    def _type_of(self, kind: Type) -> Any:
        if kind in (Type.TIME, Type.DURATION):
            if self.sqlite:
                return sa.BigInteger()
            return sa.DateTime(timezone=True) if kind is Type.TIME else sa.Interval()
        return {Type.NUMBER: sa.Float(), Type.BOOL: sa.Boolean(), Type.STRING: sa.String()}.get(
            kind, sa.String()
        )

    def arith(self, expr: e.Arith) -> ColumnElement[Any]:
        left, right = self.compile(expr.left), self.compile(expr.right)
        if expr.op == "/":
            real = sa.Float()
            return sa.cast(left, real).op("/", return_type=real)(sa.func.nullif(sa.cast(right, real), 0))
        return left.op(expr.op, return_type=left.type)(right)

    # -- JSON ------------------------------------------------------------------------------
    def json_value(self, expr: e.JsonField) -> ColumnElement[Any]:
        column = _table(expr.entity).c[expr.name]
        if self.sqlite:
            path = "$" + "".join(f".{key}" for key in expr.keys)
            kind = sa.func.json_type(column, path)
            raw = sa.func.json_extract(column, path)
            if expr.type is Type.NUMBER:
                return sa.case((kind.in_(["integer", "real"]), sa.cast(raw, sa.Float())))
            if expr.type is Type.STRING:
                return sa.case((kind == "text", raw))
            if expr.type is Type.BOOL:
                return sa.case((kind == "true", sa.literal(1)), (kind == "false", sa.literal(0)))
            return raw
        node = self._pg_node(column, expr.keys)
        kind = sa.func.jsonb_typeof(node)
        text = node.op("#>>", return_type=sa.String())(sa.literal([], postgresql.ARRAY(sa.Text())))
        if expr.type is Type.NUMBER:
            return sa.case((kind == "number", sa.cast(text, sa.Float())))
        if expr.type is Type.STRING:
            return sa.case((kind == "string", text))
        if expr.type is Type.BOOL:
            return sa.case((kind == "boolean", sa.cast(text, sa.Boolean())))
        return node

    def _pg_node(self, column: Any, keys: tuple[str, ...]) -> ColumnElement[Any]:
        if not keys:
            return sa.cast(column, postgresql.JSONB())
        path = sa.literal(list(keys), postgresql.ARRAY(sa.Text()))
        return column.op("#>", return_type=postgresql.JSONB())(path)  # type: ignore[no-any-return]  # Operators.op returns an untyped callable

    def is_null(self, operand: e.Expr, negated: bool) -> ColumnElement[Any]:
        if isinstance(operand, e.JsonField) and operand.type is Type.JSON:
            # Missing and JSON null are both "null", as in the Python evaluator.
            column = _table(operand.entity).c[operand.name]
            if self.sqlite:
                path = "$" + "".join(f".{key}" for key in operand.keys)
                kind = sa.func.json_type(column, path)
            else:
                kind = sa.func.jsonb_typeof(self._pg_node(column, operand.keys))
            missing = sa.or_(kind.is_(None), kind == "null")
            return sa.not_(missing) if negated else missing
        value = self.compile(operand)
        return value.is_not(None) if negated else value.is_(None)


_OPERATORS = {
    "==": sa.sql.operators.eq,
    "!=": sa.sql.operators.ne,
    "<": sa.sql.operators.lt,
    "<=": sa.sql.operators.le,
    ">": sa.sql.operators.gt,
    ">=": sa.sql.operators.ge,
}


def compile_sql(expr: e.Expr, dialect: str, now: datetime) -> ColumnElement[Any]:
    """The SQLAlchemy condition for EXPR on DIALECT at the instant NOW."""
    return SqlCompiler(dialect, now).condition(expr)


__all__ = ["SqlCompiler", "UTCDateTime", "compile_sql"]

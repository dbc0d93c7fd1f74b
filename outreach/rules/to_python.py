"""Compile a typed expression into a Python function on one record, with SQL's three-valued logic.

`None` is SQL's unknown: comparisons and arithmetic with it are unknown, `and`/`or` follow
Kleene's tables, and a rule matches only when its condition is True. outreach.rules.to_sql must
give the same answer for every record; tests/property/test_when_equivalence.py checks that.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from outreach.rules import expressions as e
from outreach.rules.schema import Type

Records = Mapping[str, Any]
Evaluator = Callable[[Records, datetime], Any]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
# `lower()` folds ASCII letters only, exactly like SQLite's built-in lower(); see to_sql.
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _get(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def _json_as(value: Any, kind: Type) -> Any:
    if kind is Type.NUMBER:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if kind is Type.STRING:
        return value if isinstance(value, str) else None
    if kind is Type.BOOL:
        return value if isinstance(value, bool) else None
    return value


def _arith(op: str, left: Any, right: Any) -> Any:
    if left is None or right is None:
        return None
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        return None  # SQL: x / NULLIF(0, 0) is null
    return float(left) / float(right)


def compile_python(expr: e.Expr) -> Evaluator:
    """A function (records, now) → True / False / None for EXPR."""
    if isinstance(expr, e.Const):
        value = expr.value
        return lambda records, now: value
    if isinstance(expr, e.Now):
        return lambda records, now: now
    if isinstance(expr, e.Field):
        entity, name = expr.entity, expr.name
        return lambda records, now: _get(records[entity], name)
    if isinstance(expr, e.JsonField):
        entity, name, keys, kind = expr.entity, expr.name, expr.keys, expr.type

        def json_value(records: Records, now: datetime) -> Any:
            value = _get(records[entity], name)
            for key in keys:
                if not isinstance(value, Mapping):
                    return None
                value = value.get(key)
            return _json_as(value, kind)

        return json_value
    if isinstance(expr, e.Lower):
        inner = compile_python(expr.operand)

        def lower(records: Records, now: datetime) -> Any:
            value = inner(records, now)
            return None if value is None else value.translate(ASCII_LOWER)

        return lower
    if isinstance(expr, e.Negate):
        inner = compile_python(expr.operand)
        return lambda records, now: (lambda v: None if v is None else -v)(inner(records, now))
    if isinstance(expr, e.Arith):
        left, right, op = compile_python(expr.left), compile_python(expr.right), expr.op
        return lambda records, now: _arith(op, left(records, now), right(records, now))
    if isinstance(expr, e.Compare):
        left, right, compare = compile_python(expr.left), compile_python(expr.right), _COMPARE[expr.op]

        def comparison(records: Records, now: datetime) -> Any:
            a, b = left(records, now), right(records, now)
            if a is None or b is None:
                return None
            return compare(a, b)

        return comparison
    if isinstance(expr, e.In):
        needle, values, negated = compile_python(expr.needle), frozenset(expr.values), expr.negated

        def membership(records: Records, now: datetime) -> Any:
            value = needle(records, now)
            if value is None:
                return None
            return (value in values) != negated

        return membership
    if isinstance(expr, e.IsNull):
        inner, negated = compile_python(expr.operand), expr.negated
        return lambda records, now: (inner(records, now) is None) != negated
    if isinstance(expr, e.And):
        left, right = compile_python(expr.left), compile_python(expr.right)

        def conjunction(records: Records, now: datetime) -> Any:
            a = left(records, now)
            if a is False:
                return False
            b = right(records, now)
            if b is False:
                return False
            return None if a is None or b is None else True

        return conjunction
    if isinstance(expr, e.Or):
        left, right = compile_python(expr.left), compile_python(expr.right)

        def disjunction(records: Records, now: datetime) -> Any:
            a = left(records, now)
            if a is True:
                return True
            b = right(records, now)
            if b is True:
                return True
            return None if a is None or b is None else False

        return disjunction
    if isinstance(expr, e.Not):
        inner = compile_python(expr.operand)
        return lambda records, now: (lambda v: None if v is None else not v)(inner(records, now))
    raise TypeError(f"cannot compile {expr!r}")

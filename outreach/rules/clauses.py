"""Why a condition does not hold: its smallest false or unknown clauses and the values they read.

    failing_clauses(condition, {"customer": …, "order": …}, now)
    → [`order.delivered_at is null` is false: order.delivered_at = 2026-11-23T08:00Z]

A condition is a tree of `and`s over clauses; it holds only when every clause is true, so the
clauses to report are the ones that are not, found by descending through `and` (and `not not`).
An `or`, or a `not` over anything else, is reported whole: no smaller part of it is to blame.
Values are computed by the same Python evaluator the send-time re-check uses
(outreach.rules.to_python), with SQL's three-valued logic: None is unknown.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from outreach.durations import format_duration
from outreach.rules import expressions as e
from outreach.rules.to_python import compile_python

_evaluator = lru_cache(maxsize=4096)(compile_python)


@dataclass(frozen=True)
class Reading:
    """A value a clause read: a field, or a computed operand such as `now() - 1d`."""

    text: str
    value: Any


@dataclass(frozen=True)
class FailingClause:
    """One clause of a condition that is false (`value` False) or unknown (`value` None)."""

    expr: e.Expr
    text: str
    value: bool | None
    readings: tuple[Reading, ...]

    def describe(self) -> str:
        """`order.delivered_at is null` is false: order.delivered_at = 2026-11-23T08:00Z"""
        verdict = "false" if self.value is False else "unknown"
        read = ", ".join(f"{r.text} = {format_value(r.value)}" for r in self.readings)
        return f"`{self.text}` is {verdict}" + (f": {read}" if read else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "clause": self.text,
            "value": self.value,
            "reads": {r.text: json_value(r.value) for r in self.readings},
        }


def evaluate(expr: e.Expr, records: Mapping[str, Any], now: datetime) -> Any:
    """EXPR's value for RECORDS at NOW (None: unknown), as the send-time re-check computes it."""
    return _evaluator(expr)(records, now)


def failing_clauses(condition: e.Expr, records: Mapping[str, Any], now: datetime) -> list[FailingClause]:
    """The smallest clauses of CONDITION that are false or unknown for RECORDS at NOW; [] if it holds.

    Making every reported clause true would make the condition true: no failing clause is left out.
    """
    found: list[FailingClause] = []

    def visit(expr: e.Expr) -> None:
        value = evaluate(expr, records, now)
        if value is True:
            return
        if isinstance(expr, e.And):
            visit(expr.left)
            visit(expr.right)
        elif isinstance(expr, e.Not) and isinstance(expr.operand, e.Not):
            visit(expr.operand.operand)
        else:
            readings = tuple(Reading(text, evaluate(part, records, now)) for text, part in _read_by(expr))
            found.append(FailingClause(expr, to_text(expr), None if value is None else False, readings))

    visit(condition)
    return found


def _read_by(clause: e.Expr) -> list[tuple[str, e.Expr]]:
    """The operands a clause compares (unless literal) and the fields inside them, once each."""
    seen: dict[str, e.Expr] = {}

    def operands(expr: e.Expr) -> Iterator[e.Expr]:
        if isinstance(expr, e.Compare):
            yield from (expr.left, expr.right)
        elif isinstance(expr, e.In):
            yield expr.needle
        elif isinstance(expr, e.IsNull):
            yield expr.operand
        elif isinstance(expr, (e.And, e.Or)):
            yield from operands(expr.left)
            yield from operands(expr.right)
        elif isinstance(expr, e.Not):
            yield from operands(expr.operand)
        elif not isinstance(expr, e.Const):
            yield expr  # a bare boolean field, e.g. `customer.email_opt_in`

    for operand in operands(clause):
        if isinstance(operand, e.Const):
            continue
        if isinstance(operand, (e.Compare, e.In, e.IsNull, e.And, e.Or, e.Not)):
            for inner in _read_by(operand):
                seen.setdefault(inner[0], inner[1])
            continue
        seen.setdefault(to_text(operand), operand)
        for field in _fields(operand):
            seen.setdefault(to_text(field), field)
    return list(seen.items())


def _fields(expr: e.Expr) -> Iterator[e.Expr]:
    if isinstance(expr, (e.Field, e.JsonField)):
        yield expr
    elif isinstance(expr, (e.Lower, e.Negate, e.Not, e.IsNull)):
        yield from _fields(expr.operand)
    elif isinstance(expr, e.In):
        yield from _fields(expr.needle)
    elif isinstance(expr, (e.Arith, e.Compare, e.And, e.Or)):
        yield from _fields(expr.left)
        yield from _fields(expr.right)


# -- the expression written back ----------------------------------------------------------------
# Binding strength, loosest first, as in outreach/rules/when.lark.
_OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _SIGN, _ATOM = range(8)


def to_text(expr: e.Expr) -> str:
    """EXPR in the `when` language, parenthesised only where needed; it compiles back to EXPR."""
    return _write(expr)[0]


def _wrap(part: tuple[str, int], at_least: int) -> str:
    text, strength = part
    return text if strength >= at_least else f"({text})"


def _write(expr: e.Expr) -> tuple[str, int]:
    if isinstance(expr, e.Const):
        return _literal(expr.value), _ATOM
    if isinstance(expr, e.Now):
        return "now()", _ATOM
    if isinstance(expr, e.Field):
        return f"{expr.entity}.{expr.name}", _ATOM
    if isinstance(expr, e.JsonField):
        return ".".join((expr.entity, expr.name, *expr.keys)), _ATOM
    if isinstance(expr, e.Lower):
        return f"lower({to_text(expr.operand)})", _ATOM
    if isinstance(expr, e.Negate):
        return "-" + _wrap(_write(expr.operand), _SIGN), _SIGN
    if isinstance(expr, e.Arith):
        strength = _SUM if expr.op in "+-" else _PRODUCT
        left = _wrap(_write(expr.left), strength)
        return f"{left} {expr.op} {_wrap(_write(expr.right), strength + 1)}", strength
    if isinstance(expr, e.Compare):
        left, right = _wrap(_write(expr.left), _SUM), _wrap(_write(expr.right), _SUM)
        return f"{left} {expr.op} {right}", _COMPARE
    if isinstance(expr, e.In):
        word = "not in" if expr.negated else "in"
        values = ", ".join(_literal(v) for v in expr.values)
        return f"{_wrap(_write(expr.needle), _SUM)} {word} [{values}]", _COMPARE
    if isinstance(expr, e.IsNull):
        word = "is not null" if expr.negated else "is null"
        return f"{_wrap(_write(expr.operand), _SUM)} {word}", _COMPARE
    if isinstance(expr, e.Not):
        return "not " + _wrap(_write(expr.operand), _NOT), _NOT
    if isinstance(expr, (e.And, e.Or)):
        word, strength = ("and", _AND) if isinstance(expr, e.And) else ("or", _OR)
        kind = type(expr)
        # The parser builds an unbracketed chain `a and b and c` as one balanced tree, so only a
        # tree of that shape may be written flat; any other keeps its two sides apart in brackets.
        sides = _chain(expr, kind) if _chain_length(expr, kind) is not None else [expr.left, expr.right]
        return f" {word} ".join(_wrap(_write(side), strength + 1) for side in sides), strength
    raise TypeError(f"cannot write {expr!r}")


def _chain_length(expr: e.Expr, kind: type[e.And | e.Or]) -> int | None:
    """How many operands EXPR's chain of KIND has if it is shaped as syntax._balanced builds it."""
    if not isinstance(expr, kind):
        return 1
    left, right = _chain_length(expr.left, kind), _chain_length(expr.right, kind)
    if left is None or right is None or left != (left + right) // 2:
        return None
    return left + right


def _chain(expr: e.Expr, kind: type[e.And | e.Or]) -> list[e.Expr]:
    """The operands of EXPR's chain of KIND, in their order."""
    if not isinstance(expr, kind):
        return [expr]
    return _chain(expr.left, kind) + _chain(expr.right, kind)


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text:  # the language has no exponent: 1e-05 is written 0.00001
            text = f"{value:.20f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"not a literal: {value!r}")


# -- values as a person reads them ----------------------------------------------------------------


def format_value(value: Any) -> str:
    """A value read by a clause: instants in UTC to the minute (or second), null, "quoted" text."""
    if isinstance(value, datetime):
        instant = value.astimezone(UTC) if value.tzinfo else value
        spec = "%Y-%m-%dT%H:%M" if instant.second == 0 and instant.microsecond == 0 else "%Y-%m-%dT%H:%M:%S"
        return instant.strftime(spec) + ("Z" if value.tzinfo else "")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, bool, int, float, timedelta)) or value is None:
        return _literal(value)
    return json.dumps(json_value(value), ensure_ascii=False, sort_keys=True)


def json_value(value: Any) -> Any:
    """VALUE as JSON can hold it: instants as ISO 8601, durations as `1d`."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value

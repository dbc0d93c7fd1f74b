"""Typed `when` expressions: names resolved against the schema, types checked, mistakes located.

`analyse(tree, about)` turns a syntax tree into an `Expr` that both compilers (to SQL and to
Python) consume, or raises `ExpressionProblems` listing every mistake with its offset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from outreach.durations import MAX_DURATION, MAX_DURATION_TEXT
from outreach.errors import did_you_mean
from outreach.rules import syntax as s
from outreach.rules.schema import INTEGER_COLUMN_MAX, Type, entities_for, fields_of, integer_fields

FUNCTIONS = {"now": 0, "lower": 1}


@dataclass(frozen=True)
class Expr:
    type: Type


@dataclass(frozen=True)
class Const(Expr):
    value: Any


@dataclass(frozen=True)
class _Failed(Const):
    """Stands for a part that had a problem (already reported), so analysis goes on quietly."""


@dataclass(frozen=True)
class Now(Expr):
    pass


@dataclass(frozen=True)
class Field(Expr):
    entity: str
    name: str


@dataclass(frozen=True)
class JsonField(Expr):
    """A value inside a JSON column, read as `type` (anything else reads as null)."""

    entity: str
    name: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Lower(Expr):
    operand: Expr


@dataclass(frozen=True)
class Negate(Expr):
    operand: Expr


@dataclass(frozen=True)
class Arith(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Compare(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class In(Expr):
    needle: Expr
    values: tuple[Any, ...]
    negated: bool


@dataclass(frozen=True)
class IsNull(Expr):
    operand: Expr
    negated: bool


@dataclass(frozen=True)
class And(Expr):
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Or(Expr):
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr


@dataclass(frozen=True)
class Located:
    offset: int
    message: str


class ExpressionProblems(Exception):
    """Every mistake found in one expression, each at an offset into its text."""

    def __init__(self, problems: list[Located]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def is_constant(expr: Expr) -> bool:
    """True when EXPR refers to no field, so it can be computed once per evaluation."""
    if isinstance(expr, (Field, JsonField)):
        return False
    if isinstance(expr, (Const, Now)):
        return True
    if isinstance(expr, (Lower, Negate, Not, IsNull, In)):
        inner = expr.needle if isinstance(expr, In) else expr.operand
        return is_constant(inner)
    if isinstance(expr, (Arith, Compare, And, Or)):
        return is_constant(expr.left) and is_constant(expr.right)
    raise TypeError(expr)


def paths_of(expr: Expr) -> set[str]:
    """The entities EXPR reads (`customer`, `order`, …)."""
    if isinstance(expr, (Field, JsonField)):
        return {expr.entity}
    if isinstance(expr, (Const, Now)):
        return set()
    if isinstance(expr, (Lower, Negate, Not, IsNull)):
        return paths_of(expr.operand)
    if isinstance(expr, In):
        return paths_of(expr.needle)
    if isinstance(expr, (Arith, Compare, And, Or)):
        return paths_of(expr.left) | paths_of(expr.right)
    raise TypeError(expr)


def integer_bound(expr: Expr) -> int | None:
    """The largest magnitude EXPR can have if it is whole-number arithmetic (as SQL computes it), else None.

    A whole-number column times a whole number stays an integer in SQL: past the 64-bit range
    PostgreSQL fails the query and SQLite silently switches to floating point, while Python
    computes it exactly. Such expressions are refused when they are checked.
    """
    if isinstance(expr, Const):
        value = expr.value
        return abs(value) if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(expr, Field):
        return INTEGER_COLUMN_MAX if expr.name in integer_fields(expr.entity) else None
    if isinstance(expr, Negate):
        return integer_bound(expr.operand)
    if isinstance(expr, Arith) and expr.type is Type.NUMBER and expr.op in "+-*":
        left, right = integer_bound(expr.left), integer_bound(expr.right)
        if left is None or right is None:
            return None
        return left * right if expr.op == "*" else left + right
    return None


def constant_value(expr: Expr) -> float | None:
    """The value of constant numeric arithmetic (numbers and + - * /) in floating point, as the
    databases compute a division; None when EXPR is not such arithmetic or divides by zero.
    Only used to refuse arithmetic that overflows: infinity comes back as infinity."""
    try:
        if isinstance(expr, Const):
            value = expr.value
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            return float(value) if is_number else None
        if isinstance(expr, Negate):
            inner = constant_value(expr.operand)
            return None if inner is None else -inner
        if isinstance(expr, Arith) and expr.type is Type.NUMBER:
            left, right = constant_value(expr.left), constant_value(expr.right)
            if left is None or right is None:
                return None
            if expr.op == "/":
                return None if right == 0 else left / right
            return left + right if expr.op == "+" else left - right if expr.op == "-" else left * right
    except OverflowError:
        return math.inf
    return None


def offset_bound(expr: Expr) -> timedelta:
    """How far a time or duration expression can move an instant, at most (the sum of its durations)."""
    if isinstance(expr, Const) and isinstance(expr.value, timedelta):
        return abs(expr.value)
    if isinstance(expr, Negate):
        return offset_bound(expr.operand)
    if isinstance(expr, Arith) and expr.type in (Type.TIME, Type.DURATION):
        return offset_bound(expr.left) + offset_bound(expr.right)
    return timedelta(0)


_ORDERED = {Type.NUMBER, Type.STRING, Type.TIME, Type.DURATION}
_EQUATABLE = _ORDERED | {Type.BOOL}


@dataclass
class _Analyser:
    about: str
    problems: list[Located] = field(default_factory=list)

    def fail(self, node: s.Node | int, message: str) -> Expr:
        offset = node if isinstance(node, int) else node.start
        self.problems.append(Located(offset, message))
        return _Failed(Type.NULL, None)  # placeholder so analysis continues and finds more problems

    # -- values ----------------------------------------------------------------------------
    def value(self, node: s.Node) -> Expr:
        if isinstance(node, s.Literal):
            return Const(_literal_type(node.value), node.value)
        if isinstance(node, s.Path):
            return self.path(node)
        if isinstance(node, s.Call):
            return self.call(node)
        if isinstance(node, s.Sign):
            operand = self.value(node.operand)
            operand = self.coerce(operand, Type.NUMBER)
            if operand.type not in (Type.NUMBER, Type.DURATION, Type.NULL):
                return self.fail(node, f"a sign needs a number or a duration, not a {operand.type}")
            return operand if node.op == "+" else Negate(operand.type, operand)
        if isinstance(node, s.Arith):
            return self.arith(node)
        if isinstance(node, s.ListLiteral):
            return self.fail(node, "a list can only follow `in` or `not in`")
        return self.condition(node)

    def path(self, node: s.Path) -> Expr:
        allowed = entities_for(self.about)
        entity, *rest = node.parts
        if entity not in allowed:
            scope = " and ".join(f"{e}.…" for e in allowed)
            return self.fail(
                node,
                f"unknown name '{entity}'{did_you_mean(entity, list(allowed))}: a rule about {self.about} can use {scope}",
            )
        if not rest:
            return self.fail(node, f"'{entity}' needs a field, e.g. {entity}.{next(iter(fields_of(entity)))}")
        fields = fields_of(entity)
        name, *keys = rest
        if name not in fields:
            offset = node.start + len(entity) + 1
            return self.fail(offset, f"unknown field '{entity}.{name}'{did_you_mean(name, list(fields))}")
        kind = fields[name]
        if kind is Type.JSON:
            return JsonField(Type.JSON, entity, name, tuple(keys))
        if keys:
            offset = node.start + len(entity) + len(name) + 2
            return self.fail(offset, f"'{entity}.{name}' is a {kind}; it has no field '{keys[0]}'")
        return Field(kind, entity, name)

    def call(self, node: s.Call) -> Expr:
        if node.name not in FUNCTIONS:
            return self.fail(
                node,
                f"unknown function '{node.name}'{did_you_mean(node.name, list(FUNCTIONS))}: the functions are now() and lower()",
            )
        if len(node.args) != FUNCTIONS[node.name]:
            want = FUNCTIONS[node.name]
            return self.fail(
                node, f"{node.name}() takes {want} argument{'s' if want != 1 else ''}, not {len(node.args)}"
            )
        if node.name == "now":
            return Now(Type.TIME)
        operand = self.coerce(self.value(node.args[0]), Type.STRING)
        if operand.type not in (Type.STRING, Type.NULL):
            return self.fail(node.args[0], f"lower() needs a string, not a {operand.type}")
        return Lower(Type.STRING, operand)

    def arith(self, node: s.Arith) -> Expr:
        left, right = self.value(node.left), self.value(node.right)
        if left.type is Type.JSON and right.type is not Type.JSON:
            left = self.coerce(left, Type.NUMBER)
        if right.type is Type.JSON:
            right = self.coerce(right, Type.NUMBER)
        left = self.coerce(left, Type.NUMBER)
        pair = (left.type, right.type)
        if isinstance(left, _Failed) or isinstance(right, _Failed):
            return _Failed(Type.NULL, None)
        if Type.NULL in pair:
            return self.fail(node, "arithmetic with null is always null: test with `is null` instead")
        result: Type | None = None
        if node.op in "+-":
            result = {
                (Type.NUMBER, Type.NUMBER): Type.NUMBER,
                (Type.TIME, Type.DURATION): Type.TIME,
                (Type.DURATION, Type.DURATION): Type.DURATION,
            }.get(pair)
            if node.op == "+" and pair == (Type.DURATION, Type.TIME):
                return Arith(Type.TIME, "+", right, left)
            if pair == (Type.TIME, Type.TIME) and node.op == "-":
                return self.fail(
                    node.op_start,
                    "two times cannot be subtracted: compare them with a duration instead, e.g. "
                    "order.delivered_at > order.promised_at + 1d",
                )
        elif pair == (Type.NUMBER, Type.NUMBER):
            result = Type.NUMBER
        if result is None:
            return self.fail(node.op_start, f"cannot apply '{node.op}' to a {left.type} and a {right.type}")
        return self.in_range(node, Arith(result, node.op, left, right))

    def in_range(self, node: s.Arith, expr: Arith) -> Expr:
        """EXPR, or a problem when its value can leave what SQL and Python compute alike."""
        if expr.type in (Type.TIME, Type.DURATION):
            if offset_bound(expr) > MAX_DURATION:
                return self.fail(
                    node.op_start,
                    f"the durations here add up to more than {MAX_DURATION_TEXT}: "
                    "a time can be moved by at most that much",
                )
            return expr
        bound = integer_bound(expr)
        if bound is not None and bound > s.MAX_NUMBER:
            return self.fail(
                node.op_start,
                f"this arithmetic can exceed {s.MAX_NUMBER:,}, the largest whole number the "
                "databases compute with: use smaller numbers",
            )
        value = constant_value(expr)
        if value is not None and not math.isfinite(value):
            return self.fail(node.op_start, "this arithmetic overflows: use smaller numbers")
        return expr

    # -- conditions ------------------------------------------------------------------------
    def condition(self, node: s.Node) -> Expr:
        if isinstance(node, s.BoolOp):
            left, right = self.boolean(node.left), self.boolean(node.right)
            return (And if node.op == "and" else Or)(Type.BOOL, left, right)
        if isinstance(node, s.Not):
            return Not(Type.BOOL, self.boolean(node.operand))
        if isinstance(node, s.Compare):
            return self.compare(node)
        if isinstance(node, s.In):
            return self.membership(node)
        if isinstance(node, s.IsNull):
            operand = self.value(node.operand)
            if isinstance(node.operand, s.Literal) and node.operand.value is None:
                return self.fail(node, "`null is null` is always true: test a field")
            return IsNull(Type.BOOL, operand, node.negated)
        return self.value(node)

    def boolean(self, node: s.Node) -> Expr:
        expr = self.coerce(self.value(node), Type.BOOL)
        if expr.type not in (Type.BOOL, Type.NULL):
            return self.fail(
                node,
                f"expected a condition (true or false), but this is a {expr.type}: compare it, e.g. `… == …`",
            )
        return expr

    def compare(self, node: s.Compare) -> Expr:
        left, right = self.value(node.left), self.value(node.right)
        for side in (node.left, node.right):
            if isinstance(side, s.Literal) and side.value is None:
                negation = "not " if node.op == "!=" else ""
                return self.fail(
                    side, f"comparing with null never matches (null is unknown): write `is {negation}null`"
                )
        if left.type is Type.JSON and right.type is Type.JSON:
            return self.fail(
                node, "two JSON attributes cannot be compared: compare an attribute with a value"
            )
        left = self.coerce(left, right.type)
        right = self.coerce(right, left.type)
        if Type.NULL in (left.type, right.type):
            return Const(Type.BOOL, None)  # an earlier problem was reported
        if left.type is not right.type:
            return self.fail(node.op_start, f"cannot compare a {left.type} with a {right.type}")
        allowed = _ORDERED if node.op in ("<", "<=", ">", ">=") else _EQUATABLE
        if left.type not in allowed:
            return self.fail(node.op_start, f"'{node.op}' does not apply to {left.type}s")
        return Compare(Type.BOOL, node.op, left, right)

    def membership(self, node: s.In) -> Expr:
        word = "not in" if node.negated else "in"
        if not isinstance(node.haystack, s.ListLiteral):
            return self.fail(node.haystack, f'`{word}` needs a list of values, e.g. ["placed", "shipped"]')
        if not node.haystack.items:
            return self.fail(node.haystack, "the list is empty: a value is never in an empty list")
        values: list[Any] = []
        types: set[Type] = set()
        for item in node.haystack.items:
            value = item.value if isinstance(item, s.Literal) else None
            if (
                isinstance(item, s.Sign)
                and isinstance(item.operand, s.Literal)
                and isinstance(item.operand.value, (int, float))
            ):
                value = -item.operand.value if item.op == "-" else item.operand.value
            elif not isinstance(item, s.Literal):
                self.fail(item, 'list items must be literal values (numbers or "strings")')
                continue
            if value is None:
                self.fail(item, "null in a list never matches: use `is null`")
                continue
            kind = _literal_type(value)
            if kind not in (Type.NUMBER, Type.STRING, Type.BOOL):
                self.fail(item, f"list items must be numbers or strings, not a {kind}")
                continue
            types.add(kind)
            values.append(value)
        if len(types) > 1:
            return self.fail(node.haystack, "list items must all be of one type")
        if not types:
            return Const(Type.BOOL, None)
        kind = types.pop()
        needle = self.coerce(self.value(node.needle), kind)
        if needle.type is Type.NULL:
            return Const(Type.BOOL, None)
        if needle.type is not kind:
            return self.fail(node.needle, f"a {needle.type} is never in a list of {kind}s")
        return In(Type.BOOL, needle, tuple(values), node.negated)

    def coerce(self, expr: Expr, wanted: Type) -> Expr:
        """Give a JSON attribute the type its context asks for."""
        if (
            isinstance(expr, JsonField)
            and expr.type is Type.JSON
            and wanted in (Type.NUMBER, Type.STRING, Type.BOOL)
        ):
            return JsonField(wanted, expr.entity, expr.name, expr.keys)
        return expr


def _literal_type(value: Any) -> Type:
    if value is None:
        return Type.NULL
    if isinstance(value, bool):
        return Type.BOOL
    if isinstance(value, (int, float)):
        return Type.NUMBER
    if isinstance(value, str):
        return Type.STRING
    if isinstance(value, timedelta):
        return Type.DURATION
    raise TypeError(value)


def analyse(tree: s.Node, about: str) -> Expr:
    """The typed form of a `when`/`goal` tree for a rule about ABOUT, or ExpressionProblems."""
    analyser = _Analyser(about)
    expr = analyser.boolean(tree)
    if analyser.problems:
        raise ExpressionProblems(analyser.problems)
    return expr


def compile_expression(text: str, about: str) -> Expr:
    """Parse and analyse TEXT; ExpressionProblems (with offsets) on any mistake."""
    try:
        tree = s.parse(text)
    except s.SyntaxProblem as exc:
        raise ExpressionProblems([Located(exc.offset, exc.message)]) from None
    return analyse(tree, about)

"""Parse a `when` expression into a syntax tree; positions are offsets into the expression text.

The grammar is in when.lark. Nothing here evaluates anything: the tree is checked by
`outreach.rules.expressions` and compiled by `outreach.rules.to_sql` / `outreach.rules.to_python`.

Everything after parsing walks the tree recursively, so its size is bounded here, with a
message that says so: at most MAX_LENGTH characters and MAX_DEPTH levels of nesting (`not`,
arithmetic, function calls, comparisons). A chain of `and` (or of `or`) is not nesting: it is
parsed flat and built as a balanced tree, so a chain of thousands of terms is only a dozen
levels deep (and/or are associative in SQL's three-valued logic, and the order of the terms is
kept). Literals are checked too: numbers within a 64-bit integer, durations within a century,
strings without NUL characters or lone surrogates (neither database can store them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from importlib.resources import files
from typing import Any

from lark import Lark, Token, Transformer_NonRecursive, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from outreach.durations import parse_duration
from outreach.encoding import UNSTORABLE

MAX_LENGTH = 20_000
MAX_DEPTH = 50
# The largest number a condition may hold: the range of SQL's BIGINT, which both databases
# bind a whole number as.
MAX_NUMBER = 2**63 - 1


@dataclass(frozen=True)
class Node:
    start: int
    end: int


@dataclass(frozen=True)
class Literal(Node):
    value: Any  # int | float | str | bool | None | timedelta


@dataclass(frozen=True)
class ListLiteral(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Path(Node):
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Call(Node):
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Sign(Node):
    op: str
    operand: Node


@dataclass(frozen=True)
class Arith(Node):
    op: str
    left: Node
    right: Node
    op_start: int


@dataclass(frozen=True)
class Compare(Node):
    op: str
    left: Node
    right: Node
    op_start: int


@dataclass(frozen=True)
class In(Node):
    needle: Node
    haystack: Node
    negated: bool


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node
    negated: bool


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    left: Node
    right: Node


@dataclass(frozen=True)
class Not(Node):
    operand: Node


class SyntaxProblem(Exception):
    """A located syntax error inside one expression."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


_TOKEN_NAMES = {
    "OR": "or",
    "AND": "and",
    "NOT": "not",
    "IN": "in",
    "IS": "is",
    "NULL": "null",
    "TRUE": "true",
    "FALSE": "false",
    "LSQB": "[",
    "RSQB": "]",
    "LPAR": "(",
    "RPAR": ")",
    "COMMA": ",",
    "DOT": ".",
    "COMPARE": "a comparison (== != < <= > >=)",
    "ADD": "+ or -",
    "MUL": "* or /",
    "NUMBER": "a number",
    "STRING": 'a "string"',
    "DURATION": "a duration (e.g. 2h)",
    "NAME": "a name",
    "$END": "the end of the expression",
}


def _describe(expected: set[str]) -> str:
    names = sorted({_TOKEN_NAMES.get(name, name.lower()) for name in expected})
    operands = {"a number", 'a "string"', "a duration (e.g. 2h)", "a name", "[", "(", "true", "false", "null"}
    if operands & set(names) and len(operands & set(names)) >= 4:
        names = ['a value (a path like order.status, a number, a "string", a duration, a list)'] + [
            n for n in names if n not in operands and n not in ("not", "+ or -")
        ]
    return ", ".join(names)


def _number(text: str, offset: int) -> int | float:
    too_large = f"the number {_cut(text)} is too large: numbers in a condition are at most {MAX_NUMBER:,}"
    if "." in text:
        value = float(text)
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            raise SyntaxProblem(offset, too_large)
        return value
    # Python's int() refuses more than 4,300 digits; anything past 19 is too large anyway.
    if len(text.lstrip("0")) > 19 or int(text) > MAX_NUMBER:
        raise SyntaxProblem(offset, too_large)
    return int(text)


def _cut(text: str) -> str:
    return text if len(text) <= 24 else text[:21] + "..."


def _balanced(op: str, operands: list[Node]) -> Node:
    """OPERANDS joined by OP as a balanced tree of BoolOp, in their order."""
    if len(operands) == 1:
        return operands[0]
    middle = len(operands) // 2
    left, right = _balanced(op, operands[:middle]), _balanced(op, operands[middle:])
    return BoolOp(left.start, right.end, op, left, right)


@v_args(meta=True, inline=True)
class _Build(Transformer_NonRecursive[Token, Node]):
    def number(self, meta: Any, token: Token) -> Literal:
        return Literal(meta.start_pos, meta.end_pos, _number(str(token), meta.start_pos))

    def string(self, meta: Any, token: Token) -> Literal:
        try:
            value = json.loads(str(token))
        except ValueError as exc:
            raise SyntaxProblem(
                meta.start_pos, f"this string cannot be read: {getattr(exc, 'msg', exc)}"
            ) from None
        bad = UNSTORABLE.search(value)
        if bad is not None:
            what = "a NUL character" if bad.group() == "\x00" else "a lone surrogate (half of a UTF-16 pair)"
            raise SyntaxProblem(
                meta.start_pos, f"this string holds {what}, which cannot be stored or compared"
            )
        return Literal(meta.start_pos, meta.end_pos, value)

    def duration(self, meta: Any, token: Token) -> Literal:
        try:
            value = parse_duration(str(token))
        except ValueError as exc:
            raise SyntaxProblem(meta.start_pos, str(exc)) from None
        return Literal(meta.start_pos, meta.end_pos, value)

    def true(self, meta: Any) -> Literal:
        return Literal(meta.start_pos, meta.end_pos, True)

    def false(self, meta: Any) -> Literal:
        return Literal(meta.start_pos, meta.end_pos, False)

    def null(self, meta: Any) -> Literal:
        return Literal(meta.start_pos, meta.end_pos, None)

    def list(self, meta: Any, *items: Node | None) -> ListLiteral:
        return ListLiteral(meta.start_pos, meta.end_pos, tuple(i for i in items if i is not None))

    def call(self, meta: Any, name: Token, *args: Node | None) -> Call:
        return Call(meta.start_pos, meta.end_pos, str(name), tuple(a for a in args if a is not None))

    def path(self, meta: Any, *names: Token) -> Path:
        return Path(meta.start_pos, meta.end_pos, tuple(str(n) for n in names))

    def sign(self, meta: Any, op: Token, operand: Node) -> Node:
        return Sign(meta.start_pos, meta.end_pos, str(op), operand)

    def arith(self, meta: Any, left: Node, op: Token, right: Node) -> Arith:
        return Arith(meta.start_pos, meta.end_pos, str(op), left, right, op.start_pos or 0)

    def compare(self, meta: Any, left: Node, op: Token, right: Node) -> Compare:
        return Compare(meta.start_pos, meta.end_pos, str(op), left, right, op.start_pos or 0)

    def in_(self, meta: Any, needle: Node, haystack: Node) -> In:
        return In(meta.start_pos, meta.end_pos, needle, haystack, False)

    def not_in(self, meta: Any, needle: Node, haystack: Node) -> In:
        return In(meta.start_pos, meta.end_pos, needle, haystack, True)

    def is_null(self, meta: Any, operand: Node) -> IsNull:
        return IsNull(meta.start_pos, meta.end_pos, operand, False)

    def is_not_null(self, meta: Any, operand: Node) -> IsNull:
        return IsNull(meta.start_pos, meta.end_pos, operand, True)

    def and_(self, meta: Any, *operands: Node) -> Node:
        return _balanced("and", list(operands))

    def or_(self, meta: Any, *operands: Node) -> Node:
        return _balanced("or", list(operands))

    def not_(self, meta: Any, operand: Node) -> Not:
        return Not(meta.start_pos, meta.end_pos, operand)


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, (Arith, Compare, BoolOp)):
        return (node.left, node.right)
    if isinstance(node, (Not, Sign, IsNull)):
        return (node.operand,)
    if isinstance(node, In):
        return (node.needle, node.haystack)
    if isinstance(node, ListLiteral):
        return node.items
    if isinstance(node, Call):
        return node.args
    return ()


def _check_depth(root: Node) -> None:
    """SyntaxProblem at the first node nested deeper than MAX_DEPTH (walked without recursion)."""
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SyntaxProblem(
                node.start,
                f"the condition nests more than {MAX_DEPTH} levels deep here (not, arithmetic, "
                "parentheses around operators, function calls): write it more simply or split it",
            )
        stack.extend((child, depth + 1) for child in _children(node))


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = files("outreach.rules").joinpath("when.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


@lru_cache(maxsize=1024)
def parse(text: str) -> Node:
    """The syntax tree of TEXT; SyntaxProblem (with the offset) says what was expected where."""
    if not text.strip():
        raise SyntaxProblem(
            0, 'the condition is empty: write an expression such as order.status == "shipped"'
        )
    if len(text) > MAX_LENGTH:
        raise SyntaxProblem(
            MAX_LENGTH,
            f"the condition is {len(text):,} characters long; a condition may be at most {MAX_LENGTH:,}",
        )
    try:
        tree = _parser().parse(text)
        node: Node = _Build().transform(tree)
    except SyntaxProblem:
        raise
    except UnexpectedCharacters as exc:
        offset = exc.pos_in_stream or 0
        char = text[offset] if offset < len(text) else ""
        hint = ""
        if char == "'":
            hint = ' (strings use double quotes: "like this")'
        elif char == "=":
            hint = " (compare with ==)"
        elif char in "&|!":
            hint = " (use and, or, not)"
        raise SyntaxProblem(
            offset, f"unexpected character {char!r}{hint}; expected {_describe(set(exc.allowed or ()))}"
        ) from None
    except UnexpectedEOF as exc:
        raise SyntaxProblem(
            len(text.rstrip()), f"the expression ends too early; expected {_describe(set(exc.expected))}"
        ) from None
    except UnexpectedToken as exc:
        token = exc.token
        if token.type == "$END":
            raise SyntaxProblem(
                len(text.rstrip()), f"the expression ends too early; expected {_describe(set(exc.expected))}"
            ) from None
        raise SyntaxProblem(
            token.start_pos or 0, f"unexpected {str(token)!r}; expected {_describe(set(exc.expected))}"
        ) from None
    except UnexpectedInput as exc:  # pragma: no cover - the three cases above are exhaustive in lark 1.x
        raise SyntaxProblem(getattr(exc, "pos_in_stream", 0) or 0, str(exc)) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, SyntaxProblem):
            raise exc.orig_exc from None
        raise SyntaxProblem(0, str(exc.orig_exc)) from None
    _check_depth(node)
    return node


__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_NUMBER",
    "Arith",
    "BoolOp",
    "Call",
    "Compare",
    "In",
    "IsNull",
    "ListLiteral",
    "Literal",
    "Node",
    "Not",
    "Path",
    "Sign",
    "SyntaxProblem",
    "parse",
    "timedelta",
]

"""Parse a `when` expression into a syntax tree; positions are offsets into the expression text.

The grammar is in when.lark. Nothing here evaluates anything: the tree is checked by
`outreach.rules.types` and compiled by `outreach.rules.to_sql` / `outreach.rules.to_python`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from importlib.resources import files
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from outreach.durations import parse_duration


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


@v_args(meta=True, inline=True)
class _Build(Transformer[Token, Node]):
    def number(self, meta: Any, token: Token) -> Literal:
        text = str(token)
        value: int | float = float(text) if "." in text else int(text)
        return Literal(meta.start_pos, meta.end_pos, value)

    def string(self, meta: Any, token: Token) -> Literal:
        return Literal(meta.start_pos, meta.end_pos, json.loads(str(token)))

    def duration(self, meta: Any, token: Token) -> Literal:
        return Literal(meta.start_pos, meta.end_pos, parse_duration(str(token)))

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

    def and_(self, meta: Any, left: Node, right: Node) -> BoolOp:
        return BoolOp(meta.start_pos, meta.end_pos, "and", left, right)

    def or_(self, meta: Any, left: Node, right: Node) -> BoolOp:
        return BoolOp(meta.start_pos, meta.end_pos, "or", left, right)

    def not_(self, meta: Any, operand: Node) -> Not:
        return Not(meta.start_pos, meta.end_pos, operand)


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
    try:
        tree = _parser().parse(text)
        return _Build().transform(tree)
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
        raise SyntaxProblem(0, str(exc.orig_exc)) from None


__all__ = [
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

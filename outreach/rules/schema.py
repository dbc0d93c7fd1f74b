"""What a `when` expression may refer to: entities, their fields and the fields' types.

Derived from the state tables, so a new column is usable in rules as soon as it exists.
"""

from __future__ import annotations

from enum import Enum
from functools import cache
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String
from sqlalchemy.sql.schema import Column
from sqlalchemy.types import TypeDecorator

from outreach.state.models import entity_table
from outreach.state.types import UTCDateTime
from outreach.vocabulary import ABOUTS


class Type(Enum):
    NUMBER = "number"
    STRING = "string"
    BOOL = "boolean"
    TIME = "time"
    DURATION = "duration"
    NULL = "null"
    JSON = "JSON value"

    def __str__(self) -> str:
        return self.value


# What a rule may be about, and the entities its `when` may name.
ABOUT_ENTITIES: tuple[str, ...] = tuple(str(about) for about in ABOUTS)


def column_type(column: Column[Any]) -> Type:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return Type.TIME
    if isinstance(kind, TypeDecorator):  # e.g. SQLModel's AutoString
        kind = kind.impl_instance
    if isinstance(kind, Boolean):
        return Type.BOOL
    if isinstance(kind, (Integer, Float)):
        return Type.NUMBER
    if isinstance(kind, JSON):
        return Type.JSON
    if isinstance(kind, String):
        return Type.STRING
    raise TypeError(f"no rule-language type for column {column.name} ({kind!r})")


@cache
def fields_of(entity: str) -> dict[str, Type]:
    """The fields of ENTITY (`order`, `customer`, …) and their types, in table order."""
    table = entity_table(entity)
    return {column.name: column_type(column) for column in table.columns}


# The range of SQL's INTEGER (PostgreSQL's int4), the widest value a whole-number column holds.
INTEGER_COLUMN_MAX = 2**31 - 1


@cache
def integer_fields(entity: str) -> frozenset[str]:
    """The fields of ENTITY stored as whole numbers (their arithmetic is integer arithmetic in SQL)."""
    table = entity_table(entity)
    return frozenset(column.name for column in table.columns if isinstance(column.type, Integer))


def entities_for(about: str) -> tuple[str, ...]:
    """The entities a rule about ABOUT can refer to."""
    return ("customer",) if about == "customer" else (about, "customer")

"""Evaluate rules: one set-based query per rule and tick, and the same condition on one record."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Select

from outreach.clock import EARLIEST
from outreach.memory import collector_paused
from outreach.rules.expressions import Expr, paths_of
from outreach.rules.to_python import compile_python
from outreach.rules.to_sql import compile_sql
from outreach.state.models import entity_table


class Since(NamedTuple):
    """An earlier sweep of the same condition, at the instant NOW, that saw every record WRITTEN
    says false of (given its table): only the records written since, or of which the condition
    did not hold at NOW, can be matches it did not find."""

    now: datetime
    written: Callable[[sa.Table], ColumnElement[bool]]


class Match(NamedTuple):
    """A rule's condition holds for one entity (an order, a checkout, …) of one customer."""

    rule: str
    customer_id: str
    entity_id: str


def matches_query(
    about: str,
    condition: Expr,
    dialect: str,
    now: datetime,
    customer_id: str | None = None,
    entity_ids: Sequence[str] | None = None,
    restrict: Callable[[ColumnElement[Any]], ColumnElement[bool]] | None = None,
    customer_ids: Sequence[str] | None = None,
    since: Since | None = None,
) -> Select[Any]:
    """SELECT entity id, customer id of every entity of kind ABOUT for which CONDITION holds at NOW.

    RESTRICT, given the entity's id column, adds a condition of the caller's (the ledger's
    "not decided yet" anti-join, say); SINCE leaves out what an earlier sweep already found."""
    entity = entity_table(about)
    customers = entity_table("customer")
    where = compile_sql(condition, dialect, now)
    read = [entity]
    if about == "customer":
        query = sa.select(entity.c.id, entity.c.id).where(where)
        owner = entity.c.id
    else:
        query = sa.select(entity.c.id, entity.c.customer_id)
        # The join costs a lookup per candidate row: only pay it when the rule reads the customer.
        if "customer" in paths_of(condition):
            query = query.join(customers, customers.c.id == entity.c.customer_id)
            read.append(customers)
        query = query.where(where)
        owner = entity.c.customer_id
    if since is not None:
        held_then = sa.func.coalesce(compile_sql(condition, dialect, since.now), sa.false())
        query = query.where(sa.or_(*(since.written(table) for table in read), sa.not_(held_then)))
    if customer_id is not None:
        query = query.where(owner == customer_id)
    if customer_ids is not None:
        query = query.where(owner.in_(list(customer_ids)))
    if entity_ids is not None:
        query = query.where(entity.c.id.in_(list(entity_ids)))
    if restrict is not None:
        query = query.where(restrict(entity.c.id))
    return query


def query_fingerprint(about: str, condition: Expr) -> str:
    """What a rule's matches depend on, for its sweep (`outreach.state.sweeps`): its query, as
    compiled for PostgreSQL at a fixed instant, with its parameters. A changed `when`, or a
    change in the compiler or the tables, gives another, and the rule is swept whole again."""
    query = matches_query(about, condition, "postgresql", EARLIEST)
    compiled = query.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    parameters = sorted((name, repr(value)) for name, value in compiled.params.items())
    return hashlib.sha256(f"{compiled}\0{parameters!r}".encode()).hexdigest()


def find_matches(
    bind: Connection | Session,
    rule: Any,
    now: datetime,
    *,
    customer_id: str | None = None,
    entity_ids: Sequence[str] | None = None,
    restrict: Callable[[ColumnElement[Any]], ColumnElement[bool]] | None = None,
    customer_ids: Sequence[str] | None = None,
    since: Since | None = None,
) -> list[Match]:
    """Every match of RULE at NOW (optionally for one customer, or among ENTITY_IDS, or not
    found by the sweep SINCE), in one query."""
    connection = bind.connection() if isinstance(bind, Session) else bind
    query = matches_query(
        rule.about,
        rule.condition,
        connection.dialect.name,
        now,
        customer_id,
        entity_ids,
        restrict,
        customer_ids,
        since,
    )
    # A large audience is 10^5 rows: fetch them in one driver call and build each Match with
    # tuple.__new__ (C) rather than the NamedTuple's Python-level __new__.
    name, new = rule.name, tuple.__new__
    with collector_paused():
        return [new(Match, (name, customer, entity)) for entity, customer in connection.execute(query).all()]


def condition_holds(condition: Expr, records: Mapping[str, Any], now: datetime) -> bool:
    """True when CONDITION is true (not false, not unknown) for RECORDS ({"customer": …, "order": …})."""
    return _predicate(condition)(records, now) is True


_predicate = lru_cache(maxsize=1024)(compile_python)

"""The compiled SQL and the Python predicate of any `when` expression agree on any data.

Random well-typed expressions over random customers and orders — with nulls, JSON attributes of
every type, non-ASCII strings and equal values — are evaluated as one SQL query and record by
record in Python, on SQLite and on PostgreSQL; the sets of matching orders must be identical. Set OUTREACH_PROPERTY_EXAMPLES (default 200 per
family) for a longer search.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from outreach.rules.evaluate import condition_holds, matches_query
from outreach.rules.expressions import ExpressionProblems, compile_expression
from outreach.state.models import Customer, Order

NOW = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
customers = Customer.__table__  # type: ignore[attr-defined]
orders = Order.__table__  # type: ignore[attr-defined]

# -- expressions ----------------------------------------------------------------------------
STRINGS = ["", "a", "A", "ab", "É", "é", "ع", "Zz"]
quoted = st.sampled_from(STRINGS).map(lambda v: '"' + v + '"')
small_int = st.sampled_from(["0", "1", "2", "-1", "10"])
small_float = st.sampled_from(["0.5", "1.5", "2.25", "10.0"])
duration = st.sampled_from(["0s", "30m", "1h", "1d", "2d", "1w", "1h30m"])


def number(depth: int) -> st.SearchStrategy[str]:
    leaves = st.one_of(
        st.sampled_from(["order.total", "customer.attributes.n", "customer.attributes.deep.n"]),
        small_int,
        small_float,
    )
    if depth <= 0:
        return leaves
    sub = number(depth - 1)
    return st.one_of(
        leaves,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda v: f"-{v}"),
    )


def string(depth: int) -> st.SearchStrategy[str]:
    leaves = st.one_of(
        st.sampled_from(["order.status", "order.carrier", "customer.name", "customer.attributes.s"]),
        quoted,
    )
    if depth <= 0:
        return leaves
    return st.one_of(leaves, string(depth - 1).map(lambda v: f"lower({v})"))


def time(depth: int) -> st.SearchStrategy[str]:
    leaves = st.sampled_from(["order.placed_at", "order.promised_at", "order.delivered_at", "now()"])
    if depth <= 0:
        return leaves
    return st.one_of(
        leaves,
        st.tuples(time(depth - 1), st.sampled_from(["+", "-"]), duration).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
    )


ORDERING = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


def _list(items: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(items, min_size=1, max_size=3).map(lambda v: "[" + ", ".join(v) + "]")


# Each family of atoms is tested on its own as well as mixed, so that rare corners (a division
# by a zero field, lower() of a non-ASCII name) are reached within a few hundred examples.
FAMILIES: dict[str, st.SearchStrategy[str]] = {
    "numbers": st.one_of(
        st.tuples(number(2), ORDERING, number(1)).map(" ".join),
        st.tuples(number(0), st.sampled_from(["in", "not in"]), _list(small_int)).map(" ".join),
    ),
    "strings": st.one_of(
        st.tuples(string(1), ORDERING, string(1)).map(" ".join),
        st.tuples(string(1), st.sampled_from(["in", "not in"]), _list(quoted)).map(" ".join),
    ),
    "times": st.tuples(time(2), ORDERING, time(2)).map(" ".join),
    "booleans": st.one_of(
        st.tuples(
            st.sampled_from(["customer.email_opt_in", "customer.attributes.b"]),
            st.sampled_from(["==", "!="]),
            st.sampled_from(["true", "false", "customer.sms_opt_in"]),
        ).map(" ".join),
        st.sampled_from(["customer.email_opt_in", "customer.attributes.b", "true", "false"]),
    ),
    "nulls": st.tuples(
        st.sampled_from(
            [
                "order.delivered_at",
                "order.total",
                "order.carrier",
                "customer.attributes.n",
                "customer.attributes.deep",
                "customer.attributes",
                "lower(customer.attributes.s)",
                "(order.total / customer.attributes.n)",
            ]
        ),
        st.sampled_from(["is null", "is not null"]),
    ).map(" ".join),
}
FAMILIES["mixed"] = st.one_of(*FAMILIES.values())


def condition(depth: int, atoms: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    if depth <= 0:
        return atoms
    sub = condition(depth - 1, atoms)
    return st.one_of(
        atoms,
        st.tuples(sub, st.sampled_from(["and", "or"]), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda v: f"not ({v})"),
    )


# -- data -----------------------------------------------------------------------------------
instants = st.one_of(
    st.none(),
    st.sampled_from([NOW, NOW - timedelta(days=1), NOW - timedelta(hours=1), NOW + timedelta(minutes=30)]),
    st.integers(-10 * 86400, 10 * 86400).map(lambda s: NOW + timedelta(seconds=s, microseconds=s % 7)),
)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, 1, 2, -1, 0.5, 2.25]), st.sampled_from(STRINGS)
)
attributes = st.fixed_dictionaries(
    {},
    optional={
        "n": json_scalar,
        "s": json_scalar,
        "b": json_scalar,
        "deep": st.one_of(json_scalar, st.fixed_dictionaries({}, optional={"n": json_scalar})),
    },
)
customer_rows = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(STRINGS),
            "email_opt_in": st.booleans(),
            "sms_opt_in": st.booleans(),
            "attributes": attributes,
        }
    ),
    min_size=1,
    max_size=4,
)
order_rows = st.lists(
    st.fixed_dictionaries(
        {
            "customer": st.integers(0, 3),
            "status": st.sampled_from(["placed", "shipped", "delivered", "cancelled", "É"]),
            "carrier": st.one_of(st.none(), st.sampled_from(STRINGS)),
            "total": st.one_of(st.none(), st.sampled_from([0, 1, 2, -1, 0.0, 0.5, 2.25, 10.0])),
            "placed_at": instants,
            "promised_at": instants,
            "delivered_at": instants,
        }
    ),
    min_size=1,
    max_size=8,
)


def _load(engine: Engine, people: list[dict[str, Any]], purchases: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        connection.execute(orders.delete())
        connection.execute(customers.delete())
        connection.execute(
            customers.insert(),
            [{"id": f"c{i}", "locale": "en", "timezone": "UTC", **person} for i, person in enumerate(people)],
        )
        rows = []
        for i, purchase in enumerate(purchases):
            row = dict(
                purchase, id=f"o{i}", customer_id=f"c{purchase['customer'] % len(people)}", attributes={}
            )
            row.pop("customer")
            rows.append(row)
        connection.execute(orders.insert(), rows)


def _python_matches(engine: Engine, expr: Any) -> set[str]:
    with engine.connect() as connection:
        people = {row["id"]: dict(row) for row in connection.execute(sa.select(customers)).mappings()}
        purchases = [dict(row) for row in connection.execute(sa.select(orders)).mappings()]
    return {
        purchase["id"]
        for purchase in purchases
        if condition_holds(expr, {"order": purchase, "customer": people[purchase["customer_id"]]}, NOW)
    }


@pytest.mark.parametrize("family", list(FAMILIES))
@settings(
    max_examples=int(os.environ.get("OUTREACH_PROPERTY_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), people=customer_rows, purchases=order_rows)
def test_sql_and_python_agree_on_every_record(
    engine: Engine,
    family: str,
    data: st.DataObject,
    people: list[dict[str, Any]],
    purchases: list[dict[str, Any]],
) -> None:
    """For any expression and any data, the SQL query matches exactly the orders the Python predicate accepts."""
    text = data.draw(condition(2, FAMILIES[family]), label="when")
    try:
        expr = compile_expression(text, "order")
    except ExpressionProblems:
        reject()  # e.g. two JSON attributes compared: a type error, covered by the error tests
    _load(engine, people, purchases)
    with engine.connect() as connection:
        query = matches_query("order", expr, engine.dialect.name, NOW)
        in_sql = {entity for entity, _customer in connection.execute(query)}
    assert in_sql == _python_matches(engine, expr), text


@pytest.mark.parametrize(
    "text",
    [
        "order.total == (0 / 0)",
        "order.total < (0 / 0)",
        "not (order.total != 1 / 0)",
        "order.total * (0 / 0) is null",
    ],
)
def test_a_computed_null_is_unknown_in_sql_as_in_python(engine: Engine, text: str) -> None:
    """A constant that computes to null (division by zero) compares as unknown on both sides, never as `IS NULL`."""
    expr = compile_expression(text, "order")
    people = [{"name": "a", "email_opt_in": True, "sms_opt_in": True, "attributes": {}}]
    purchases = [
        {
            "customer": 0,
            "status": "placed",
            "carrier": None,
            "total": total,
            "placed_at": None,
            "promised_at": None,
            "delivered_at": None,
        }
        for total in (None, 0, 1.5)
    ]
    _load(engine, people, purchases)
    with engine.connect() as connection:
        in_sql = {
            entity
            for entity, _customer in connection.execute(
                matches_query("order", expr, engine.dialect.name, NOW)
            )
        }
    assert in_sql == _python_matches(engine, expr)

"""`explain` by clause: which clauses of a condition are false or unknown, and the values they read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from outreach.rules.clauses import failing_clauses, format_value, to_text
from outreach.rules.expressions import compile_expression

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
LATE = 'order.status != "cancelled" and order.delivered_at is null and order.promised_at < now() - 1d'


def why(when: str, about: str = "order", **records: Any) -> list[str]:
    records.setdefault("customer", {})
    return [clause.describe() for clause in failing_clauses(compile_expression(when, about), records, NOW)]


def test_a_delivered_order_names_the_null_test_and_the_delivery_time() -> None:
    order = {
        "status": "delivered",
        "delivered_at": datetime(2026, 11, 23, 8, tzinfo=UTC),
        "promised_at": NOW - timedelta(days=3),
    }
    assert why(LATE, order=order) == [
        "`order.delivered_at is null` is false: order.delivered_at = 2026-11-23T08:00Z"
    ]


def test_every_false_clause_is_named_with_computed_operands() -> None:
    order = {"status": "cancelled", "delivered_at": None, "promised_at": NOW}
    assert why(LATE, order=order) == [
        '`order.status != "cancelled"` is false: order.status = "cancelled"',
        "`order.promised_at < now() - 1d` is false: order.promised_at = 2026-11-24T12:00Z, now() - 1d = 2026-11-23T12:00Z",
    ]


def test_a_clause_reading_a_null_is_unknown() -> None:
    survey = {"kind": "nps", "score": None, "responded_at": NOW}
    assert why('survey.kind == "nps" and survey.score <= 6', "survey", survey=survey) == [
        "`survey.score <= 6` is unknown: survey.score = null"
    ]


def test_a_condition_that_holds_has_no_failing_clause() -> None:
    order = {"status": "shipped", "delivered_at": None, "promised_at": NOW - timedelta(days=2)}
    assert why(LATE, order=order) == []


def test_an_or_is_reported_whole_with_what_each_side_read() -> None:
    order = {"status": "placed", "carrier": "DHL"}
    assert why('order.status == "shipped" or lower(order.carrier) == "ups"', order=order) == [
        '`order.status == "shipped" or lower(order.carrier) == "ups"` is false:'
        ' order.status = "placed", lower(order.carrier) = "dhl", order.carrier = "DHL"'
    ]


def test_a_double_negation_is_looked_through_but_a_negated_or_is_not() -> None:
    order = {"status": "placed", "total": 5.0}
    assert why('not not (order.total > 10 and order.status == "placed")', order=order) == [
        "`order.total > 10` is false: order.total = 5"
    ]
    assert why('not (order.total < 10 or order.status == "x")', order=order) == [
        '`not (order.total < 10 or order.status == "x")` is false: order.total = 5, order.status = "placed"'
    ]


def test_json_attributes_are_read_as_the_comparison_types_them() -> None:
    customer = {"attributes": {"tier": "gold", "ltv": "lots"}}
    assert why(
        'customer.attributes.tier == "vip" and customer.attributes.ltv > 100', "customer", customer=customer
    ) == [
        '`customer.attributes.tier == "vip"` is false: customer.attributes.tier = "gold"',
        "`customer.attributes.ltv > 100` is unknown: customer.attributes.ltv = null",
    ]


@pytest.mark.parametrize(
    "when",
    [
        LATE,
        "(order.total - 1) * 2 > -(order.total / 3)",
        "order.total - (1 - 2) > 0",
        "not (order.total > 1) or order.placed_at + 2h <= now()",
        '(order.total > 1) == (order.status in ["a", "b"])',
        "order.total not in [-1, 2.5]",
        "lower(order.carrier) is not null and customer.email_opt_in",
        "order.total > 0.00001",
        "(true and customer.email_opt_in) and not customer.attributes.b",
        "order.total > 1 or order.total > 2 or order.total > 3 or order.total > 4",
    ],
)
def test_a_condition_written_back_compiles_to_the_same_expression(when: str) -> None:
    expr = compile_expression(when, "order")
    assert compile_expression(to_text(expr), "order") == expr


@pytest.mark.parametrize(
    "when",
    [
        "order.total > 1 and order.total > 2 and order.total > 3 and order.total > 4 and order.total > 5",
        "(order.total > 1 and order.total > 2) and order.total > 3",
        "order.total > 1 and (order.total > 2 and order.total > 3 and order.total > 4)",
        "(order.total > 1 or order.total > 2) and order.total > 3 or order.total > 4",
    ],
)
def test_a_chain_is_written_back_with_the_brackets_it_was_written_with(when: str) -> None:
    assert to_text(compile_expression(when, "order")) == when


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 11, 23, 8, 0, tzinfo=UTC), "2026-11-23T08:00Z"),
        (datetime(2026, 11, 23, 8, 0, 30, tzinfo=UTC), "2026-11-23T08:00:30Z"),
        (None, "null"),
        ("late", '"late"'),
        (42.0, "42"),
        (2.5, "2.5"),
        (True, "true"),
        (timedelta(hours=36), "1d12h"),
        ({"tier": "vip"}, '{"tier": "vip"}'),
    ],
)
def test_values_read_are_shown_as_a_person_reads_them(value: Any, text: str) -> None:
    assert format_value(value) == text

"""`explain` by clause on any condition and any record: the clauses it names really are false or
unknown, no smaller one could be named instead, and none is left out — making every named clause
true makes the whole condition true. Conditions and records come from the generators of the
SQL/Python equivalence test, so the same corners (nulls, JSON attributes, divisions by zero) are met.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st

from outreach.rules import expressions as e
from outreach.rules.clauses import evaluate, failing_clauses, to_text
from outreach.rules.expressions import ExpressionProblems, compile_expression
from tests.property.test_when_equivalence import FAMILIES, NOW, condition, customer_rows, order_rows

# Half the equivalence test's search per family: evaluation is pure Python, the search is the cost.
EXAMPLES = int(os.environ.get("OUTREACH_PROPERTY_EXAMPLES", "200")) // 2


def _records(people: list[dict[str, Any]], purchases: list[dict[str, Any]]) -> dict[str, Any]:
    return {"customer": people[0], "order": purchases[0]}


def _replace(expr: e.Expr, targets: set[int]) -> e.Expr:
    """EXPR with each subexpression whose id is in TARGETS replaced by `true`."""
    if id(expr) in targets:
        return e.Const(e.Type.BOOL, True)
    changes = {
        f.name: _replace(value, targets)
        for f in dataclasses.fields(expr)
        if isinstance(value := getattr(expr, f.name), e.Expr)
    }
    return dataclasses.replace(expr, **changes) if changes else expr


def _compile(text: str) -> e.Expr:
    try:
        return compile_expression(text, "order")
    except ExpressionProblems:
        reject()
        raise  # unreachable: reject() raises


@pytest.mark.parametrize("family", list(FAMILIES))
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), people=customer_rows, purchases=order_rows)
def test_named_clauses_are_false_or_unknown_and_making_them_true_makes_the_condition_hold(
    family: str, data: st.DataObject, people: list[dict[str, Any]], purchases: list[dict[str, Any]]
) -> None:
    expr = _compile(data.draw(condition(2, FAMILIES[family]), label="when"))
    records = _records(people, purchases)
    clauses = failing_clauses(expr, records, NOW)
    if evaluate(expr, records, NOW) is True:
        assert clauses == []
        return
    assert clauses, "a condition that does not hold names at least one clause"
    for clause in clauses:
        assert evaluate(clause.expr, records, NOW) is clause.value and clause.value in (False, None)
        # Smallest: an `and` would have been split, a double negation looked through.
        assert not isinstance(clause.expr, e.And)
        assert not (isinstance(clause.expr, e.Not) and isinstance(clause.expr.operand, e.Not))
    assert evaluate(_replace(expr, {id(c.expr) for c in clauses}), records, NOW) is True


def _chain(items: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Two to six ITEMS joined by one `and` (or `or`) without brackets, as people write them."""
    word = st.sampled_from([" and ", " or "])
    return st.tuples(word, st.lists(items, min_size=2, max_size=6)).map(lambda t: t[0].join(t[1]))


_ATOMS = FAMILIES["mixed"]
# Fully bracketed trees of any shape, and flat chains (whose items may be bracketed chains).
_WRITTEN = st.one_of(
    condition(2, _ATOMS), _chain(st.one_of(condition(1, _ATOMS), _chain(_ATOMS).map(lambda t: f"({t})")))
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(when=_WRITTEN)
# Written flat, a left-nested `and` was read back as `a and (b and c)`, and a chain of four `or`s
# (balanced, as the parser builds it) as `a or b or (c or d)`.
@example(when="((true and customer.email_opt_in) and not (customer.attributes.b))")
@example(when="(order.total > 1 or order.total > 2) or order.total > 3 or order.total > 4")
def test_a_clause_is_shown_in_text_that_compiles_back_to_it(when: str) -> None:
    expr = _compile(when)
    assert compile_expression(to_text(expr), "order") == expr

"""Reading `rules/tests/*.yaml`: every mistake in a test file is reported with FILE:LINE:COL and a
did-you-mean, and a test with a mistake is not run. Each bad input below is a whole test file,
with the place and the words of the error it must give (like Prometheus's testdata/*.bad.yaml)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from outreach.rule_tests import Expectation, read_tests
from outreach.rules.loader import check_rules

REPO = Path(__file__).resolve().parents[3]
RULES, _ = check_rules(REPO / "rules")

HEAD = """\
tests:
  - name: t
    rule: late-delivery
"""
RECORDS = """\
    records:
      customers: [{id: c-1}]
      orders: [{id: o-1, status: shipped, promised_at: 2026-11-22T12:00:00Z}]
"""

BAD = {
    "unknown top-level key": (
        "test:\n  - name: t\n",
        1,
        1,
        "unknown field 'test' in a rule tests file (did you mean 'tests'?)",
    ),
    "unknown test field": (
        HEAD + "    now: 2026-11-24T12:00:00Z\n    expekt: match\n",
        5,
        5,
        "unknown field 'expekt' in a test (did you mean 'expect'?)",
    ),
    "unknown rule": (
        "tests:\n  - name: t\n    rule: late-delivry\n",
        3,
        11,
        "no rule named \"late-delivry\" (did you mean 'late-delivery'?)",
    ),
    "bad order status": (
        HEAD
        + "    now: 2026-11-24T12:00:00Z\n    customer: {id: c-1}\n    order: {id: o-1, status: shiped}\n    expect: match\n",
        6,
        30,
        "orders record: status: 'shiped' is not an order status (one of placed, shipped, delivered, cancelled); did you mean 'shipped'?",
    ),
    "unknown record field": (
        HEAD
        + "    now: 2026-11-24T12:00:00Z\n    customer: {id: c-1}\n    order: {id: o-1, promised_att: 2026-11-22T12:00:00Z}\n    expect: match\n",
        6,
        22,
        "unknown field 'promised_att' in a record of orders (did you mean 'promised_at'?)",
    ),
    "unknown table": (
        HEAD + "    records:\n      order: [{id: o-1}]\n",
        5,
        7,
        "unknown field 'order' in `records` (tables, as `outreach ingest` names them) (did you mean 'orders'?)",
    ),
    "bad phone": (
        HEAD + "    records:\n      customers: [{id: c-1, phone: 'call me'}]\n",
        5,
        36,
        "customers record: phone: 'call me' has letters in it",
    ),
    "unknown customer": (
        HEAD + "    records:\n      customers: [{id: c-1}]\n      orders: [{id: o-1, customer_id: c-2}]\n",
        6,
        39,
        "orders record: no customer 'c-2' in this test (did you mean 'c-1'?)",
    ),
    "unknown decision": (
        HEAD
        + RECORDS
        + "    timeline:\n      - at: 2026-11-24T12:00:00Z\n        expect: [{decision: defered}]\n",
        9,
        29,
        "unknown decision 'defered' (did you mean 'deferred'?): expected one of send, deferred, skipped",
    ),
    "unknown expectation field": (
        HEAD
        + RECORDS
        + "    timeline:\n      - at: 2026-11-24T12:00:00Z\n        expect: [{decision: send, chanel: sms}]\n",
        9,
        35,
        "unknown field 'chanel' in an expectation (did you mean 'channel'?)",
    ),
    "unknown step field": (
        HEAD
        + RECORDS
        + "    timeline:\n      - at: 2026-11-24T12:00:00Z\n        expects: [{decision: send}]\n",
        9,
        9,
        "unknown field 'expects' in a timeline step (did you mean 'expect'?)",
    ),
    "unknown entity": (
        HEAD
        + RECORDS
        + "    timeline:\n      - at: 2026-11-24T12:00:00Z\n        expect: [{entity: o-2, decision: send}]\n",
        9,
        27,
        "no order 'o-2' in this test (did you mean 'o-1'?): late-delivery is about orders",
    ),
    "instant without an offset": (
        HEAD
        + RECORDS
        + "    timeline:\n      - at: 2026-11-24T12:00:00\n        expect: [{decision: send}]\n",
        8,
        13,
        "at: '2026-11-24T12:00:00' has no UTC offset",
    ),
    "steps out of order": (
        HEAD
        + RECORDS
        + "    timeline:\n      - at: 2026-11-24T12:00:00Z\n        expect: [{decision: send}]\n"
        "      - at: 2026-11-24T11:00:00Z\n        expect: [{decision: none}]\n",
        10,
        13,
        "the steps of a timeline must be in time order",
    ),
    "bad setting": (
        HEAD + "    settings: {quiet_hours: 9pm-9am}\n",
        4,
        29,
        "settings.quiet_hours: '9pm-9am' is not a quiet-hours window",
    ),
    "unknown setting": (
        HEAD + "    settings: {max_per_dya: 1}\n",
        4,
        16,
        "unknown field 'max_per_dya' in `settings` (did you mean 'max_per_day'?)",
    ),
    "nothing expected": (
        HEAD + RECORDS + "    timeline:\n      - at: 2026-11-24T12:00:00Z\n",
        2,
        5,
        "the test expects nothing",
    ),
    "which entity": (
        HEAD + "    records:\n      customers: [{id: c-1}]\n      orders: [{id: o-1}, {id: o-2}]\n"
        "    now: 2026-11-24T12:00:00Z\n    expect: match\n",
        8,
        13,
        "say which order this expects with `entity:` (the test's orders: o-1, o-2)",
    ),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_mistake_in_a_test_file_is_reported_at_its_place(tmp_path: Path, name: str) -> None:
    text, line, col, message = BAD[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    tests, problems = read_tests(path, RULES)
    assert tests == []
    found = [(p.line, p.col) for p in problems if message in p.message]
    assert found == [(line, col)], [p.format() for p in problems]


def test_every_mistake_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        HEAD
        + "    records:\n      customers: [{id: c-1, timezone: Europe/Lodnon}]\n"
        + "      orders: [{id: o-1, status: shiped, promised_at: yesterday}]\n"
        + "    timeline:\n      - at: 2026-11-24T12:00:00Z\n        expect: [{decision: sned, channel: fax}]\n",
        encoding="utf-8",
    )
    _tests, problems = read_tests(path, RULES)
    expected = [
        (5, "timezone: 'Europe/Lodnon' is not"),
        (6, "status: 'shiped' is not an order status"),
        (6, "promised_at: 'yesterday' is not an ISO 8601 time"),
        (9, "unknown decision 'sned' (did you mean 'send'?)"),
        (9, "unknown channel 'fax'"),
    ]
    assert len(problems) == len(expected), [p.format() for p in problems]
    for problem, (line, words) in zip(problems, expected, strict=True):
        assert problem.line == line and words in problem.message, problem.format()


def test_the_short_form_reads_as_one_instant_expecting_a_match(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        HEAD + "    now: 2026-11-24T12:00:00Z\n    customer: {id: c-1}\n"
        "    order: {id: o-1, status: shipped, promised_at: 2026-11-22T12:00:00Z}\n    expect: match\n",
        encoding="utf-8",
    )
    [test], problems = read_tests(path, RULES)
    assert problems == []
    [step] = test.steps
    assert step.at == datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert [(c.table, c.values["id"]) for c in step.records] == [("customers", "c-1"), ("orders", "o-1")]
    assert step.records[1].values["customer_id"] == "c-1", "the only customer owns the order"
    assert step.expect == (Expectation(7, "late-delivery", "o-1", "c-1", match=True),)
    assert set(test.rules) == {"late-delivery", "stalled-checkout", "detractor-follow-up"}


def test_a_record_in_a_test_is_read_as_ingest_reads_a_csv_cell(tmp_path: Path) -> None:
    """Plain YAML scalars are text parsed per field: an id 0123 stays "0123" (not octal 83), a
    phone keeps its +, yes is true, a mapping is a JSON attribute."""
    path = tmp_path / "ok.yaml"
    path.write_text(
        HEAD + "    records:\n"
        "      customers: [{id: 0123, phone: +447911123456, sms_opt_in: yes, attributes: {tier: vip}}]\n"
        "      orders: [{id: o-1, total: 12.50}]\n"
        "    now: 2026-11-24T12:00:00Z\n    expect: match\n",
        encoding="utf-8",
    )
    [test], problems = read_tests(path, RULES)
    assert problems == []
    customer, order = test.steps[0].records
    assert customer.values == {
        "id": "0123",
        "phone": "+447911123456",
        "sms_opt_in": True,
        "attributes": {"tier": "vip"},
    }
    assert order.values == {"id": "o-1", "total": 12.5, "customer_id": "0123"}


def test_rules_names_the_rules_that_tick_and_an_expected_rule_ticks_even_if_left_out(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "tests:\n  - name: t\n    rules: [stalled-checkout]\n"
        "    records: {customers: [{id: c-1}], orders: [{id: o-1}], checkouts: [{id: k-1}]}\n"
        "    now: 2026-11-24T12:00:00Z\n"
        "    expect: [{rule: stalled-checkout, match: false}, {rule: late-delivery, match: false}]\n",
        encoding="utf-8",
    )
    [test], problems = read_tests(path, RULES)
    assert problems == [] and test.rules == ("stalled-checkout", "late-delivery")

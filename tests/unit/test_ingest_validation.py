"""Validating one ingest record: what is accepted, how it is cleaned, and what each mistake says."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

import email_validator
import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach.errors import Problem
from outreach.state.ingest import (
    FIELDS,
    TABLES,
    file_format,
    is_valid_phone,
    parse_email,
    parse_phone,
    read_csv,
    read_jsonl,
    table_for_path,
    validate_record,
)
from outreach.state.models import named_table

UTC = UTC


def customer(**fields: Any) -> dict[str, Any]:
    return {"id": "c1", **fields}


def order(**fields: Any) -> dict[str, Any]:
    return {"id": "o1", "customer_id": "c1", **fields}


def test_every_table_column_has_exactly_one_validation_rule() -> None:
    for table in TABLES:
        columns = set(named_table(table).c.keys())
        assert set(FIELDS[table]) == columns, table


@pytest.mark.parametrize(
    ("table", "record", "expected"),
    [
        ("customers", customer(email="Ann.Lee@Example.COM"), {"email": "Ann.Lee@example.com"}),
        ("customers", customer(phone="+44 20 7946 0101"), {"phone": "+442079460101"}),
        ("customers", customer(phone="+1 (212) 555-0103"), {"phone": "+12125550103"}),
        ("customers", customer(phone="+971500000109"), {"phone": "+971500000109"}),
        ("customers", customer(locale="ar-EG"), {"locale": "ar-EG"}),
        ("customers", customer(locale="ar_eg"), {"locale": "ar-EG"}),
        ("customers", customer(timezone="Africa/Cairo"), {"timezone": "Africa/Cairo"}),
        ("customers", customer(preferred_channel="sms"), {"preferred_channel": "sms"}),
        ("customers", customer(name="مريم عبد الله"), {"name": "مريم عبد الله"}),
        ("customers", customer(attributes={"tier": "gold"}), {"attributes": {"tier": "gold"}}),
        ("customers", {"id": 42}, {"id": "42"}),
        ("orders", order(currency="egp"), {"currency": "EGP"}),
        ("orders", order(total=0), {"total": 0.0}),
        (
            "orders",
            order(placed_at="2026-01-05T14:00:00+02:00"),
            {"placed_at": datetime(2026, 1, 5, 12, tzinfo=UTC)},
        ),
        (
            "orders",
            order(placed_at="2026-01-05T12:00:00Z"),
            {"placed_at": datetime(2026, 1, 5, 12, tzinfo=UTC)},
        ),
        (
            "orders",
            order(tracking_url="https://track.example.com/a?b=1"),
            {"tracking_url": "https://track.example.com/a?b=1"},
        ),
        ("survey_responses", {"id": "s1", "customer_id": "c1", "score": 7.0}, {"score": 7}),
    ],
)
def test_a_good_value_is_cleaned_to_its_stored_form(
    table: str, record: dict[str, Any], expected: dict[str, Any]
) -> None:
    result = validate_record(table, record)
    assert isinstance(result, dict), result
    assert {name: result[name] for name in expected} == expected


@pytest.mark.parametrize(
    ("table", "record", "problem"),
    [
        ("customers", {"name": "Ann"}, "id is missing"),
        ("customers", {"id": ""}, "id: must not be empty"),
        ("customers", {"id": None}, "id is missing"),
        ("customers", {"id": 1.5}, "id: must be a string, got a number"),
        ("orders", {"id": "o1"}, "customer_id is missing"),
        ("customers", customer(emial="a@example.com"), "unknown field 'emial' (did you mean 'email'?)"),
        (
            "customers",
            customer(email="ann@"),
            "email: 'ann@' is not a valid email address: There must be something after the @-sign.",
        ),
        (
            "customers",
            customer(email="ann.example.com"),
            "email: 'ann.example.com' is not a valid email address",
        ),
        (
            "customers",
            customer(phone="07700 900123"),
            "phone: '07700 900123' is not a phone number in international format",
        ),
        (
            "customers",
            customer(phone="+44 7700 900123"),
            "phone: '+44 7700 900123' is not a valid phone number",
        ),
        (
            "customers",
            customer(phone=447911123456),
            "phone: must be a phone number like +447911123456, got a number",
        ),
        ("customers", customer(locale="xx"), "locale: 'xx' is not a locale Babel knows (e.g. en, ar, ar-EG)"),
        (
            "customers",
            customer(timezone="Europe/Londn"),
            "timezone: 'Europe/Londn' is not an IANA time zone (did you mean 'Europe/London'?)",
        ),
        (
            "customers",
            customer(timezone="europe/london"),
            "timezone: 'europe/london' is not an IANA time zone (did you mean 'Europe/London'?)",
        ),
        ("customers", customer(timezone="GMT+3"), "timezone: 'GMT+3' is not an IANA time zone"),
        (
            "customers",
            customer(preferred_channel="whatsapp"),
            "preferred_channel: 'whatsapp' is not a channel (one of email, sms)",
        ),
        ("customers", customer(email_opt_in="yes"), "email_opt_in: must be true or false, got a string"),
        ("customers", customer(attributes=["gold"]), "attributes: must be a JSON object {…}, got a list"),
        (
            "orders",
            order(status="shiped"),
            "status: 'shiped' is not an order status (one of placed, shipped, delivered, cancelled); did you mean 'shipped'?",
        ),
        ("orders", order(status=None), "status cannot be empty"),
        (
            "orders",
            order(promised_at="2026-01-05"),
            "promised_at: '2026-01-05' has no UTC offset: add Z or +HH:MM",
        ),
        (
            "orders",
            order(promised_at="2026-01-05T12:00:00"),
            "promised_at: '2026-01-05T12:00:00' has no UTC offset",
        ),
        (
            "orders",
            order(promised_at="5 Jan 2026"),
            "promised_at: '5 Jan 2026' is not an ISO 8601 time (e.g. 2026-11-24T09:30:00Z)",
        ),
        ("orders", order(promised_at=1767614400), "promised_at: must be an ISO 8601 time with an offset"),
        ("orders", order(total="12.50"), "total: must be a number, got a string"),
        ("orders", order(total=-3), "total: -3 is not an amount: write a number ≥ 0"),
        ("orders", order(total=True), "total: must be a number, got a boolean"),
        ("orders", order(currency="EUD"), "currency: 'EUD' is not an ISO 4217 currency code"),
        (
            "orders",
            order(tracking_url="track.example.com/1"),
            "tracking_url: 'track.example.com/1' is not an http(s) URL",
        ),
        (
            "checkouts",
            {"id": "k1", "customer_id": "c1", "items": {"sku": "A"}},
            "items: must be a JSON list […], got an object",
        ),
        (
            "survey_responses",
            {"id": "s1", "customer_id": "c1", "kind": "NPS"},
            "kind: 'NPS' is not a survey kind (one of nps, csat, ces); did you mean 'nps'?",
        ),
        (
            "survey_responses",
            {"id": "s1", "customer_id": "c1", "score": 11},
            "score: 11 is out of range: scores go from 0 to 10",
        ),
        (
            "survey_responses",
            {"id": "s1", "customer_id": "c1", "score": 6.5},
            "score: 6.5 is not a whole number from 0 to 10",
        ),
    ],
)
def test_a_bad_value_is_reported_with_its_field_and_what_to_write(
    table: str, record: dict[str, Any], problem: str
) -> None:
    result = validate_record(table, record)
    assert isinstance(result, list)
    assert any(message.startswith(problem) for message in result), result


def test_every_problem_of_a_record_is_reported_not_just_the_first() -> None:
    result = validate_record("orders", {"customer_id": "c1", "status": "lost", "total": "x", "colour": "red"})
    assert isinstance(result, list)
    assert [message.split(":")[0].split(" ")[0] for message in result] == ["status", "total", "unknown", "id"]


def test_only_the_fields_a_record_gives_are_in_its_clean_row() -> None:
    assert validate_record("orders", order(status="delivered")) == {
        "id": "o1",
        "customer_id": "c1",
        "status": "delivered",
    }


def test_null_clears_a_field_to_null_or_to_the_column_default() -> None:
    record = customer(email=None, name=None, locale=None, timezone=None, sms_opt_in=None, attributes=None)
    assert validate_record("customers", record) == {
        "id": "c1",
        "email": None,
        "name": "",
        "locale": "en",
        "timezone": "UTC",
        "sms_opt_in": False,
        "attributes": {},
    }


@pytest.mark.parametrize(
    ("cell", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("0", False),
    ],
)
def test_csv_booleans_are_read_from_the_usual_spellings(cell: str, value: bool) -> None:
    assert validate_record("customers", {"id": "c1", "sms_opt_in": cell}, from_text=True) == {
        "id": "c1",
        "sms_opt_in": value,
    }


def test_csv_cells_are_parsed_as_numbers_json_and_null_where_the_field_needs_it() -> None:
    cells = {
        "id": "k1",
        "customer_id": "c1",
        "cart_value": "89.50",
        "items": '[{"sku": "A", "qty": 2}]',
        "completed_at": "",
    }
    assert validate_record("checkouts", cells, from_text=True) == {
        "id": "k1",
        "customer_id": "c1",
        "cart_value": 89.5,
        "items": [{"sku": "A", "qty": 2}],
        "completed_at": None,
    }


@pytest.mark.parametrize(
    ("table", "cells", "problem"),
    [
        (
            "customers",
            {"id": "c1", "sms_opt_in": "maybe"},
            "sms_opt_in: 'maybe' is not a boolean: write true/false, yes/no or 1/0",
        ),
        (
            "orders",
            {"id": "o1", "customer_id": "c1", "total": "12,50"},
            "total: '12,50' is not a number: write e.g. 49.90",
        ),
        ("orders", {"id": "o1", "customer_id": "c1", "total": "nan"}, "total: nan is not an amount"),
        (
            "orders",
            {"id": "o1", "customer_id": "c1", "attributes": "{tier: gold}"},
            "attributes: is not valid JSON",
        ),
        ("orders", {"id": "", "customer_id": "c1"}, "id is missing"),
        (
            "survey_responses",
            {"id": "s1", "customer_id": "c1", "score": "high"},
            "score: 'high' is not a whole number from 0 to 10",
        ),
    ],
)
def test_a_bad_csv_cell_is_reported_like_a_bad_json_value(
    table: str, cells: dict[str, str], problem: str
) -> None:
    result = validate_record(table, cells, from_text=True)
    assert isinstance(result, list)
    assert any(message.startswith(problem) for message in result), result


@pytest.mark.parametrize(
    ("name", "table", "kind"),
    [
        ("orders.jsonl", "orders", "jsonl"),
        ("survey_responses.csv", "survey_responses", "csv"),
        ("orders.2026-01-31.ndjson.gz", "orders", "jsonl"),
        ("Customers.CSV", None, "csv"),
        ("export.jsonl", None, "jsonl"),
        ("orders.json", "orders", None),
    ],
)
def test_the_table_and_format_come_from_the_file_name(name: str, table: str | None, kind: str | None) -> None:
    assert table_for_path(PurePath(name)) == table
    assert file_format(PurePath(name)) == kind


def _read_jsonl(text: str) -> list[tuple[int, Any]]:
    return list(read_jsonl(io.BytesIO(text.encode()), "f.jsonl"))


def test_jsonl_lines_keep_their_numbers_across_blank_lines() -> None:
    records = _read_jsonl('{"id": "a"}\n\n   \n{"id": "b"}\n')
    assert records == [(1, {"id": "a"}), (4, {"id": "b"})]


def test_a_jsonl_line_that_is_not_an_object_is_a_problem_on_that_line() -> None:
    records = _read_jsonl('{"id": "a"}\n{"id": "b",}\n[1, 2]\n"text"\n')
    assert [(line, str(value)) for line, value in records[1:]] == [
        (2, "f.jsonl:2: not valid JSON: Expecting property name enclosed in double quotes at column 12"),
        (3, "f.jsonl:3: must be a JSON object {…}, got a list"),
        (4, "f.jsonl:4: must be a JSON object {…}, got a string"),
    ]


def test_a_jsonl_line_that_is_not_utf8_is_a_problem_on_that_line() -> None:
    records = list(read_jsonl(io.BytesIO(b'{"id": "a"}\n{"id": "\xff"}\n'), "f.jsonl"))
    assert str(records[1][1]) == (
        "f.jsonl:2:9: byte 0xFF is not UTF-8 (the file looks like Latin-1 or Windows-1252):"
        " the file must be UTF-8 text; save it as UTF-8"
    )


def _read_csv(text: str, table: str = "customers") -> list[tuple[int, Any]]:
    return list(read_csv(io.BytesIO(text.encode("utf-8")), "f.csv", table))


def test_csv_rows_are_numbered_by_the_line_they_start_on() -> None:
    text = '\ufeffid,name\nc1,"Ann\nLee"\n\nc2,Bo\n'
    assert _read_csv(text) == [(2, {"id": "c1", "name": "Ann\nLee"}), (5, {"id": "c2", "name": "Bo"})]


def test_a_csv_header_with_unknown_or_missing_columns_is_reported_on_line_one() -> None:
    problems = [str(p) for _, p in _read_csv("id,emial,name,name\nc1,a@example.com,A,B\n")]
    assert problems == [
        "f.csv:1: header: unknown field 'emial' (did you mean 'email'?)",
        "f.csv:1: header: column 'name' appears twice",
    ]
    assert [str(p) for _, p in _read_csv("id,total\no1,3\n", "orders")] == [
        "f.csv:1: header: no 'customer_id' column"
    ]


def test_a_csv_row_with_the_wrong_number_of_cells_is_a_problem_on_its_line() -> None:
    records = _read_csv("id,name\nc1,Ann,extra\n")
    assert isinstance(records[0][1], Problem)
    assert str(records[0][1]) == "f.csv:2: has 3 cells, the header has 2"


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"[A-Za-z0-9._%+!#'-]{1,20}@[A-Za-z0-9.-]{1,20}", fullmatch=True)
    | st.emails()
    | st.text(max_size=30)
)
def test_the_fast_email_check_agrees_with_email_validator(address: str) -> None:
    try:
        expected: str | None = email_validator.validate_email(
            address.strip(), check_deliverability=False
        ).normalized
    except email_validator.EmailNotValidError:
        expected = None
    try:
        actual: str | None = parse_email(address)
    except ValueError:
        actual = None
    assert actual == expected


def _example_numbers() -> list[str]:
    numbers = set()
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers.add(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164))
    return sorted(numbers)


def test_the_fast_phone_check_agrees_with_phonenumbers_on_every_regions_examples() -> None:
    checked = 0
    for text in _example_numbers():
        for candidate in (text, text[:-1], text + "1", text[:-1] + str((int(text[-1]) + 5) % 10)):
            number = phonenumbers.parse(candidate, None)
            valid = phonenumbers.is_valid_number(number)
            expected = (
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) if valid else None
            )
            try:
                actual: str | None = parse_phone(candidate)
            except ValueError:
                actual = None
            assert actual == expected, candidate
            checked += 1
    assert checked > 1000


def test_nan_and_infinity_in_a_jsonl_line_are_refused_by_name() -> None:
    records = _read_jsonl('{"id": "a", "total": NaN}\n{"id": "b", "total": -Infinity}\n')
    assert [str(problem) for _, problem in records] == [
        "f.jsonl:1: not valid JSON: NaN is not a number JSON allows",
        "f.jsonl:2: not valid JSON: -Infinity is not a number JSON allows",
    ]


def test_a_cleared_json_field_is_a_fresh_value_each_time() -> None:
    first = validate_record("customers", customer(attributes=None))
    assert isinstance(first, dict)
    first["attributes"]["tier"] = "gold"

    assert validate_record("customers", customer(attributes=None)) == {"id": "c1", "attributes": {}}


def _every_region_examples() -> list[phonenumbers.PhoneNumber]:
    numbers = []
    kinds = (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.TOLL_FREE,
    )
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in kinds:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                numbers.append(example)
                # A neighbour of a valid number is often invalid, or valid for another region.
                numbers.append(
                    phonenumbers.PhoneNumber(
                        country_code=example.country_code, national_number=example.national_number + 1
                    )
                )
    return numbers


def test_the_phone_check_agrees_with_libphonenumber_for_every_region() -> None:
    """The faster validity check gives libphonenumber's answer for example numbers of every region and their neighbours."""
    numbers = _every_region_examples()
    assert len(numbers) > 1000
    disagreements = [
        phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)
        for n in numbers
        if is_valid_phone(n) != phonenumbers.is_valid_number(n)
    ]
    assert disagreements == []

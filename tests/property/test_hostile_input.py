"""Fuzzing the doors: whatever comes in, the answer is located problems or success, never an exception.

- random bytes, mutated corpus files and random YAML documents → the rules loader and the
  rule-test loader;
- random `when` text → the parser and type checker, and whatever they accept compiles to SQL,
  runs on SQLite and evaluates in Python without an error;
- random records → validation, and whatever validates is stored (SQLite and PostgreSQL);
- random bytes → `outreach ingest` of a JSONL or CSV file;
- random bodies → `POST /events`: a 2xx or a 4xx, never a 500;
- random provider error texts → recorded with the outcome on both databases.

Each test runs OUTREACH_FUZZ_EXAMPLES examples (default 40: a few seconds each). For a longer
search, e.g. before a release:

    OUTREACH_FUZZ_EXAMPLES=5000 .venv/bin/pytest -q tests/property/test_hostile_input.py
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from outreach.errors import Problem
from outreach.events import load_events, parse_events
from outreach.feedback import Secrets
from outreach.rule_tests import read_tests
from outreach.rules.evaluate import condition_holds, matches_query
from outreach.rules.expressions import ExpressionProblems, compile_expression
from outreach.rules.loader import FIELDS as RULE_FIELDS
from outreach.rules.loader import RuleSet, check_rules
from outreach.state import ledger
from outreach.state.db import make_engine
from outreach.state.ingest import FIELDS, TABLES, ingest_file, validate_record
from outreach.state.migrate import upgrade
from tests.hostile import RULES_CASES
from tests.integration.http_app import EVENTS_TOKEN, make_client
from tests.integration.test_ledger_outcomes import claimed, rows_by_id

EXAMPLES = int(os.environ.get("OUTREACH_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
GOOD_RULES = (Path(__file__).resolve().parents[2] / "rules" / "canonical.yaml").read_bytes()


def assert_located(problems: list[Problem], path: Path) -> None:
    for problem in problems:
        assert problem.file.startswith(str(path)), problem
        assert problem.message.strip(), problem
        problem.format()  # formats without error, long lines included


# -- rules files -----------------------------------------------------------------------------
@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A corpus file (or the shipped rules) with random bytes inserted, deleted or repeated."""
    data = bytearray(draw(st.sampled_from([GOOD_RULES, *(c.content[:4000] for c in RULES_CASES)])))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "repeat"]))
        if action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 32))] * draw(st.integers(1, 4))
    return bytes(data)


def yaml_values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=30),
        st.sampled_from(
            ["email", "sms", "order", "15m", "0s", "99999999999999w", "late_delivery", "../x", "10%", "off"]
        ),
        st.sampled_from(
            ["order.total > 1", "not not order.total > 1", 'order.status == "x" and', "now() - 1d"]
        ),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)
        ),
        max_leaves=20,
    )


rule_keys = st.one_of(st.sampled_from(RULE_FIELDS), st.text(max_size=10))
rule_documents = st.one_of(
    st.fixed_dictionaries(
        {"rules": st.lists(st.dictionaries(rule_keys, yaml_values(rule_keys), max_size=12), max_size=3)}
    ),
    yaml_values(st.one_of(st.just("rules"), st.text(max_size=8))),
)


@pytest.fixture
def rules_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "rules"
    folder.mkdir()
    yield folder


def check(folder: Path, content: bytes) -> RuleSet:
    (folder / "fuzz.yaml").write_bytes(content)
    rules, problems = check_rules(folder, template_exists=lambda name: name == "late_delivery")
    assert_located(problems, folder)
    return rules


@FUZZ
@given(content=st.one_of(st.binary(max_size=2000), mutated()))
@example(content=b"rules: " + b"[" * 3000)
def test_any_bytes_as_a_rules_file_are_rules_or_located_problems(rules_dir: Path, content: bytes) -> None:
    check(rules_dir, content)


@FUZZ
@given(document=rule_documents)
def test_any_yaml_document_as_a_rules_file_is_rules_or_located_problems(
    rules_dir: Path, document: Any
) -> None:
    check(rules_dir, yaml.safe_dump(document, allow_unicode=True).encode())


@FUZZ
@given(
    content=st.one_of(
        st.binary(max_size=1000),
        yaml_values(
            st.sampled_from(["tests", "name", "rule", "now", "customer", "order", "expect", "x"])
        ).map(
            lambda d: yaml.safe_dump(
                {"tests": d if isinstance(d, list) else [d]}, allow_unicode=True
            ).encode()
        ),
        st.fixed_dictionaries(
            {
                "rule": st.sampled_from(["a", "b"]),
                "now": st.one_of(st.text(max_size=30), st.datetimes(timezones=st.just(UTC)), st.none()),
                "customer": yaml_values(st.sampled_from([*FIELDS["customers"], "x"])),
                "order": yaml_values(st.sampled_from([*FIELDS["orders"], "x"])),
                "expect": st.sampled_from(["match", "no match", "maybe"]),
            }
        ).map(lambda case: yaml.safe_dump({"tests": [case]}, allow_unicode=True).encode()),
    )
)
def test_any_rule_test_file_is_results_or_located_problems(
    tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "r.yaml").write_bytes(
        b"rules:\n  - {name: a, about: order, when: 'order.total > 1 and order.placed_at < now() - 1d', "
        b"channels: [email], template: late_delivery}\n"
        b"  - {name: b, about: customer, when: 'lower(customer.name) == \"x\"', channels: [sms], template: t}\n"
    )
    rules, problems = check_rules(folder)
    assert problems == []
    (folder / "tests").mkdir()
    (folder / "tests" / "fuzz.yaml").write_bytes(content)
    _tests, problems = read_tests(folder / "tests" / "fuzz.yaml", rules)
    assert_located(problems, folder)


# -- when ------------------------------------------------------------------------------------
TOKENS = [
    "order.total",
    "order.status",
    "order.placed_at",
    "order.attributes.x",
    "customer.name",
    "customer.email_opt_in",
    "customer.attributes.n",
    "survey.score",
    "now()",
    "lower(",
    "(",
    ")",
    "[",
    "]",
    ",",
    "and",
    "or",
    "not",
    "in",
    "is",
    "null",
    "true",
    "false",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "1",
    "0",
    "2.5",
    "9223372036854775807",
    "99999999999999999999",
    "1d",
    "36525d",
    "99999999w",
    '"x"',
    '"\\u0000"',
    '"\\ud800"',
    '"é"',
    "'x'",
    "=",
    "&&",
    ".",
    "order.",
    "foo()",
]
when_texts = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=25).map(" ".join),
    st.text(alphabet=string.printable + "éع\u0000", max_size=60),
)


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('when') / 'o.db'}")
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO customers (id, name, locale, timezone, email_opt_in, sms_opt_in, attributes) VALUES ('c', 'A', 'en', 'UTC', 1, 1, '{\"n\": 5}')"
            )
        )
        connection.execute(
            sa.text(
                "INSERT INTO orders (id, customer_id, status, total, placed_at, attributes) VALUES ('o', 'c', 'placed', 12.5, 1700000000000000, '{}')"
            )
        )
    yield engine
    engine.dispose()


@FUZZ
@given(text=when_texts, about=st.sampled_from(["order", "customer", "survey"]))
@example(text=" and ".join(["order.total > 1"] * 400), about="order")
@example(text="not " * 3000 + "order.total > 1", about="order")
@example(text="order.total > 99999999999999999999999999", about="order")
def test_any_when_text_compiles_and_runs_or_is_a_located_problem(
    sqlite_engine: Engine, text: str, about: str
) -> None:
    try:
        expr = compile_expression(text, about)
    except ExpressionProblems as exc:
        assert exc.problems and all(0 <= p.offset <= len(text) for p in exc.problems)
        return
    # Accepted: it must run, in SQL and in Python, on real rows and on nulls.
    with sqlite_engine.connect() as connection:
        connection.execute(matches_query(about, expr, "sqlite", NOW)).fetchall()
    customer = {"name": "A", "email_opt_in": True, "attributes": {"n": 5}}
    entity = {
        "total": 12.5,
        "status": "placed",
        "placed_at": NOW - timedelta(days=3),
        "score": 3,
        "attributes": {},
    }
    for records in ({"customer": customer, about: entity}, {"customer": {}, about: {}}):
        condition_holds(expr, records, NOW)


# -- records, files and requests ---------------------------------------------------------------
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.text(alphabet="\u0000\ud800\udc00aé +@.", max_size=6),
    st.sampled_from(
        [
            "c-1",
            "+447911123456",
            "ada@example.com",
            "Europe/London",
            "ar-EG",
            "EUR",
            "placed",
            "nps",
            "email",
            "https://example.com/t",
            "2026-03-01T12:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "true",
            "7",
            "",
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


@st.composite
def records(draw: st.DrawFn, table: str) -> dict[str, Any]:
    names = st.one_of(st.sampled_from(list(FIELDS[table])), st.text(max_size=6))
    record: dict[str, Any] = draw(st.dictionaries(names, json_values, max_size=8))
    if draw(st.booleans()):
        record.setdefault("id", draw(st.sampled_from(["r-1", "r-2", 1, "x" * 300])))
        if "customer_id" in FIELDS[table]:
            record.setdefault("customer_id", "c-1")
    if draw(st.booleans()) and "attributes" in FIELDS[table]:
        record["attributes"] = draw(st.one_of(json_values, st.integers(0, 50).map(deep)))
    return record


@pytest.fixture
def customer_c1(engine: Engine) -> Engine:
    clean = validate_record("customers", {"id": "c-1", "name": "Ada"})
    assert isinstance(clean, dict)
    batch = parse_events({"table": "customers", "records": [clean]})
    assert not isinstance(batch, list) and load_events(engine, batch) == []
    return engine


@FUZZ
@given(data=st.data(), table=st.sampled_from(TABLES))
def test_any_record_is_stored_or_refused_with_its_field_on_both_databases(
    customer_c1: Engine, data: st.DataObject, table: str
) -> None:
    """What validation accepts, the database stores: no NUL, no overflow, no depth that breaks a write."""
    batch_records = data.draw(st.lists(records(table), min_size=1, max_size=3), label="records")
    batch = parse_events({"table": table, "records": batch_records})
    assert not isinstance(batch, list)
    problems = load_events(customer_c1, batch)
    assert all(isinstance(p, str) and p.startswith("records[") for p in problems), problems
    if not problems:
        with customer_c1.connect() as connection:
            for record in batch_records:
                found = connection.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE id = :id"), {"id": str(record["id"])}
                ).scalar_one()
                assert found == 1


@FUZZ
@given(
    content=st.one_of(
        st.binary(max_size=600),
        st.lists(records("orders"), max_size=4).map(
            lambda rs: "".join(json.dumps(r) + "\n" for r in rs).encode("utf-8", "surrogatepass")
        ),
        st.lists(st.lists(st.text(max_size=8), max_size=4), max_size=4).map(
            lambda rows: ("id,customer_id,status,total\n" + "\n".join(",".join(r) for r in rows)).encode(
                "utf-8", "surrogatepass"
            )
        ),
    ),
    name=st.sampled_from(["orders.jsonl", "orders.csv", "orders.jsonl.gz"]),
)
def test_any_bytes_as_an_ingest_file_are_loaded_or_located_problems(
    customer_c1: Engine, tmp_path_factory: pytest.TempPathFactory, content: bytes, name: str
) -> None:
    path = tmp_path_factory.mktemp("ingest") / name
    path.write_bytes(content)
    report = ingest_file(customer_c1, path)
    for problem in report.problems:
        assert problem.file == str(path) and problem.message


bodies = st.one_of(
    st.binary(max_size=300),
    st.fixed_dictionaries(
        {"table": st.sampled_from([*TABLES, "x"]), "records": st.lists(records("customers"), max_size=3)}
    ),
    st.builds(lambda t, r: {"table": t, **r}, st.sampled_from(TABLES), records("orders")),
    json_values,
)


@FUZZ
@given(body=bodies)
def test_any_events_body_is_answered_with_a_2xx_or_a_4xx(customer_c1: Engine, body: Any) -> None:
    client: TestClient = make_client(customer_c1, Secrets(events_token=EVENTS_TOKEN))
    content = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8", "surrogatepass")
    response = client.post(
        "/events",
        content=content,
        headers={"Authorization": f"Bearer {EVENTS_TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 400, 413, 422), response.text


provider_words = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(["\x00", "\ud800", "\udc00", "\udfff", "\n", "ب"])),
    max_size=60,
)


@FUZZ
@given(words=provider_words)
@example(words="refused\x00 \ud83d")
def test_any_words_a_provider_answers_are_recorded_with_the_outcome_on_both_databases(
    engine: Engine, words: str
) -> None:
    """A refusal's text is the provider's (or a remote mail server's): the outcome is written
    whatever it holds, each character kept but those neither database stores."""
    with engine.begin() as connection:
        connection.execute(sa.delete(ledger.contacts))
    (contact,) = claimed(engine, 1)
    outcome = ledger.Outcome(contact, "failed", f"refused: {words}", last_error=words, provider_id=words)
    with engine.begin() as connection:
        ledger.finish(connection, "w", [outcome], NOW)
    (row,) = rows_by_id(engine).values()
    assert row["state"] == "failed"
    for kept in (row["last_error"], row["provider_id"], row["reason"].removeprefix("refused: ")):
        assert len(kept) == len(words)
        for given_char, kept_char in zip(words, kept, strict=True):
            unstorable = given_char == "\x00" or "\ud800" <= given_char <= "\udfff"
            assert kept_char == ("\ufffd" if unstorable else given_char)

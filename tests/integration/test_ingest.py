"""Loading files into the database, on SQLite and PostgreSQL: whole or not at all, upserting by id."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from outreach.state.db import make_engine
from outreach.state.ingest import ingest_file, ingest_files, rejection, state_table

DATA = Path(__file__).resolve().parent.parent / "data" / "ingest"
UTC = UTC


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(
        "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8"
    )
    return path


def rows(engine: Engine, table: str) -> dict[str, dict[str, Any]]:
    target = state_table(table)
    with engine.connect() as connection:
        return {row.id: dict(row._mapping) for row in connection.execute(select(target))}


def count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(state_table(table))).scalar_one())


def load_good_files(engine: Engine) -> None:
    reports = ingest_files(engine, sorted(DATA.glob("good/*")))
    assert rejection(reports) is None, rejection(reports)


def test_good_files_load_every_record_with_typed_values(engine: Engine) -> None:
    load_good_files(engine)

    customers = rows(engine, "customers")
    assert customers["c-1"]["phone"] == "+442079460101"
    assert customers["c-2"]["name"] == "مريم عبد الله"
    assert customers["c-2"]["locale"] == "ar-EG"
    assert customers["c-3"]["sms_opt_in"] is True
    assert customers["c-3"]["attributes"] == {"tier": "gold"}
    orders = rows(engine, "orders")
    assert orders["o-1"]["promised_at"] == datetime(2026, 1, 10, 12, tzinfo=UTC)
    assert orders["o-2"]["delivered_at"] is None
    assert rows(engine, "checkouts")["k-1"]["items"] == [{"sku": "TEA-001", "qty": 2}]
    assert rows(engine, "survey_responses")["s-1"]["score"] == 3


def test_customers_files_load_first_so_other_files_can_refer_to_their_customers(engine: Engine) -> None:
    files = sorted(DATA.glob("good/*.jsonl"), key=lambda p: p.name != "orders.jsonl")
    assert files[0].name == "orders.jsonl"

    reports = ingest_files(engine, files)

    assert next(report.table for report in reports) == "customers"
    assert rejection(reports) is None


def test_a_file_with_bad_lines_loads_nothing_and_reports_every_bad_line(engine: Engine) -> None:
    load_good_files(engine)
    before = rows(engine, "orders")
    path = DATA / "bad" / "orders.jsonl"

    report = ingest_file(engine, path)

    assert report.rejected
    assert [str(problem).removeprefix(f"{path}:") for problem in report.problems] == [
        "2: status: 'shiped' is not an order status (one of placed, shipped, delivered, cancelled); did you mean 'shipped'?",
        "3: promised_at: '2026-01-10' has no UTC offset: add Z or +HH:MM",
        "4: customer_id: no customer 'c-404' (load the customer first, e.g. customers.jsonl before this file)",
        "5: not valid JSON: Expecting ',' delimiter at column 37",
        "6: unknown field 'custmer_id' (did you mean 'customer_id'?)",
        "6: customer_id is missing",
        "7: id is missing",
    ]
    assert report.bad_lines == 6
    assert rows(engine, "orders") == before


def test_a_bad_line_late_in_a_big_file_rolls_back_the_batches_already_written(
    engine: Engine, tmp_path: Path
) -> None:
    good = [{"id": f"c-{n}", "name": f"Customer {n}"} for n in range(250)]
    path = write_jsonl(tmp_path / "customers.jsonl", [*good, {"id": "c-bad", "email": "nobody@"}])

    report = ingest_file(engine, path, batch_size=100)

    assert [problem.line for problem in report.problems] == [251]
    assert count(engine, "customers") == 0


def test_records_are_upserted_by_id_writing_only_the_fields_they_give(engine: Engine, tmp_path: Path) -> None:
    load_good_files(engine)
    update = {
        "id": "o-2",
        "customer_id": "c-2",
        "status": "delivered",
        "delivered_at": "2026-01-12T09:30:00+02:00",
    }

    report = ingest_file(engine, write_jsonl(tmp_path / "orders.jsonl", [update]))

    assert not report.rejected
    order = rows(engine, "orders")["o-2"]
    assert order["status"] == "delivered"
    assert order["delivered_at"] == datetime(2026, 1, 12, 7, 30, tzinfo=UTC)
    assert order["total"] == 250.0  # not in the update: kept
    assert count(engine, "orders") == 3


def test_a_thousand_records_are_stored_as_given_and_updated_writing_only_the_fields_they_give(
    engine: Engine, tmp_path: Path
) -> None:
    """As many records in a batch as make PostgreSQL copy them through a temporary table."""
    awkward = 'tab\there, newline\nthere, back\\slash, "quotes", \\N, مريم'
    people = [
        {"id": f"c-{n}", "name": f"{awkward} {n}", "attributes": {"note": awkward, "n": n}}
        for n in range(1000)
    ]
    ingest_file(engine, write_jsonl(tmp_path / "customers.jsonl", people))
    # Half of them again, with a phone: the name and attributes they leave out are kept.
    ingest_file(
        engine,
        write_jsonl(
            tmp_path / "customers.jsonl",
            [{"id": f"c-{n}", "phone": "+442079460101"} for n in range(0, 1000, 2)],
        ),
    )

    stored = rows(engine, "customers")
    assert len(stored) == 1000
    for n in range(1000):
        customer = stored[f"c-{n}"]
        assert (customer["name"], customer["attributes"]) == (f"{awkward} {n}", {"note": awkward, "n": n})
        assert customer["phone"] == ("+442079460101" if n % 2 == 0 else None)


def test_null_clears_a_stored_field(engine: Engine, tmp_path: Path) -> None:
    load_good_files(engine)

    ingest_file(
        engine, write_jsonl(tmp_path / "customers.jsonl", [{"id": "c-1", "phone": None, "attributes": None}])
    )

    customer = rows(engine, "customers")["c-1"]
    assert (customer["phone"], customer["attributes"], customer["email"]) == (None, {}, "oliver@example.com")


def test_a_new_record_gets_the_column_defaults_for_the_fields_it_omits(
    engine: Engine, tmp_path: Path
) -> None:
    ingest_file(engine, write_jsonl(tmp_path / "customers.jsonl", [{"id": "c-9"}]))

    customer = rows(engine, "customers")["c-9"]
    assert (
        customer["name"],
        customer["locale"],
        customer["timezone"],
        customer["email_opt_in"],
        customer["attributes"],
    ) == (
        "",
        "en",
        "UTC",
        False,
        {},
    )


def test_the_last_record_for_an_id_in_a_file_wins(engine: Engine, tmp_path: Path) -> None:
    records = [
        {"id": "c-1", "name": "First", "locale": "en"},
        {"id": "c-2", "name": "Other"},
        {"id": "c-1", "name": "Second"},
        {"id": "c-1", "locale": "ar"},
    ]

    ingest_file(engine, write_jsonl(tmp_path / "customers.jsonl", records))

    customer = rows(engine, "customers")["c-1"]
    assert (customer["name"], customer["locale"]) == ("Second", "ar")


def test_the_orders_of_a_rejected_customers_file_are_rejected_too(engine: Engine, tmp_path: Path) -> None:
    # Each file is one transaction; a rejected customers file leaves its orders without customers.
    customers = write_jsonl(tmp_path / "customers.jsonl", [{"id": "c-1"}, {"id": "c-2", "phone": "12"}])
    orders = write_jsonl(tmp_path / "orders.jsonl", [{"id": "o-1", "customer_id": "c-1"}])

    reports = ingest_files(engine, [orders, customers])

    assert [(report.table, report.rejected) for report in reports] == [("customers", True), ("orders", True)]
    assert "no customer 'c-1'" in str(reports[1].problems[0])


def test_csv_files_load_like_jsonl(engine: Engine) -> None:
    reports = ingest_files(engine, sorted(DATA.glob("good_csv/*.csv")))

    assert rejection(reports) is None, rejection(reports)
    customers = rows(engine, "customers")
    assert customers["c-1"]["email_opt_in"] is True
    assert customers["c-2"]["sms_opt_in"] is False
    assert customers["c-2"]["preferred_channel"] is None
    assert customers["c-2"]["attributes"] == {"tier": "gold", "vip": True}
    checkout = rows(engine, "checkouts")["k-1"]
    assert checkout["completed_at"] is None
    assert checkout["items"] == [{"sku": "TEA-001", "qty": 2}]
    assert checkout["started_at"] == datetime(2026, 1, 14, 9, tzinfo=UTC)


def test_a_bad_csv_file_reports_each_bad_row_by_line(engine: Engine) -> None:
    load_good_files(engine)
    path = DATA / "bad" / "checkouts.csv"

    report = ingest_file(engine, path)

    assert [str(problem).removeprefix(f"{path}:") for problem in report.problems] == [
        "3: cart_value: 'lots' is not a number: write e.g. 49.90",
        "4: started_at: '14/01/2026 09:00' is not an ISO 8601 time (e.g. 2026-11-24T09:30:00Z)",
        "5: has 3 cells, the header has 6",
    ]
    assert "k-10" not in rows(engine, "checkouts")


def test_the_problems_listed_are_capped_but_every_bad_line_is_counted(engine: Engine, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "customers.jsonl", [{"id": f"c-{n}", "locale": "xx"} for n in range(30)])

    report = ingest_file(engine, path, max_problems=5)

    assert (len(report.problems), report.bad_lines) == (5, 30)
    assert (
        report.summary()
        == f"{path}: 30 bad lines (the first 5 are listed); nothing was loaded from this file"
    )


def test_gzipped_files_are_read_through(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "customers.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"id": "c-1", "name": "Ann"}\n'))

    assert not ingest_file(engine, path).rejected
    assert rows(engine, "customers")["c-1"]["name"] == "Ann"


def test_a_file_named_after_no_table_is_rejected_with_what_to_do(engine: Engine, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "export.jsonl", [{"id": "c-1"}])

    report = ingest_file(engine, path)

    assert [str(problem) for problem in report.problems] == [
        f"{path}: cannot tell which table this file is for: name it after its table "
        "(customers.jsonl, orders.csv, …) or pass --table"
    ]
    assert not ingest_file(engine, path, table="customers").rejected


def test_progress_is_reported_up_to_the_size_of_the_file(engine: Engine) -> None:
    path = DATA / "good" / "customers.jsonl"
    seen: list[tuple[int, int]] = []

    ingest_file(engine, path, progress=lambda done, size: seen.append((done, size)))

    assert seen[-1] == (path.stat().st_size, path.stat().st_size)


@pytest.mark.parametrize("batch_size", [1, 2, 1000])
def test_batching_does_not_change_what_is_loaded(engine: Engine, tmp_path: Path, batch_size: int) -> None:
    load_good_files(engine)
    records = [{"id": f"o-{n % 7}", "customer_id": "c-1", "total": n} for n in range(20)]

    ingest_file(engine, write_jsonl(tmp_path / "orders.jsonl", records), batch_size=batch_size)

    assert {id_: row["total"] for id_, row in rows(engine, "orders").items()} == {
        "o-0": 14.0,
        "o-1": 15.0,
        "o-2": 16.0,
        "o-3": 17.0,
        "o-4": 18.0,
        "o-5": 19.0,
        "o-6": 13.0,
    }


def test_a_sqlite_connection_gets_its_cache_size_back_after_a_load(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        before = connection.exec_driver_sql("PRAGMA cache_size").scalar_one()

    ingest_file(engine, write_jsonl(tmp_path / "customers.jsonl", [{"id": "c-1"}]))

    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar_one() == before
    engine.dispose()

"""`outreach ingest` on SQLite and PostgreSQL: what it prints, its exit codes, what it leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.engine import Engine

from outreach.cli import cli
from outreach.state.ingest import state_table

DATA = Path(__file__).resolve().parent.parent / "data" / "ingest"


@pytest.fixture
def settings_file(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    return path


def ingest(settings_file: Path, *arguments: str | Path) -> Result:
    return CliRunner().invoke(cli, ["--settings", str(settings_file), "ingest", *map(str, arguments)])


def state(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as connection:
        return {
            table: sorted(tuple(row) for row in connection.execute(select(state_table(table))))
            for table in ("customers", "orders", "checkouts", "survey_responses")
        }


def test_good_jsonl_files_load_and_each_is_reported_on_stdout(engine: Engine, settings_file: Path) -> None:
    files = sorted(DATA.glob("good/*.jsonl"))

    result = ingest(settings_file, *files)

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{DATA / 'good' / 'customers.jsonl'}: loaded 3 records into customers",
        f"{DATA / 'good' / 'checkouts.jsonl'}: loaded 1 record into checkouts",
        f"{DATA / 'good' / 'orders.jsonl'}: loaded 3 records into orders",
        f"{DATA / 'good' / 'survey_responses.jsonl'}: loaded 1 record into survey_responses",
    ]
    assert result.stderr == ""
    assert len(state(engine)["orders"]) == 3


def test_good_csv_files_load(engine: Engine, settings_file: Path) -> None:
    result = ingest(settings_file, *sorted(DATA.glob("good_csv/*.csv")))

    assert result.exit_code == 0, result.output
    assert [len(rows) for rows in state(engine).values()] == [2, 0, 1, 0]


def test_a_file_with_bad_lines_exits_1_listing_each_line_and_changes_nothing(
    engine: Engine, settings_file: Path
) -> None:
    assert ingest(settings_file, *DATA.glob("good/*.jsonl")).exit_code == 0
    before = state(engine)
    bad = DATA / "bad" / "orders.jsonl"

    result = ingest(settings_file, bad)

    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        f"{bad}:2",
        f"{bad}:3",
        f"{bad}:4",
        f"{bad}:5",
        f"{bad}:6",
        f"{bad}:6",
        f"{bad}:7",
        str(bad),
    ]
    assert lines[0] == (
        f"{bad}:2: status: 'shiped' is not an order status (one of placed, shipped, delivered, cancelled); "
        "did you mean 'shipped'?"
    )
    assert lines[-1] == f"{bad}: 6 bad lines; nothing was loaded from this file"
    assert state(engine) == before


def test_a_bad_csv_file_exits_1_listing_each_line(engine: Engine, settings_file: Path) -> None:
    assert ingest(settings_file, DATA / "good" / "customers.jsonl").exit_code == 0
    bad = DATA / "bad" / "checkouts.csv"

    result = ingest(settings_file, bad)

    assert result.exit_code == 1
    assert [line.split(": ", 1)[0] for line in result.stderr.splitlines()] == [
        f"{bad}:3",
        f"{bad}:4",
        f"{bad}:5",
        str(bad),
    ]
    assert state(engine)["checkouts"] == []


def test_good_files_load_even_when_another_file_of_the_command_is_rejected(
    engine: Engine, settings_file: Path
) -> None:
    result = ingest(settings_file, DATA / "bad" / "orders.jsonl", DATA / "good" / "customers.jsonl")

    assert result.exit_code == 1
    assert result.stdout == f"{DATA / 'good' / 'customers.jsonl'}: loaded 3 records into customers\n"
    assert len(state(engine)["customers"]) == 3


def test_loading_a_changed_record_again_updates_it_by_id(
    engine: Engine, settings_file: Path, tmp_path: Path
) -> None:
    assert ingest(settings_file, DATA / "good" / "customers.jsonl").exit_code == 0
    changed = tmp_path / "people.jsonl"
    changed.write_text('{"id": "c-1", "name": "Oliver B. Bennett", "sms_opt_in": true}\n', encoding="utf-8")

    result = ingest(settings_file, "--table", "customers", changed)

    assert result.exit_code == 0, result.output
    customers = {row[0]: row for row in state(engine)["customers"]}
    assert len(customers) == 3
    assert customers["c-1"][1] == "Oliver B. Bennett"
    assert customers["c-1"][2] == "oliver@example.com"


def test_an_unknown_table_is_a_usage_error(engine: Engine, settings_file: Path) -> None:
    result = ingest(settings_file, "--table", "order", DATA / "good" / "orders.jsonl")

    assert result.exit_code == 2
    assert (
        "'order' is not a table: use one of customers, orders, checkouts, survey_responses" in result.stderr
    )


def test_a_missing_file_is_a_usage_error(engine: Engine, settings_file: Path, tmp_path: Path) -> None:
    result = ingest(settings_file, tmp_path / "orders.jsonl")

    assert result.exit_code == 2
    assert "does not exist" in result.stderr

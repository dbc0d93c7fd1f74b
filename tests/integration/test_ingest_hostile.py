"""Hostile records and files through `outreach ingest`, on SQLite and PostgreSQL.

Every bad value is a `FILE:LINE: field: …` problem, exit code 1, and nothing written: what
validation lets through, both databases store.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.engine import Engine

from outreach.cli import cli
from outreach.state.ingest import state_table

CUSTOMER = '{"id": "c-1", "name": "Ada", "email": "ada@example.com", "phone": "+447911123456"}\n'


@pytest.fixture
def settings_file(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\nbusy_timeout = 0.1\n', encoding="utf-8")
    return path


def ingest(settings_file: Path, *arguments: str | Path) -> Result:
    return CliRunner().invoke(cli, ["--settings", str(settings_file), "ingest", *map(str, arguments)])


def rows(engine: Engine, table: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(state_table(table)))]


def order(**fields: object) -> str:
    return json.dumps({"id": "o-1", "customer_id": "c-1", "status": "placed", **fields}) + "\n"


# (what, the JSONL line of an order or customer, the file's table, the problem it must be reported with)
BAD_LINES = [
    (
        "year 1",
        order(placed_at="0001-01-01T00:00:00+01:00"),
        "placed_at: '0001-01-01T00:00:00+01:00' is out of range",
    ),
    (
        "year 9999",
        order(placed_at="9999-12-31T23:59:59-01:00"),
        "placed_at: '9999-12-31T23:59:59-01:00' is out of range",
    ),
    ("year 1899", order(placed_at="1899-12-31T00:00:00Z"), "outreach takes times from 1900 to 2199"),
    (
        "a 400-digit total",
        '{"id": "o-1", "customer_id": "c-1", "total": 1' + "0" * 400 + "}\n",
        "total: 1000",
    ),
    (
        "a total of 1e400",
        '{"id": "o-1", "customer_id": "c-1", "total": 1e400}\n',
        "total: inf is out of range",
    ),
    ("NaN", '{"id": "o-1", "customer_id": "c-1", "total": NaN}\n', "NaN is not a number JSON allows"),
    ("a NUL in a text field", order(carrier="DHL\u0000"), "carrier: contains a NUL character"),
    ("a NUL in an id", order(id="o\u00001"), "id: contains a NUL character"),
    (
        "a NUL in an attribute",
        order(attributes={"note": "a\u0000b"}),
        "attributes: note: contains a NUL character",
    ),
    ("a NUL in an attribute's key", order(attributes={"a\u0000": 1}), "contains a NUL character"),
    (
        "a lone surrogate",
        '{"id": "o-1", "customer_id": "c-1", "carrier": "\\ud800"}\n',
        "carrier: contains a lone surrogate",
    ),
    (
        "attributes nested 2,000 deep",
        '{"id": "o-1", "customer_id": "c-1", "attributes": ' + '{"a": ' * 2000 + "1" + "}" * 2001 + "\n",
        "nested too deeply to read",
    ),
    (
        "attributes nested 40 deep",
        '{"id": "o-1", "customer_id": "c-1", "attributes": ' + '{"a": ' * 40 + "1" + "}" * 41 + "\n",
        "nested more than 32 levels deep",
    ),
    (
        "a 400-digit attribute",
        '{"id": "o-1", "customer_id": "c-1", "attributes": {"n": 1' + "0" * 400 + "}}\n",
        "attributes: n: 1000",
    ),
    (
        "a 30-digit attribute",  # orjson alone would store it as a float
        '{"id": "o-1", "customer_id": "c-1", "attributes": {"n": 123456789012345678901234567890}}\n',
        "attributes: n: 123456789012345678901234567890 is out of range (a 64-bit integer)",
    ),
    ("an id of 300 characters", order(id="o" * 300), "id: is 300 characters long; an id is at most 255"),
    (
        "a URL with a NUL",
        order(tracking_url="https://t.example/\u0000"),
        "tracking_url: contains a NUL character",
    ),
]


@pytest.mark.parametrize(("what", "line", "expect"), BAD_LINES, ids=[case[0] for case in BAD_LINES])
def test_a_hostile_value_is_a_located_problem_and_nothing_is_written(
    engine: Engine, settings_file: Path, tmp_path: Path, what: str, line: str, expect: str
) -> None:
    (tmp_path / "customers.jsonl").write_text(CUSTOMER, encoding="utf-8")
    orders = tmp_path / "orders.jsonl"
    orders.write_text(order(id="o-0") + line, encoding="utf-8")

    result = ingest(settings_file, tmp_path / "customers.jsonl", orders)

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{orders}:2: "), result.stderr
    assert expect in first, result.stderr
    assert rows(engine, "orders") == []


def test_a_latin1_byte_in_a_csv_is_reported_at_its_line_with_the_encoding(
    engine: Engine, settings_file: Path, tmp_path: Path
) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_bytes(b"id,name,email\nc-1,Ada,ada@example.com\nc-2,Ren\xe9e,renee@example.com\n")

    result = ingest(settings_file, customers)

    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"{customers}:3: column 'name': byte 0xE9 is not UTF-8 (the file looks like Latin-1 or "
        "Windows-1252): the file must be UTF-8 text; save it as UTF-8"
    )
    assert rows(engine, "customers") == []


def test_a_latin1_byte_in_a_csv_header_is_reported_on_line_one(
    engine: Engine, settings_file: Path, tmp_path: Path
) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_bytes(b"id,n\xe4me\nc-1,Ada\n")

    result = ingest(settings_file, customers)

    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"{customers}:1: header: byte 0xE4 is not UTF-8 (the file looks like Latin-1"
    )


@pytest.mark.parametrize("name", ["customers.csv", "customers.jsonl"])
def test_a_utf16_file_is_named_as_such(
    engine: Engine, settings_file: Path, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    text = "id,name\nc-1,Ada\n" if name.endswith(".csv") else '{"id": "c-1"}\n'
    path.write_bytes(text.encode("utf-16"))

    result = ingest(settings_file, path)

    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"{path}:1: the file is UTF-16 (it starts with a UTF-16 byte order mark): save it as UTF-8"
    )


def test_a_corrupt_gzip_file_is_reported_and_nothing_is_written(
    engine: Engine, settings_file: Path, tmp_path: Path
) -> None:
    data = bytearray(gzip.compress(CUSTOMER.encode() * 100))
    data[10] = 0xFF  # the first deflate block: a reserved block type
    path = tmp_path / "customers.jsonl.gz"
    path.write_bytes(bytes(data))

    result = ingest(settings_file, path)

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:1: cannot read on from here: the compressed data is corrupt",
        f"{path}: 1 bad line; nothing was loaded from this file",
    ]
    assert rows(engine, "customers") == []


def test_garbage_inside_a_gzip_file_rejects_it_without_a_traceback(
    engine: Engine, settings_file: Path, tmp_path: Path
) -> None:
    lines = "".join(json.dumps({"id": f"c-{n}", "name": f"Customer {n}"}) + "\n" for n in range(5_000))
    data = bytearray(gzip.compress(lines.encode()))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path = tmp_path / "customers.jsonl.gz"
    path.write_bytes(bytes(data))

    result = ingest(settings_file, path)

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.splitlines()[-1].endswith("nothing was loaded from this file")
    assert rows(engine, "customers") == []


def test_a_truncated_gzip_file_is_reported(engine: Engine, settings_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "customers.jsonl.gz"
    path.write_bytes(gzip.compress(CUSTOMER.encode() * 100)[:-20])

    result = ingest(settings_file, path)

    assert result.exit_code == 1
    assert "the compressed file is cut short" in result.stderr
    assert rows(engine, "customers") == []


def test_a_repeated_id_is_counted_as_an_update_and_the_later_record_wins(
    engine: Engine, settings_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "customers.jsonl"
    path.write_text(
        '{"id": "c-1", "name": "Ada"}\n{"id": "c-2"}\n{"id": "c-1", "name": "Ada L."}\n', encoding="utf-8"
    )

    result = ingest(settings_file, path)

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{path}: loaded 3 records into customers: 2 new rows, 1 update of a row loaded before "
        "or earlier in this file (the later record wins)\n"
    )
    assert sorted(row[:2] for row in rows(engine, "customers")) == [("c-1", "Ada L."), ("c-2", "")]


@pytest.fixture
def locked_sqlite(sqlite_url: str, tmp_path: Path) -> Iterator[Path]:
    """The test's SQLite database, migrated, then held under an exclusive lock by another connection."""
    from outreach.state.db import make_engine

    make_engine(sqlite_url).dispose()
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE IF NOT EXISTS lock_holder (x)")
    try:
        yield path
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.mark.parametrize(
    "command",
    [
        ["ingest", "CUSTOMERS"],
        ["run", "--once"],
        ["preview", "late-delivery"],
        ["explain", "c-1"],
        ["report"],
        ["pause"],
        ["resume"],
        ["silence", "late-delivery", "--for", "1h", "--reason", "outage"],
        ["tasks"],
        ["db", "upgrade"],
    ],
    ids=lambda command: " ".join(command),
)
def test_a_database_locked_past_the_busy_timeout_is_a_clear_message_and_exit_1(
    locked_sqlite: Path, tmp_path: Path, command: list[str]
) -> None:
    from tests.hostile import REPO

    (tmp_path / "customers.jsonl").write_text(CUSTOMER, encoding="utf-8")
    settings = tmp_path / "locked.toml"
    settings.write_text(
        f'[database]\nurl = "sqlite:///{locked_sqlite}"\nbusy_timeout = 0.1\n'
        f'[paths]\nrules = "{REPO / "rules"}"\ntemplates = "{REPO / "templates"}"\n',
        encoding="utf-8",
    )
    arguments = [str(tmp_path / "customers.jsonl") if a == "CUSTOMERS" else a for a in command]

    result = CliRunner().invoke(cli, ["--settings", str(settings), *arguments])

    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.strip() == (
        f"the database sqlite:///{locked_sqlite} is locked by another process and stayed locked past the "
        "busy timeout: try again once the other command is done (database.busy_timeout sets the wait)"
    )

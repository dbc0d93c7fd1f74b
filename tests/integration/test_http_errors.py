"""An endpoint that fails answers 500 (503 when the database is busy) and logs one structured
event without the statement's parameters: no email, no phone, no traceback text."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from structlog.testing import capture_logs

from outreach.feedback import Secrets
from outreach.state.db import make_engine
from tests.integration.http_app import EVENTS_TOKEN, make_client

AUTH = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
PERSON = {"id": "c-9", "name": "Ada", "email": "ada.lovelace@example.com", "phone": "+447911123456"}


def test_a_failing_request_is_a_500_and_one_structured_event_without_personal_data(engine: Engine) -> None:
    client = make_client(engine, Secrets(events_token=EVENTS_TOKEN))
    with engine.begin() as connection:  # a database broken under the daemon's feet
        connection.execute(
            sa.text(
                "DROP TABLE customers CASCADE"
                if engine.dialect.name == "postgresql"
                else "DROP TABLE customers"
            )
        )

    with capture_logs() as logs:
        response = client.post("/events", json={"table": "customers", "records": [PERSON]}, headers=AUTH)

    assert response.status_code == 500
    assert response.json() == {
        "error": "internal error: nothing was written; the daemon's log has an http_error event"
    }
    [event] = [e for e in logs if e["event"] == "http_error"]
    assert event["path"] == "/events" and event["status"] == 500
    assert event["error"].startswith(("ProgrammingError", "OperationalError"))
    assert event["where"].startswith("outreach.")
    text = json.dumps(logs)
    for secret in (PERSON["email"], PERSON["phone"], "ada.lovelace", "7911123456"):
        assert secret not in text


def test_a_database_locked_past_the_busy_timeout_is_a_503_with_retry_after(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    engine = make_engine(url, busy_timeout=0.1)
    engine.dispose()
    holder = sqlite3.connect(tmp_path / "o.db", isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE IF NOT EXISTS lock_holder (x)")
    try:
        client = make_client(engine, Secrets(events_token=EVENTS_TOKEN))
        with capture_logs() as logs:
            response = client.post("/events", json={"table": "customers", "records": [PERSON]}, headers=AUTH)
    finally:
        holder.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert [e["status"] for e in logs if e["event"] == "http_error"] == [503]


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe{",
        b'{"table": "customers", "records": [' + b"[" * 2000 + b"]" * 2000 + b"]}",
        b'{"table": "customers", "id": "c-1", "name": "\\ud800"}',
        b'{"table": "customers", "id": "c-1", "name": "a\\u0000b"}',
        b'{"table": "orders", "id": "o-1", "customer_id": "c-1", "total": 1' + b"0" * 400 + b"}",
        b'{"table": "orders", "id": "o-1", "customer_id": "c-1", "placed_at": "9999-12-31T23:59:59-01:00"}',
        b'{"table": ["customers"]}',
        b'{"table": "customers", "records": {"id": "c-1"}}',
        b'{"table": "customers", "id": "c-1", "attributes": ' + b'{"a": ' * 500 + b"1" + b"}" * 501,
    ],
    ids=[
        "not UTF-8",
        "nested 2,000 deep",
        "a lone surrogate",
        "a NUL",
        "a 400-digit number",
        "year 9999",
        "a table that is a list",
        "records that are an object",
        "attributes nested 500 deep",
    ],
)
def test_a_hostile_body_is_a_4xx_and_nothing_is_written(engine: Engine, body: bytes) -> None:
    client = make_client(engine, Secrets(events_token=EVENTS_TOKEN))
    response = client.post("/events", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM customers")).scalar_one() == 0

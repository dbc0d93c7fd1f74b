"""`POST /events`: customer state over HTTP, validated like `outreach ingest`, all or nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from outreach.daemon.metrics import Metrics
from outreach.feedback import Secrets
from outreach.state.ingest import state_table
from tests.integration.http_app import EVENTS_TOKEN, customer, make_client

AUTH = {"Authorization": f"Bearer {EVENTS_TOKEN}"}


@pytest.fixture
def client(engine: Engine) -> TestClient:
    return make_client(engine, Secrets(events_token=EVENTS_TOKEN))


def count(engine: Engine, table: str) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(state_table(table))).scalar_one())


CUSTOMERS: list[dict[str, Any]] = [
    {"id": "c-1", "name": "Ada", "email": "ada@example.com", "phone": "+44 20 7946 0101", "sms_opt_in": True},
    {"id": "c-2", "name": "Mariam", "locale": "ar", "timezone": "Africa/Cairo"},
]


def test_good_records_are_upserted_by_id(client: TestClient, engine: Engine) -> None:
    response = client.post("/events", json={"table": "customers", "records": CUSTOMERS}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json() == {"table": "customers", "loaded": 2}
    assert customer(engine, "c-1")["phone"] == "+442079460101"

    update = {
        "table": "orders",
        "id": "o-1",
        "customer_id": "c-1",
        "status": "shipped",
        "promised_at": "2026-03-01T12:00:00Z",
    }
    assert client.post("/events", json=update, headers=AUTH).status_code == 200
    delivered = {
        "table": "orders",
        "id": "o-1",
        "customer_id": "c-1",
        "status": "delivered",
        "delivered_at": "2026-03-02T09:00:00+01:00",
    }
    assert client.post("/events", json=delivered, headers=AUTH).json() == {"table": "orders", "loaded": 1}
    with engine.connect() as connection:
        order = connection.execute(select(state_table("orders"))).mappings().one()
    assert order["status"] == "delivered" and order["promised_at"] is not None  # absent fields are kept


def test_a_batch_with_bad_records_is_rejected_whole_with_every_problem(
    client: TestClient, engine: Engine
) -> None:
    records = [
        {"id": "c-1", "name": "Ada"},
        {"id": "c-2", "phone": "not a phone"},
        {"name": "no id"},
        {"id": "c-4", "email": "nobody@", "colour": "red"},
        "not an object",
    ]
    response = client.post("/events", json={"table": "customers", "records": records}, headers=AUTH)

    assert response.status_code == 422
    problems = response.json()["problems"]
    assert [p.split(":")[0].split(" ")[0] for p in problems] == [
        "records[1].phone",
        "records[2].id",
        "records[3].email",
        "records[3]",
        "records[4]",
    ]
    assert problems[1] == "records[2].id is missing"
    assert "unknown field 'colour'" in problems[3]
    assert count(engine, "customers") == 0  # the good record was not written either


def test_records_of_unknown_customers_are_rejected(client: TestClient, engine: Engine) -> None:
    order = {"table": "orders", "id": "o-9", "customer_id": "nobody", "status": "placed"}
    response = client.post("/events", json=order, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["problems"][0].startswith("record.customer_id: no customer 'nobody'")
    assert count(engine, "orders") == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"records": []}, "table is missing"),
        ({"table": "invoices", "records": []}, "'invoices' is not a table"),
        ({"table": "orders", "records": {"id": "o-1"}}, "records must be a list"),
        ([{"id": "c-1"}], "must be a JSON object"),
    ],
)
def test_a_malformed_request_says_what_is_wrong(client: TestClient, body: Any, expected: str) -> None:
    response = client.post("/events", json=body, headers=AUTH)
    assert response.status_code == 422
    assert expected in response.json()["problems"][0]


def test_a_body_that_is_not_json_is_a_bad_request(client: TestClient) -> None:
    assert client.post("/events", content=b"{nope", headers=AUTH).status_code == 400


def test_an_integer_beyond_64_bits_is_refused_not_stored_as_a_float(
    client: TestClient, engine: Engine
) -> None:
    body = b'{"table": "customers", "id": "c-1", "attributes": {"points": 123456789012345678901234567890}}'
    response = client.post("/events", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "out of range (a 64-bit integer)" in response.json()["problems"][0]
    assert count(engine, "customers") == 0


def test_nan_in_a_body_with_long_numbers_is_still_not_json(client: TestClient) -> None:
    body = b'{"table": "customers", "id": "c-1", "attributes": {"a": 123456789012345678901, "b": NaN}}'
    response = client.post("/events", content=body, headers=AUTH)
    assert response.status_code == 400
    assert "NaN is not a number JSON allows" in response.json()["error"]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {EVENTS_TOKEN}", EVENTS_TOKEN])
def test_a_missing_or_wrong_token_is_refused_and_nothing_is_written(
    engine: Engine, authorization: str | None
) -> None:
    metrics = Metrics()
    client = make_client(engine, Secrets(events_token=EVENTS_TOKEN), metrics)
    headers = {"Authorization": authorization} if authorization else {}
    response = client.post("/events", json={"table": "customers", "records": CUSTOMERS}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert count(engine, "customers") == 0
    assert b'outreach_inbound_rejections_total{endpoint="events",reason="token"} 1.0' in metrics.render()


def test_without_a_configured_token_the_endpoint_is_off(engine: Engine) -> None:
    client = make_client(engine, Secrets())
    response = client.post("/events", json={"table": "customers", "records": CUSTOMERS}, headers=AUTH)
    assert response.status_code == 503
    assert "OUTREACH_EVENTS_TOKEN" in response.json()["error"]
    assert count(engine, "customers") == 0

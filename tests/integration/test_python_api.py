"""The Python API as an embedding program uses it: open, load records, tick at an instant,
preview, explain, and the daemon's HTTP app on an injected clock."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

import outreach
from outreach import IngestError, Outreach
from outreach.feedback import Secrets
from tests.worlds import NOON, make_settings, write_world

CUSTOMER = {"id": "c-1", "name": "Ada", "email": "ada@example.com", "email_opt_in": True, "timezone": "UTC"}
LATE = {
    "id": "o-1",
    "customer_id": "c-1",
    "status": "shipped",
    "placed_at": "2026-11-18T10:00:00Z",
    "promised_at": "2026-11-21T12:00:00Z",
}


@pytest.fixture
def api(tmp_path: Path, database_url: str, engine: Engine) -> Iterator[Outreach]:
    write_world(tmp_path)
    with Outreach.open(make_settings(tmp_path, database_url)) as opened:
        yield opened


def outbox(api: Outreach) -> list[dict[str, object]]:
    path = api.settings.path(api.settings.paths.outbox)
    return (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    )


def test_the_package_exposes_the_api_without_importing_the_database_layer_until_asked() -> None:
    code = (
        "import sys, outreach\n"
        "print('outreach.api' in sys.modules, 'sqlalchemy' in sys.modules)\n"
        "outreach.Outreach\n"
        "print('outreach.api' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False", "True"]
    assert set(outreach.__all__) >= {"Outreach", "IngestError", "RulesError", "Settings", "__version__"}


def test_records_loaded_in_memory_are_decided_and_sent_by_a_tick_at_the_given_instant(api: Outreach) -> None:
    assert api.ingest_records("customers", [CUSTOMER]) == 1
    assert api.ingest_records("orders", [LATE]) == 1
    report = api.tick(NOON)
    assert report.now == NOON
    assert [(d.rule, d.entity_id) for d in report.decided.decisions] == [("late-delivery", "o-1")]
    assert report.dispatch is not None and report.dispatch.sent == 1
    [message] = outbox(api)
    assert (message["customer_id"], message["rule"]) == ("c-1", "late-delivery")
    summary = api.summary(report)
    assert [(c.rule, c.outcome) for c in summary.contacts] == [("late-delivery", "sent")]


def test_a_tick_without_sending_records_decisions_and_sends_nothing(api: Outreach) -> None:
    api.ingest_records("customers", [CUSTOMER])
    api.ingest_records("orders", [LATE])
    report = api.tick(NOON, send=False)
    assert report.dispatch is None and len(report.decided.decisions) == 1
    assert outbox(api) == []
    later = api.tick(NOON + timedelta(minutes=15))  # the waiting contact leaves at the next tick
    assert later.dispatch is not None and later.dispatch.sent == 1


def test_a_tick_of_named_rules_evaluates_only_those(api: Outreach) -> None:
    api.ingest_records("customers", [CUSTOMER])
    api.ingest_records("orders", [LATE])
    assert api.tick(NOON, rules=["stalled-checkout"]).decided.decisions == []


def test_time_is_an_aware_argument(api: Outreach) -> None:
    with pytest.raises(ValueError, match="now must be an aware datetime"):
        api.tick(datetime(2026, 11, 24, 12, 0))


def test_bad_records_are_refused_whole_naming_each_one(api: Outreach) -> None:
    bad = [CUSTOMER, {"id": "c-2", "name": "Bo", "phone": "+1 800 FLOWERS"}, "not a record"]
    with pytest.raises(IngestError) as raised:
        api.ingest_records("customers", bad)  # type: ignore[list-item]  # a wrong record on purpose
    assert str(raised.value).splitlines() == [
        "records[1].phone: '+1 800 FLOWERS' has letters in it: write the number in digits only, e.g. "
        "+447911123456 (letters are not read as keypad digits; a note such as '(mobile)' belongs in attributes)",
        "records[2]: a record must be a mapping",
    ]
    assert api.preview("late-delivery", NOON).matches == ()  # nothing was written, c-1 neither
    with pytest.raises(outreach.InputError, match="'customer' is not a table"):
        api.ingest_records("customer", [CUSTOMER])


def test_files_are_ingested_as_the_command_does_and_a_bad_file_is_an_error_with_its_lines(
    api: Outreach, tmp_path: Path
) -> None:
    (tmp_path / "customers.jsonl").write_text(json.dumps(CUSTOMER) + "\n", encoding="utf-8")
    (tmp_path / "orders.jsonl").write_text(json.dumps({**LATE, "status": "lost"}) + "\n", encoding="utf-8")
    with pytest.raises(IngestError) as raised:
        api.ingest(tmp_path / "orders.jsonl", tmp_path / "customers.jsonl")
    assert "orders.jsonl:1: status:" in str(raised.value)
    assert [p.line for p in raised.value.problems] == [1]
    assert api.explain("c-1", NOON).customer_id == "c-1"  # the customers file was loaded


def test_preview_and_explain_return_the_values_the_commands_print(api: Outreach) -> None:
    api.ingest_records("customers", [CUSTOMER])
    api.ingest_records("orders", [LATE])
    preview = api.preview("late-delivery", NOON)
    assert [(m.customer_id, m.entity_id, m.decision) for m in preview.matches] == [("c-1", "o-1", "send")]
    whole = api.preview_tick(NOON)
    assert [(m.rule, m.match) for m in whole.matches] == [("late-delivery", preview.matches[0])]
    assert whole.as_json()["matches"][0]["rule"] == "late-delivery"
    explained = api.explain("c-1", NOON)
    [late] = [r for r in explained.rules if r.rule == "late-delivery"]
    assert late.records[0].holds and late.records[0].decision == "send"
    assert explained.as_json()["customer_id"] == "c-1"


def test_the_http_app_loads_events_stamped_by_the_injected_clock(api: Outreach) -> None:
    client = TestClient(api.http_app(clock=lambda: NOON, secrets=Secrets(events_token="s3cret")))
    assert client.get("/healthz").json() == {"healthy": True, "database_reachable": True}
    assert "outreach_inbound_events_total" in client.get("/metrics").text
    refused = client.post("/events", json={"table": "customers", **CUSTOMER})
    assert refused.status_code == 401
    loaded = client.post(
        "/events", json={"table": "customers", **CUSTOMER}, headers={"Authorization": "Bearer s3cret"}
    )
    assert (loaded.status_code, loaded.json()) == (200, {"table": "customers", "loaded": 1})
    assert api.explain("c-1", NOON).customer_id == "c-1"

"""The studio's JSON API and its gate, in-process over a real database (no browser)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from outreach.state import ledger
from outreach.state.test_sends import test_sends
from outreach.studio import Studio, make_studio_app, studio_token
from tests.studio_world import NOW, TEST_EMAIL, TEST_PHONE, studio_of, write_workspace
from tests.worlds import customer, late_order

LOOPBACK = "http://127.0.0.1:8090"


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    return studio_of(write_workspace(tmp_path))


def client(studio: Studio, **options: Any) -> TestClient:
    return TestClient(make_studio_app(studio, **options), base_url=LOOPBACK)


def preview(studio: Studio, **params: str) -> dict[str, Any]:
    response = client(studio).get("/api/preview", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def outbox(root: Path) -> list[dict[str, Any]]:
    path = root / "var" / "outbox.jsonl"
    return (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    )


def test_the_catalog_lists_every_rule_and_every_template(studio: Studio) -> None:
    catalog = client(studio).get("/api/catalog").json()
    assert [r["name"] for r in catalog["rules"]] == [
        "late-delivery",
        "stalled-checkout",
        "detractor-follow-up",
    ]
    assert [t["name"] for t in catalog["templates"]] == [
        "detractor_apology",
        "late_delivery",
        "pickup_ready",
        "stalled_checkout",
        "stalled_checkout_reminder",
    ]
    pickup = catalog["templates"][2]
    assert (pickup["used_by"], pickup["about"], pickup["channels"]) == ([], "customer", ["sms"])
    assert catalog["locales"] == ["en", "ar"]
    assert catalog["test_recipients"] == [TEST_EMAIL, TEST_PHONE]
    assert {c["source"] for c in catalog["samples"]} == {"sample", "bundled"}


def test_an_arabic_preview_is_right_to_left_and_its_sms_ucs2_because_of_its_script(studio: Studio) -> None:
    shown = preview(studio, target="rule:late-delivery", locale="ar", customer="sample")
    assert shown["dir"] == "rtl"
    assert '<html lang="ar" dir="rtl">' in shown["email"]["html"]
    sms = shown["sms"]
    assert (sms["encoding"], sms["avoidable"]) == ("UCS-2", None)
    assert {run["kind"] for run in sms["runs"]} <= {"gsm7", "script"}
    assert "".join(run["text"] for run in sms["runs"]) == sms["body"]


def test_an_english_sms_with_a_time_is_gsm7(studio: Studio) -> None:
    sms = preview(studio, target="template:pickup_ready", locale="en")["sms"]
    assert "9:30 AM" in sms["body"] and "\u202f" not in sms["body"]
    assert (sms["encoding"], sms["segments"], sms["ucs2"]) == ("GSM-7", 1, [])


def test_the_characters_that_alone_make_an_sms_ucs2_are_marked_with_their_fix(studio: Studio) -> None:
    sms_file = studio.app.templates_dir / "pickup_ready" / "sms.en.txt"
    sms_file.write_text("It’s ready 🙂 {{ company.support_phone }}\n", encoding="utf-8")
    sms = preview(studio, target="template:pickup_ready", locale="en")["sms"]
    assert sms["encoding"] == "UCS-2"
    assert [(r["text"], r["kind"]) for r in sms["runs"] if r["kind"] != "gsm7"] == [
        ("’", "ucs2"),
        ("🙂", "ucs2"),
    ]
    assert [(c["name"], c["replacement"]) for c in sms["avoidable"]["characters"]] == [
        ("’ U+2019 RIGHT SINGLE QUOTATION MARK", "'"),
        ("🙂 U+1F642 SLIGHTLY SMILING FACE", None),
    ]


def test_a_preview_lists_the_check_problems_of_its_template_with_file_and_line(studio: Studio) -> None:
    (studio.app.templates_dir / "late_delivery" / "sms.en.txt").write_text(
        "{{ order.carier }} {{ company.support_phone }}\n", encoding="utf-8"
    )
    shown = preview(studio, target="rule:late-delivery", locale="en")
    assert [p["where"] for p in shown["problems"]] == ["templates/late_delivery/sms.en.txt:1:10"]
    assert "order has no field 'carier' (did you mean 'carrier'?)" in shown["problems"][0]["message"]
    assert "no field 'carier'" in shown["sms"]["error"]  # the message itself cannot be rendered
    assert shown["email"]["subject"]  # the email still renders


def test_a_bundled_customer_is_shown_with_the_record_the_rule_matches(studio: Studio) -> None:
    shown = preview(studio, target="rule:late-delivery", customer="c-1001")
    assert (shown["customer"]["source"], shown["locale"], shown["record"]["id"]) == (
        "bundled",
        "en",
        "o-2001",
    )
    assert "Oliver Bennett" in shown["email"]["html"]


def test_a_customer_without_such_a_record_is_shown_with_a_sample_one_and_says_so(studio: Studio) -> None:
    shown = preview(studio, target="rule:detractor-follow-up", customer="c-1002")
    assert shown["record"] == {
        "id": None,
        "choices": [],
        "note": "c-1002 has no survey: a sample one is shown",
    }
    assert "Amelia Clarke" in shown["email"]["html"]


def test_customers_of_the_database_are_found_by_id_name_or_email_and_previewed(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    studio = studio_of(write_workspace(tmp_path, database_url))  # ENGINE has migrated it
    customer(studio.app.engine, "c-77")
    with studio.app.engine.begin() as connection:
        connection.execute(sa.text("UPDATE customers SET name = 'Zeynep Kaya' WHERE id = 'c-77'"))
    late_order(studio.app.engine, "o-77", "c-77", NOW)
    http = client(studio)
    for query in ("c-77", "zeynep", "C-77@EXAMPLE"):
        found = http.get("/api/customers", params={"q": query}).json()["customers"]
        assert [(c["id"], c["source"]) for c in found] == [("c-77", "database")]
    shown = preview(studio, target="rule:late-delivery", customer="c-77")
    assert (shown["record"]["id"], shown["customer"]["source"]) == ("o-77", "database")


def test_an_unknown_customer_or_target_is_a_message_not_a_crash(studio: Studio) -> None:
    http = client(studio)
    answer = http.get("/api/preview", params={"target": "rule:late-delivery", "customer": "nobody"})
    assert answer.status_code == 400 and 'no customer "nobody"' in answer.json()["error"]
    answer = http.get("/api/preview", params={"target": "late-delivry"})
    assert answer.status_code == 400 and "did you mean 'late-delivery'?" in answer.json()["error"]


def test_a_test_send_goes_to_the_outbox_marked_as_a_test_and_is_recorded_apart_from_contacts(
    studio: Studio, tmp_path: Path
) -> None:
    answer = client(studio).post(
        "/api/send-test",
        json={"target": "rule:late-delivery", "customer": "c-1001", "to": TEST_PHONE, "locale": "en"},
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["outcome"], result["channel"], result["test"]) == ("sent", "sms", True)
    [line] = outbox(tmp_path)
    assert line["test"] is True and line["sms"].startswith("[TEST] Souq Example: sorry")
    assert (line["to"], line["customer_id"], line["rule"]) == (TEST_PHONE, "c-1001", "late-delivery")
    with studio.app.engine.connect() as connection:
        [row] = connection.execute(sa.select(test_sends)).mappings().all()
        assert (row["recipient"], row["outcome"], row["record_id"]) == (TEST_PHONE, "sent", "o-2001")
        assert connection.execute(sa.select(sa.func.count()).select_from(ledger.contacts)).scalar() == 0


def test_a_test_send_to_an_address_not_allow_listed_is_refused_and_nothing_is_sent(
    studio: Studio, tmp_path: Path
) -> None:
    answer = client(studio).post(
        "/api/send-test",
        json={"target": "rule:late-delivery", "customer": "c-1001", "to": "boss@example.com"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("boss@example.com is not a test recipient")
    assert outbox(tmp_path) == []
    with studio.app.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(test_sends)).scalar() == 0


def test_on_loopback_a_request_naming_another_host_is_refused(studio: Studio) -> None:
    # A page on another site that resolves its own name to 127.0.0.1 (DNS rebinding) names its host.
    http = TestClient(make_studio_app(studio), base_url="http://attacker.example:8090")
    assert http.get("/api/catalog").status_code == 403
    assert client(studio).get("/api/catalog").status_code == 200
    assert TestClient(make_studio_app(studio), base_url="http://localhost:8090").get("/").status_code == 200


def test_a_post_must_be_json_from_the_page_itself(studio: Studio) -> None:
    http = client(studio)
    form = http.post("/api/send-test", data={"to": TEST_EMAIL})
    assert form.status_code == 415
    foreign = http.post(
        "/api/send-test", json={"to": TEST_EMAIL}, headers={"Origin": "https://attacker.example"}
    )
    assert foreign.status_code == 403


def test_off_loopback_every_request_needs_the_token_from_the_url_a_cookie_or_a_bearer_header(
    studio: Studio,
) -> None:
    app = make_studio_app(studio, token="s3cret-token", loopback=False)
    http = TestClient(app, base_url="http://studio.internal:8090")
    assert http.get("/").status_code == 401
    assert http.get("/api/catalog", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert http.get("/api/catalog", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    opened = http.get("/?token=s3cret-token", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    assert "httponly" in opened.headers["set-cookie"].lower()
    assert http.get("/api/catalog").status_code == 200  # the cookie from now on
    assert TestClient(app, base_url="http://studio.internal:8090").get("/?token=guess").status_code == 401


def test_a_token_is_made_up_off_loopback_and_taken_from_the_environment_when_set() -> None:
    assert studio_token("127.0.0.1", {}) is None
    assert studio_token("localhost", {}) is None
    made = studio_token("0.0.0.0", {})
    assert made is not None and len(made) >= 24 and made != studio_token("0.0.0.0", {})
    assert studio_token("0.0.0.0", {"OUTREACH_STUDIO_TOKEN": "mine"}) == "mine"
    assert studio_token("127.0.0.1", {"OUTREACH_STUDIO_TOKEN": "mine"}) == "mine"


def test_saving_a_template_is_announced_on_the_event_stream(studio: Studio) -> None:
    closing = threading.Event()
    http = TestClient(make_studio_app(studio, closing=closing, poll_seconds=0.05), base_url=LOOPBACK)
    sms_file = studio.app.templates_dir / "late_delivery" / "sms.en.txt"
    events: list[str] = []
    with http.stream("GET", "/api/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
                if events == ["hello"]:
                    time.sleep(0.01)
                    sms_file.write_text(sms_file.read_text(encoding="utf-8") + "Edited.\n", encoding="utf-8")
                if "changed" in events:
                    closing.set()
                    break
    assert events == ["hello", "changed"]

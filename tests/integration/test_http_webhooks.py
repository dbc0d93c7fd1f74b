"""Provider webhooks: only signed requests change anything, and feedback lands in the ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from outreach.daemon.metrics import Metrics
from outreach.feedback import Secrets
from outreach.state import ledger
from tests.integration.http_app import (
    NOW,
    TWILIO_TOKEN,
    SendGridKey,
    add_contact,
    add_customer,
    contact,
    customer,
    make_client,
    provider_status,
    suppressions,
    twilio_signature,
)

PHONE = "+442079460101"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sendgrid_key() -> SendGridKey:
    return SendGridKey()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def client(engine: Engine, sendgrid_key: SendGridKey, metrics: Metrics) -> TestClient:
    add_customer(engine, id="c-1", phone=PHONE, email="ada@example.com")
    secrets = Secrets(twilio_auth_token=TWILIO_TOKEN, sendgrid_public_key=sendgrid_key.public_base64)
    return make_client(engine, secrets, metrics)


def post_twilio(client: TestClient, path: str, params: dict[str, str], signature: str | None = None) -> int:
    headers = {"X-Twilio-Signature": signature if signature is not None else twilio_signature(path, params)}
    return client.post(path, data=params, headers=headers).status_code


def post_sendgrid(
    client: TestClient,
    key: SendGridKey,
    events: list[dict[str, object]],
    *,
    tamper: bool = False,
    timestamp: str = "1772445600",  # NOW
) -> int:
    body = json.dumps(events).encode()
    signature = key.sign(timestamp, body)
    if tamper:
        body = body.replace(b"delivered", b"bounce")
    headers = {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    return client.post("/webhooks/sendgrid/events", content=body, headers=headers).status_code


# -- Twilio status callbacks -----------------------------------------------------------------------


def test_a_signed_status_callback_records_the_status_on_the_contact(
    client: TestClient, engine: Engine
) -> None:
    add_contact(engine, "ob-1", "c-1", "sms", provider_id="SM1")
    path = "/webhooks/twilio/status?outbox_id=ob-1"
    assert post_twilio(client, path, {"MessageSid": "SM1", "MessageStatus": "delivered"}) == 204
    assert provider_status(engine, "ob-1") == "delivered"

    # A late `sent` never moves a delivered message back.
    assert post_twilio(client, path, {"MessageSid": "SM1", "MessageStatus": "sent"}) == 204
    assert provider_status(engine, "ob-1") == "delivered"


def test_a_status_callback_without_outbox_id_finds_the_contact_by_message_sid(
    client: TestClient, engine: Engine
) -> None:
    add_contact(engine, "ob-2", "c-1", "sms", provider_id="SM2")
    assert (
        post_twilio(client, "/webhooks/twilio/status", {"MessageSid": "SM2", "MessageStatus": "sent"}) == 204
    )
    assert provider_status(engine, "ob-2") == "sent"


def test_a_badly_signed_status_callback_is_refused_and_changes_nothing(
    client: TestClient, engine: Engine, metrics: Metrics
) -> None:
    add_contact(engine, "ob-1", "c-1", "sms", provider_id="SM1")
    path = "/webhooks/twilio/status?outbox_id=ob-1"
    params = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "21610"}
    assert (
        post_twilio(client, path, params, signature=twilio_signature(path, params, token="not-the-token"))
        == 403
    )
    assert post_twilio(client, path, params, signature="") == 403
    # Signed for another contact: the query is part of what Twilio signs.
    assert (
        post_twilio(
            client, path, params, signature=twilio_signature("/webhooks/twilio/status?outbox_id=ob-9", params)
        )
        == 403
    )
    assert provider_status(engine, "ob-1") is None
    assert suppressions(engine) == {}
    assert customer(engine, "c-1")["sms_opt_in"] is True
    assert (
        b'outreach_inbound_rejections_total{endpoint="twilio_status",reason="signature"} 3.0'
        in metrics.render()
    )


def test_an_unsubscribed_number_is_suppressed_and_loses_sms_consent(
    client: TestClient, engine: Engine
) -> None:
    add_contact(engine, "ob-1", "c-1", "sms", provider_id="SM1")
    params = {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "21610"}
    assert post_twilio(client, "/webhooks/twilio/status?outbox_id=ob-1", params) == 204
    assert provider_status(engine, "ob-1") == "undelivered"
    assert suppressions(engine) == {("c-1", "sms"): "21610"}
    assert customer(engine, "c-1")["sms_opt_in"] is False


# -- Twilio incoming SMS ---------------------------------------------------------------------------


def test_stop_then_start_withdraws_and_restores_sms_consent(client: TestClient, engine: Engine) -> None:
    path = "/webhooks/twilio/inbound"
    stop = {"MessageSid": "SM10", "From": PHONE, "Body": " stop "}
    response = client.post(path, data=stop, headers={"X-Twilio-Signature": twilio_signature(path, stop)})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.endswith("<Response/>")
    assert customer(engine, "c-1")["sms_opt_in"] is False
    assert suppressions(engine) == {("c-1", "sms"): "STOP"}

    start = {"MessageSid": "SM11", "From": PHONE, "Body": "START"}
    assert post_twilio(client, path, start) == 200
    assert customer(engine, "c-1")["sms_opt_in"] is True
    assert suppressions(engine) == {}


def test_other_messages_and_unknown_senders_change_nothing(client: TestClient, engine: Engine) -> None:
    assert (
        post_twilio(
            client, "/webhooks/twilio/inbound", {"From": PHONE, "Body": "please stop the late parcel"}
        )
        == 200
    )
    assert post_twilio(client, "/webhooks/twilio/inbound", {"From": "+14155550100", "Body": "STOP"}) == 200
    assert customer(engine, "c-1")["sms_opt_in"] is True
    assert suppressions(engine) == {}


def test_a_badly_signed_stop_is_refused(client: TestClient, engine: Engine) -> None:
    params = {"From": PHONE, "Body": "STOP"}
    assert (
        post_twilio(
            client, "/webhooks/twilio/inbound", params, signature=twilio_signature("/elsewhere", params)
        )
        == 403
    )
    assert customer(engine, "c-1")["sms_opt_in"] is True


def test_twilio_webhooks_are_off_without_an_auth_token(engine: Engine) -> None:
    client = make_client(engine, Secrets())
    params = {"From": PHONE, "Body": "STOP"}
    assert post_twilio(client, "/webhooks/twilio/inbound", params) == 503


# -- SendGrid Event Webhook ------------------------------------------------------------------------


def test_signed_events_record_the_status_and_a_bounce_suppresses_email(
    client: TestClient, engine: Engine, sendgrid_key: SendGridKey, metrics: Metrics
) -> None:
    add_contact(engine, "ob-1", "c-1", "email")
    add_contact(engine, "ob-2", "c-1", "email")
    events: list[dict[str, object]] = [
        {"event": "delivered", "timestamp": 1772445000, "outbox_id": "ob-1", "email": "ada@example.com"},
        {"event": "processed", "timestamp": 1772444000, "outbox_id": "ob-1", "email": "ada@example.com"},
        {
            "event": "bounce",
            "type": "bounce",
            "timestamp": 1772445100,
            "outbox_id": "ob-2",
            "email": "ada@example.com",
        },
        {
            "event": "delivered",
            "timestamp": 1772445000,
            "email": "someone@example.com",
        },  # not sent by outreach
    ]
    assert post_sendgrid(client, sendgrid_key, events) == 204
    assert provider_status(engine, "ob-1") == "delivered"
    assert provider_status(engine, "ob-2") == "bounce"
    assert suppressions(engine) == {("c-1", "email"): "bounce"}
    assert b'outreach_inbound_events_total{kind="bounce",source="sendgrid"} 1.0' in metrics.render()


def test_a_blocked_bounce_is_recorded_but_does_not_suppress(
    client: TestClient, engine: Engine, sendgrid_key: SendGridKey
) -> None:
    add_contact(engine, "ob-1", "c-1", "email")
    event = {"event": "bounce", "type": "blocked", "timestamp": 1772445000, "outbox_id": "ob-1"}
    assert post_sendgrid(client, sendgrid_key, [event]) == 204
    assert provider_status(engine, "ob-1") == "bounce"
    assert suppressions(engine) == {}


def test_a_tampered_or_unsigned_event_batch_is_refused_and_changes_nothing(
    client: TestClient, engine: Engine, sendgrid_key: SendGridKey, metrics: Metrics
) -> None:
    add_contact(engine, "ob-1", "c-1", "email")
    events: list[dict[str, object]] = [{"event": "delivered", "timestamp": 1772445000, "outbox_id": "ob-1"}]
    assert post_sendgrid(client, sendgrid_key, events, tamper=True) == 403
    assert post_sendgrid(client, SendGridKey(), events) == 403  # signed with another key
    unsigned = client.post("/webhooks/sendgrid/events", content=json.dumps(events).encode())
    assert unsigned.status_code == 403
    assert provider_status(engine, "ob-1") is None
    assert suppressions(engine) == {}
    assert (
        b'outreach_inbound_rejections_total{endpoint="sendgrid",reason="signature"} 3.0' in metrics.render()
    )


def test_sendgrid_events_are_off_without_a_readable_public_key(engine: Engine) -> None:
    for secrets in (Secrets(), Secrets(sendgrid_public_key="not-a-key")):
        client = make_client(engine, secrets)
        assert client.post("/webhooks/sendgrid/events", content=b"[]").status_code == 503


# -- replays, late and unmatched feedback, consent withdrawn for waiting contacts ----------------------


def test_a_replayed_start_after_a_later_stop_changes_nothing(client: TestClient, engine: Engine) -> None:
    path = "/webhooks/twilio/inbound"
    start = {"MessageSid": "SM20", "From": PHONE, "Body": "START"}
    stop = {"MessageSid": "SM21", "From": PHONE, "Body": "STOP"}
    assert post_twilio(client, path, start) == 200
    assert post_twilio(client, path, stop) == 200
    assert post_twilio(client, path, start) == 200  # the same signed request, sent again
    assert customer(engine, "c-1")["sms_opt_in"] is False
    assert suppressions(engine) == {("c-1", "sms"): "STOP"}


def test_a_start_makes_a_contact_held_for_want_of_consent_due_at_once(engine: Engine) -> None:
    add_customer(engine, id="c-1", phone=PHONE, email=None, sms_opt_in=False)
    add_contact(engine, "ob-8", "c-1", "sms", state="suppressed")
    with engine.begin() as connection:
        connection.execute(
            sa.update(ledger.contacts).where(ledger.contacts.c.id == "ob-8").values(recheck_at=None)
        )
        assert ledger.held_due(connection, "late-delivery", NOW) == []  # waits for a change
    client = make_client(engine, Secrets(twilio_auth_token=TWILIO_TOKEN))
    start = {"MessageSid": "SM41", "From": PHONE, "Body": "START"}  # no suppression to lift
    assert post_twilio(client, "/webhooks/twilio/inbound", start) == 200
    with engine.connect() as connection:
        [held] = ledger.held_due(connection, "late-delivery", NOW)
    assert (held.entity_id, held.customer_id) == ("o-ob-8", "c-1")


def test_an_arabic_stop_withdraws_sms_consent(client: TestClient, engine: Engine) -> None:
    assert (
        post_twilio(
            client, "/webhooks/twilio/inbound", {"MessageSid": "SM30", "From": PHONE, "Body": "إيقاف"}
        )
        == 200
    )
    assert customer(engine, "c-1")["sms_opt_in"] is False


def test_a_stop_moves_a_contact_waiting_for_the_morning_to_email_at_once(engine: Engine) -> None:
    from outreach.rules.loader import load_rules

    add_customer(engine, id="c-1", phone=PHONE, email="ada@example.com")
    add_contact(engine, "ob-9", "c-1", "sms", state="pending", send_at=NOW.replace(hour=23))
    rules = load_rules(REPO / "rules")
    client = make_client(engine, Secrets(twilio_auth_token=TWILIO_TOKEN), rules=rules)
    stop = {"MessageSid": "SM40", "From": PHONE, "Body": "stop"}
    assert post_twilio(client, "/webhooks/twilio/inbound", stop) == 200
    waiting = contact(engine, "ob-9")
    assert (waiting["state"], waiting["channel"]) == ("pending", "email")
    assert "sms" in waiting["reason"] and "while it waited" in waiting["reason"]


def test_an_old_signed_sendgrid_event_is_refused_as_a_replay(
    client: TestClient, engine: Engine, sendgrid_key: SendGridKey, metrics: Metrics
) -> None:
    add_contact(engine, "ob-1", "c-1", "email")
    event = {"event": "bounce", "type": "bounce", "timestamp": 1577836800, "outbox_id": "ob-1"}
    assert post_sendgrid(client, sendgrid_key, [event], timestamp="1577836800") == 403  # 2020-01-01
    assert suppressions(engine) == {}
    assert b'outreach_inbound_rejections_total{endpoint="sendgrid",reason="stale"} 1.0' in metrics.render()


def test_a_sendgrid_event_seen_before_changes_nothing_even_after_its_suppression_was_lifted(
    client: TestClient, engine: Engine, sendgrid_key: SendGridKey
) -> None:
    from outreach.state import ledger

    add_contact(engine, "ob-1", "c-1", "email")
    event = {"event": "unsubscribe", "timestamp": 1772445000, "outbox_id": "ob-1", "sg_event_id": "ev-1"}
    assert post_sendgrid(client, sendgrid_key, [event]) == 204
    assert suppressions(engine) == {("c-1", "email"): "unsubscribe"}
    with engine.begin() as connection:
        ledger.remove_suppression(connection, "c-1", "email")  # the customer subscribed again
    assert post_sendgrid(client, sendgrid_key, [event]) == 204
    assert suppressions(engine) == {}


@pytest.mark.parametrize(
    "event",
    [
        {"event": "bounce", "custom_args": {"outbox_id": "ob-1"}},
        {"event": "bounce", "sg_message_id": "MSG-1.filter0001.16648.5515E0B88.0"},
        {"event": "bounce", "email": "ADA@example.com"},  # no id at all: the address of a known customer
    ],
)
def test_a_bounce_finds_its_customer_by_nested_outbox_id_message_id_or_address(
    client: TestClient, engine: Engine, sendgrid_key: SendGridKey, event: dict[str, object]
) -> None:
    add_contact(engine, "ob-1", "c-1", "email", provider_id="MSG-1")
    assert post_sendgrid(client, sendgrid_key, [{**event, "type": "bounce", "timestamp": 1772445000}]) == 204
    assert suppressions(engine) == {("c-1", "email"): "bounce"}


def test_a_drop_for_spam_content_fails_the_contact_without_suppressing_the_address(
    client: TestClient, engine: Engine, sendgrid_key: SendGridKey
) -> None:
    add_contact(engine, "ob-1", "c-1", "email")
    event = {"event": "dropped", "reason": "Spam Content (if spam checker app enabled)", "outbox_id": "ob-1"}
    assert post_sendgrid(client, sendgrid_key, [{**event, "timestamp": 1772445000}]) == 204
    assert suppressions(engine) == {}
    dropped = contact(engine, "ob-1")
    assert dropped["state"] == "failed" and "Spam Content" in dropped["reason"]


def test_a_drop_whose_reason_holds_a_nul_is_recorded_with_the_rest_of_its_words(
    client: TestClient, engine: Engine, sendgrid_key: SendGridKey
) -> None:
    # A drop's reason quotes the receiving mail server; PostgreSQL's text cannot hold a NUL.
    add_contact(engine, "ob-1", "c-1", "email")
    add_contact(engine, "ob-2", "c-2", "email")
    events = [
        {"event": "dropped", "reason": "Spam\x00Content", "outbox_id": "ob-1"},
        {"event": "dropped", "reason": "Bounced Address \x00550", "outbox_id": "ob-2"},
    ]
    assert post_sendgrid(client, sendgrid_key, [{**e, "timestamp": 1772445000} for e in events]) == 204
    assert "Spam\ufffdContent" in contact(engine, "ob-1")["reason"]
    assert contact(engine, "ob-1")["state"] == "failed"
    assert suppressions(engine) == {("c-2", "email"): "dropped"}

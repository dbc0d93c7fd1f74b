"""What a provider's event means, read without a database: keywords, error codes, event names."""

from __future__ import annotations

import pytest

from outreach.events import bearer_ok
from outreach.feedback import (
    TWILIO_STAGES,
    Feedback,
    inbound_keyword,
    later_statuses,
    public_url,
    sendgrid_feedback,
    twilio_status_feedback,
)


@pytest.mark.parametrize(
    ("body", "opt_out_type", "expected"),
    [
        ("STOP", None, "stop"),
        (" stopall ", None, "stop"),
        ("Unsubscribe", None, "stop"),
        ("cancel", None, "stop"),
        ("END", None, "stop"),
        ("quit.", None, "stop"),
        ("START", None, "start"),
        ("yes", None, "start"),
        ("UNSTOP", None, "start"),
        ("please stop the late parcel", None, None),
        ("HELP", None, None),
        ("", None, None),
        ("Arrêt", "STOP", "stop"),
        ("", "START", "start"),
        ("stop", "HELP", "stop"),
    ],
)
def test_incoming_keywords_are_read_the_way_twilio_reads_them(
    body: str, opt_out_type: str | None, expected: str | None
) -> None:
    assert inbound_keyword(body, opt_out_type) == expected


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (
            "undelivered",
            "21610",
            Feedback("undelivered", True, True, "21610", "twilio: message undelivered with error 21610"),
        ),
        (
            "failed",
            "21211",
            Feedback("failed", True, False, "21211", "twilio: message failed with error 21211"),
        ),
        (
            "undelivered",
            "21614",
            Feedback("undelivered", True, False, "21614", "twilio: message undelivered with error 21614"),
        ),
        (
            "undelivered",
            "30003",
            Feedback("undelivered", code="30003"),
        ),  # the handset is off: try again later
        ("delivered", None, Feedback("delivered")),
        ("sent", "", Feedback("sent")),
    ],
)
def test_twilio_error_codes_that_condemn_the_number_suppress_it(
    status: str, code: str | None, expected: Feedback
) -> None:
    assert twilio_status_feedback(status, code) == expected


@pytest.mark.parametrize(
    ("event", "suppress"),
    [
        ({"event": "bounce"}, True),
        ({"event": "bounce", "type": "bounce"}, True),
        ({"event": "bounce", "type": "blocked"}, False),
        ({"event": "dropped"}, True),
        ({"event": "spamreport"}, True),
        ({"event": "unsubscribe"}, True),
        ({"event": "group_unsubscribe"}, True),
        ({"event": "delivered"}, False),
        ({"event": "open"}, False),
    ],
)
def test_sendgrid_events_that_refuse_the_address_suppress_email(
    event: dict[str, str], suppress: bool
) -> None:
    feedback = sendgrid_feedback({**event, "outbox_id": "ob-1"})
    assert feedback is not None and feedback.status == event["event"] and feedback.suppress is suppress


def test_sendgrid_events_outreach_did_not_send_are_ignored() -> None:
    assert sendgrid_feedback({"event": "delivered", "email": "someone@example.com"}) is None


def test_a_late_status_never_overwrites_one_further_along() -> None:
    assert later_statuses(TWILIO_STAGES, "sent") == [
        "canceled",
        "delivered",
        "failed",
        "partially_delivered",
        "read",
        "undelivered",
    ]
    assert later_statuses(TWILIO_STAGES, "read") == []
    assert "sent" in later_statuses(TWILIO_STAGES, "something-new")


def test_the_signed_url_is_the_public_one_with_the_raw_query() -> None:
    assert public_url("https://example.com/outreach/", "/webhooks/twilio/status", "outbox_id=a%2Fb") == (
        "https://example.com/outreach/webhooks/twilio/status?outbox_id=a%2Fb"
    )
    assert (
        public_url("https://example.com", "/webhooks/twilio/inbound", "")
        == "https://example.com/webhooks/twilio/inbound"
    )


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer s3cret", True),
        ("bearer s3cret", True),
        ("Bearer wrong", False),
        ("s3cret", False),
        (None, False),
        ("Bearer ", False),
    ],
)
def test_the_events_token_is_a_bearer_token(header: str | None, ok: bool) -> None:
    assert bearer_ok("s3cret", header) is ok

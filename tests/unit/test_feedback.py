"""What a provider's event means, read without a database: keywords, error codes, event names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from outreach.events import bearer_ok
from outreach.feedback import (
    TWILIO_STAGES,
    Feedback,
    Keywords,
    inbound_keyword,
    later_statuses,
    normalise_keyword,
    public_url,
    sendgrid_feedback,
    sendgrid_message_id,
    sendgrid_outbox_id,
    sendgrid_timestamp_fresh,
    twilio_status_feedback,
)
from outreach.rendering.sms import opt_out_line


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
    said = twilio_status_feedback(status, code)
    assert (said.status, said.suppress, said.withdraw_sms_consent, said.code) == (
        expected.status,
        expected.suppress,
        expected.withdraw_sms_consent,
        expected.code,
    )
    assert said.reason.startswith(expected.reason)


@pytest.mark.parametrize(
    ("event", "suppress"),
    [
        ({"event": "bounce"}, True),
        ({"event": "bounce", "type": "bounce"}, True),
        ({"event": "bounce", "type": "blocked"}, False),
        ({"event": "dropped", "reason": "Bounced Address"}, True),
        ({"event": "dropped", "reason": "Unsubscribed Address"}, True),
        ({"event": "dropped", "reason": "Spam Reporting Address"}, True),
        ({"event": "dropped", "reason": "Invalid"}, True),
        ({"event": "dropped", "reason": "Spam Content (if spam checker app enabled)"}, False),
        ({"event": "dropped", "reason": "Recipient List over Package Quota"}, False),
        ({"event": "dropped"}, False),
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


def test_a_drop_for_a_reason_about_the_message_is_a_recorded_failure_not_a_suppression() -> None:
    feedback = sendgrid_feedback({"event": "dropped", "reason": "Spam Content (if spam checker app enabled)"})
    assert feedback is not None and feedback.fail and not feedback.suppress
    assert "Spam Content" in feedback.reason


def test_an_event_without_a_name_means_nothing() -> None:
    assert sendgrid_feedback({"email": "someone@example.com"}) is None


@pytest.mark.parametrize(
    "event",
    [
        {"event": "bounce", "outbox_id": "ob-1"},
        {"event": "bounce", "custom_args": {"outbox_id": "ob-1"}},
        {"event": "bounce", "unique_args": {"outbox_id": "ob-1"}},
    ],
)
def test_the_outbox_id_is_read_at_the_top_level_or_nested_in_custom_or_unique_args(
    event: dict[str, Any],
) -> None:
    assert sendgrid_outbox_id(event) == "ob-1"


def test_the_message_id_is_sg_message_id_without_its_filter_suffix() -> None:
    event = {"sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}
    assert sendgrid_message_id(event) == "14c5d75ce93"
    assert sendgrid_outbox_id({"event": "bounce"}) is None and sendgrid_message_id({}) is None


def test_a_signed_sendgrid_request_is_fresh_only_within_the_window() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    window = timedelta(hours=24, minutes=10)
    assert sendgrid_timestamp_fresh(str(int(now.timestamp()) - 3600), now, window)
    assert not sendgrid_timestamp_fresh(str(int(datetime(2020, 1, 1, tzinfo=UTC).timestamp())), now, window)
    assert not sendgrid_timestamp_fresh(str(int(now.timestamp()) + 3600), now, window), "from the future"
    assert not sendgrid_timestamp_fresh("yesterday", now, window)
    assert not sendgrid_timestamp_fresh(None, now, window)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("إيقاف", "stop"),
        ("ايقاف", "stop"),
        ("إِيقَاف", "stop"),  # with harakat
        ("  توقف!  ", "stop"),
        ("الغاء", "stop"),
        ("إلغاء الاشتراك", "stop"),
        ("ARRET", "stop"),
        ("Arrêt.", "stop"),
        ("stop", "stop"),
        ("«STOP»", "stop"),
        ("ابدأ", "start"),
        ("Démarrer", "start"),
        ("start", "start"),
        ("stop the late parcel messages please", None),
        ("شكرا", None),
    ],
)
def test_opt_out_and_opt_in_words_are_read_in_english_arabic_and_french(
    body: str, expected: str | None
) -> None:
    assert inbound_keyword(body) == expected


def test_keywords_can_be_extended_in_settings() -> None:
    keywords = Keywords.of(extra_out=["BASTA"], extra_in=["HOLA"])
    assert keywords.read("basta") == "stop" and keywords.read("Hola!") == "start"
    assert inbound_keyword("basta") is None


def test_the_arabic_sms_footer_names_a_word_that_opts_out() -> None:
    footer = opt_out_line("ar")
    words = {normalise_keyword(word) for word in footer.split()}
    assert any(inbound_keyword(word) == "stop" for word in footer.split()), footer
    assert normalise_keyword("إيقاف") in words


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

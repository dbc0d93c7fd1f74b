"""OutgoingMessage refuses half-rendered messages; retry delays are read from provider headers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from outreach.channels.base import OutgoingMessage, retry_after_seconds

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)

EMAIL: dict[str, Any] = {
    "outbox_id": "ob-1",
    "channel": "email",
    "to": "ann@example.com",
    "customer_id": "c-1",
    "rule": "late-delivery",
    "locale": "en",
    "subject": "Your parcel",
    "text": "It is late.",
}
SMS: dict[str, Any] = {
    "outbox_id": "ob-2",
    "channel": "sms",
    "to": "+447700900123",
    "customer_id": "c-1",
    "rule": "late-delivery",
    "locale": "en",
    "sms": "Your parcel is late.",
}


def test_an_email_with_a_subject_and_an_html_body_alone_is_a_message() -> None:
    message = OutgoingMessage(**{**EMAIL, "text": None, "html": "<p>It is late.</p>"})
    assert message.html == "<p>It is late.</p>"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({**EMAIL, "outbox_id": ""}, "needs an outbox_id"),
        ({**EMAIL, "to": ""}, "outbox 'ob-1': no recipient address"),
        ({**EMAIL, "subject": None}, "outbox 'ob-1': an email needs a subject"),
        ({**EMAIL, "text": None, "html": None}, "an email needs a text or an HTML body"),
        ({**SMS, "sms": ""}, "outbox 'ob-2': an SMS needs a body"),
        ({**SMS, "channel": "fax"}, "channel must be 'email' or 'sms', not 'fax'"),
    ],
)
def test_a_message_missing_what_its_channel_needs_cannot_be_built(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        OutgoingMessage(**fields)


@pytest.mark.parametrize(
    ("headers", "reset_header", "expected"),
    [
        ({"Retry-After": "2"}, None, 2.0),
        ({"retry-after": "1.5"}, None, 1.5),
        ({"Retry-After": "Tue, 24 Nov 2026 09:31:00 GMT"}, None, 60.0),
        ({"Retry-After": "Tue, 24 Nov 2026 09:00:00 GMT"}, None, 0.0),
        ({"Retry-After": "-3"}, None, 0.0),
        ({"X-RateLimit-Reset": str(int(NOW.timestamp()) + 30)}, "X-RateLimit-Reset", 30.0),
        ({"x-ratelimit-reset": str(int(NOW.timestamp()) - 5)}, "X-RateLimit-Reset", 0.0),
        ({"Retry-After": "4", "X-RateLimit-Reset": str(int(NOW.timestamp()) + 30)}, "X-RateLimit-Reset", 4.0),
        (
            {"Retry-After": "soon", "X-RateLimit-Reset": str(int(NOW.timestamp()) + 7)},
            "X-RateLimit-Reset",
            7.0,
        ),
        ({"X-RateLimit-Reset": str(int(NOW.timestamp()) + 30)}, None, None),
        ({"X-RateLimit-Reset": "never"}, "X-RateLimit-Reset", None),
        ({"Retry-After": "soon"}, None, None),
        ({}, "X-RateLimit-Reset", None),
        (None, None, None),
    ],
)
def test_the_retry_delay_comes_from_retry_after_else_the_rate_limit_reset_instant(
    headers: dict[str, str] | None, reset_header: str | None, expected: float | None
) -> None:
    assert retry_after_seconds(headers, NOW, reset_header=reset_header) == expected

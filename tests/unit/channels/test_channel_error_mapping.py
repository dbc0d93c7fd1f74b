"""Each SDK and transport exception maps to exactly one outreach delivery error, with its code."""

from __future__ import annotations

import http.client
import urllib.error
from datetime import UTC, datetime

import pytest
import requests
from python_http_client.exceptions import HTTPError
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from outreach.channels.sendgrid import map_sendgrid_error
from outreach.channels.twilio import map_twilio_error
from outreach.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
URI = "/2010-04-01/Accounts/AC1/Messages.json"


def clock() -> datetime:
    return NOW


def twilio(exc: BaseException, headers: dict[str, str] | None = None) -> DeliveryError:
    return map_twilio_error(exc, headers, clock, "ob-1")


def sendgrid(exc: BaseException) -> DeliveryError:
    return map_sendgrid_error(exc, clock, "ob-1")


@pytest.mark.parametrize(
    ("status", "code", "kind", "expected_code"),
    [
        (429, 20429, TransientDeliveryError, "20429"),
        (400, 20429, TransientDeliveryError, "20429"),
        (500, 20500, TransientDeliveryError, "20500"),
        (503, None, TransientDeliveryError, None),
        (401, 20003, TransientDeliveryError, "20003"),
        (400, 21211, PermanentDeliveryError, "21211"),
        (400, 21610, PermanentDeliveryError, "21610"),
        (400, 21614, PermanentDeliveryError, "21614"),
        (400, 21606, PermanentDeliveryError, "21606"),
        (404, 20404, PermanentDeliveryError, "20404"),
        # A gateway's answer, with no code of Twilio's (the SDK then gives the status as the
        # code): not read as SendGrid's address codes.
        (400, None, PermanentDeliveryError, None),
        (400, 400, PermanentDeliveryError, None),
        (403, 403, PermanentDeliveryError, None),
        (503, 503, TransientDeliveryError, None),
    ],
)
def test_twilio_refusals_map_by_status_and_twilio_code(
    status: int, code: int | None, kind: type[DeliveryError], expected_code: str | None
) -> None:
    error = twilio(TwilioRestException(status, URI, "Unable to create record", code, "POST"))
    assert type(error) is kind
    assert error.code == expected_code


def test_twilio_rfc9457_errors_map_like_the_legacy_ones() -> None:
    exc = TwilioServiceException(
        type_uri="https://www.twilio.com/docs/errors/21211",
        title="Invalid 'To' Phone Number",
        status=400,
        code=21211,
        method="POST",
        uri=URI,
    )
    error = twilio(exc)
    assert isinstance(error, PermanentDeliveryError) and error.code == "21211"


def test_a_twilio_rate_limit_carries_the_retry_after_of_the_response_headers() -> None:
    error = twilio(TwilioRestException(429, URI, "Too Many Requests", 20429), {"Retry-After": "3"})
    assert isinstance(error, TransientDeliveryError) and error.retry_after == 3.0


def test_rejected_twilio_credentials_are_transient_and_name_the_variables_to_check() -> None:
    error = twilio(TwilioRestException(401, URI, "Authenticate", 20003))
    assert isinstance(error, TransientDeliveryError)
    assert "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in str(error)


def _refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, URI, reason))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (requests.ConnectTimeout("connect timed out"), TransientDeliveryError, "connect"),
        (_refused(), TransientDeliveryError, "connect"),
        (requests.ReadTimeout("read timed out"), UnknownOutcomeError, "timeout"),
        (
            requests.ConnectionError(
                ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed"))
            ),
            UnknownOutcomeError,
            "connection-lost",
        ),
        (requests.exceptions.ChunkedEncodingError("cut short"), UnknownOutcomeError, "connection-lost"),
        (ValueError("201 with a body that is not JSON"), UnknownOutcomeError, "connection-lost"),
    ],
)
def test_twilio_transport_failures_are_transient_only_when_nothing_was_sent(
    exc: BaseException, kind: type[DeliveryError], code: str
) -> None:
    error = twilio(exc)
    assert type(error) is kind
    assert error.code == code


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, TransientDeliveryError),
        (500, TransientDeliveryError),
        (502, TransientDeliveryError),
        (503, TransientDeliveryError),
        (401, TransientDeliveryError),
        (400, PermanentDeliveryError),
        (403, PermanentDeliveryError),
        (413, PermanentDeliveryError),
    ],
)
def test_sendgrid_refusals_map_by_http_status_which_is_the_code(
    status: int, kind: type[DeliveryError]
) -> None:
    error = sendgrid(HTTPError(status, "reason", b"", {}))
    assert type(error) is kind
    assert error.code == str(status)


def test_a_sendgrid_rate_limit_waits_until_the_reset_instant() -> None:
    reset = str(int(NOW.timestamp()) + 42)
    error = sendgrid(HTTPError(429, "Too Many Requests", b"", {"X-RateLimit-Reset": reset}))
    assert isinstance(error, TransientDeliveryError) and error.retry_after == 42.0


def test_a_sendgrid_refusal_quotes_the_field_and_message_sendgrid_gave() -> None:
    body = b'{"errors": [{"field": "personalizations.0.to.0.email", "message": "Does not contain a valid address."}]}'
    error = sendgrid(HTTPError(400, "Bad Request", body, {}))
    assert "personalizations.0.to.0.email: Does not contain a valid address." in str(error)


def test_a_rejected_sendgrid_key_is_transient_and_names_the_variable_to_check() -> None:
    error = sendgrid(HTTPError(401, "Unauthorized", b"", {}))
    assert isinstance(error, TransientDeliveryError) and "check SENDGRID_API_KEY" in str(error)


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (
            urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
            TransientDeliveryError,
            "connect",
        ),
        (urllib.error.URLError(TimeoutError("timed out")), TransientDeliveryError, "connect"),
        (TimeoutError("timed out"), UnknownOutcomeError, "timeout"),
        (TimeoutError("timed out"), UnknownOutcomeError, "timeout"),
        (
            http.client.RemoteDisconnected("Remote end closed connection without response"),
            UnknownOutcomeError,
            "connection-lost",
        ),
        (ConnectionResetError(104, "Connection reset by peer"), UnknownOutcomeError, "connection-lost"),
        (http.client.IncompleteRead(b""), UnknownOutcomeError, "connection-lost"),
    ],
)
def test_sendgrid_transport_failures_are_transient_only_while_connecting_or_writing(
    exc: BaseException, kind: type[DeliveryError], code: str
) -> None:
    error = sendgrid(exc)
    assert type(error) is kind
    assert error.code == code

"""The one port delivery needs: a Channel sends one rendered message and returns a Receipt.

A channel raises only `outreach.errors` delivery errors, never an SDK's own exceptions:

    TransientDeliveryError   nothing was delivered; try again after `retry_after` seconds (or backoff)
    PermanentDeliveryError   the provider refused this message for good; `code` says why
    UnknownOutcomeError      the request may have reached the provider: do not resend blindly

Error codes are strings: Twilio's own error codes (`"21211"`), SendGrid's HTTP status
(`"400"`), a transport condition (`"timeout"`, `"connect"`, `"connection-lost"`), or
`"content"` when the SDK refuses the message itself before sending.

The text of every delivery error is scrubbed here, where provider errors are translated
(`scrubbed`): it becomes the ledger's `reason` and the info-level `contact` event, and
providers quote the number or address they refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final, Protocol, TypeVar, runtime_checkable

from outreach.errors import DeliveryError
from outreach.redact import scrub

EMAIL: Final = "email"
SMS: Final = "sms"

Clock = Callable[[], datetime]

TIMEOUT: Final = "timeout"
CONNECT: Final = "connect"
CONNECTION_LOST: Final = "connection-lost"
CONTENT: Final = "content"


E = TypeVar("E", bound=DeliveryError)


def scrubbed(error: E) -> E:
    """ERROR with its message scrubbed of phone numbers, email addresses and credentials."""
    error.args = tuple(scrub(arg) if isinstance(arg, str) else arg for arg in error.args)
    return error


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered message for one recipient, as the dispatcher hands it to a channel."""

    outbox_id: str
    channel: str
    to: str
    customer_id: str
    rule: str
    locale: str
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    sms: str | None = None
    to_name: str | None = None
    test: bool = False  # a test send (`send-test`, the studio): to an allow-listed address, no contact

    def __post_init__(self) -> None:
        # Checked at construction so a half-rendered message is a bug in the caller, never a
        # provider refusal that would suppress a customer's address.
        where = f"outbox {self.outbox_id!r}"
        if not self.outbox_id:
            raise ValueError("OutgoingMessage needs an outbox_id (the ledger id sent to the provider)")
        if not self.to:
            raise ValueError(f"{where}: no recipient address")
        if self.channel == EMAIL:
            if not self.subject:
                raise ValueError(f"{where}: an email needs a subject")
            if not (self.text or self.html):
                raise ValueError(f"{where}: an email needs a text or an HTML body")
        elif self.channel == SMS:
            if not self.sms:
                raise ValueError(f"{where}: an SMS needs a body (sms=...)")
        else:
            raise ValueError(f"{where}: channel must be 'email' or 'sms', not {self.channel!r}")


@dataclass(frozen=True)
class Receipt:
    """What a provider said when it accepted a message."""

    provider: str
    provider_id: str | None


@runtime_checkable
class Channel(Protocol):
    """Sends one message; raises Transient/Permanent delivery errors or UnknownOutcomeError.

    A message of the other kind (an email to an SMS-only channel) is a wiring bug, refused with
    ValueError before any request is made.
    """

    name: str

    def send(self, message: OutgoingMessage) -> Receipt: ...


def require_channel(message: OutgoingMessage, kind: str, channel: str) -> None:
    """Refuse a message meant for another kind of channel (a wiring bug, not a delivery error)."""
    if message.channel != kind:
        raise ValueError(
            f"outbox {message.outbox_id!r}: the {channel} channel sends {kind}, not {message.channel}"
        )


def retry_after_seconds(
    headers: Mapping[str, str] | None, now: datetime, *, reset_header: str | None = None
) -> float | None:
    """Seconds to wait before retrying, from `Retry-After` or else an epoch `reset_header`.

    `Retry-After` is delta-seconds or an HTTP-date (RFC 9110 §10.2.3); rate-limit reset headers
    such as SendGrid's `X-RateLimit-Reset` are Unix epoch seconds. `None` when neither is usable.
    """
    if not headers:
        return None
    value = _header(headers, "Retry-After")
    if value is not None:
        seconds = _parse_retry_after(value, now)
        if seconds is not None:
            return seconds
    if reset_header is not None:
        reset = _header(headers, reset_header)
        if reset is not None:
            try:
                return max(0.0, float(reset) - now.timestamp())
            except ValueError:
                return None
    return None


def _parse_retry_after(value: str, now: datetime) -> float | None:
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # SDKs hand back case-insensitive mappings (requests, email.message) or plain dicts.
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None

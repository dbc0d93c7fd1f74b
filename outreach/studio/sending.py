"""Test sends: a rule's message, rendered as a customer, sent to an allow-listed address.

The address must be in settings `[studio] test_recipients` (emails and E.164 phone numbers): a
test never reaches a customer. The message says it is a test — its subject, text part and SMS
start with `[TEST]` — goes through the configured channel (`delivery.mode`) like any message, and
is recorded in its own table (`test_sends`), never in the contacts ledger: it counts against no
cap, dedupes against nothing, and `pause` does not hold it (it goes to your own team).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from outreach.channels import Channel, OutgoingMessage, make_channels
from outreach.errors import DeliveryError, InputError
from outreach.rendering.renderer import RenderedMessage, RenderFailure
from outreach.rendering.sms import count_segments
from outreach.state.ingest import parse_email, parse_phone
from outreach.state.test_sends import record_test_send
from outreach.studio.workspace import Studio

TEST_PREFIX = "[TEST] "


@dataclass(frozen=True)
class TestSendResult:
    """What a test send did, as `send-test --json` prints it."""

    __test__ = False  # not a pytest test class, whatever its name

    id: str
    target: str
    template: str
    customer_id: str
    record_id: str | None
    channel: str
    to: str
    locale: str
    sent_at: datetime
    outcome: str  # "sent" | "failed"
    provider: str | None
    provider_id: str | None
    error: str | None
    subject: str | None
    text: str | None
    sms: str | None
    segments: int | None
    encoding: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "test": True,
            "rule": self.target,
            "template": self.template,
            "customer_id": self.customer_id,
            "record_id": self.record_id,
            "channel": self.channel,
            "to": self.to,
            "locale": self.locale,
            "sent_at": self.sent_at.isoformat().replace("+00:00", "Z"),
            "outcome": self.outcome,
            "provider": self.provider,
            "provider_id": self.provider_id,
            "error": self.error,
            "subject": self.subject,
            "text": self.text,
            "sms": self.sms,
            "segments": self.segments,
            "encoding": self.encoding,
        }


def _channel_and_address(address: str) -> tuple[str, str]:
    """(`email` or `sms`, the address normalised), or ValueError saying why it is neither."""
    text = address.strip()
    if "@" in text:
        return "email", parse_email(text).lower()
    return "sms", parse_phone(text)


def allowed_recipient(allowed: tuple[str, ...], address: str) -> tuple[str, str]:
    """The channel of ADDRESS and its normalised form, if it is one of ALLOWED; InputError otherwise."""
    try:
        channel, normalised = _channel_and_address(address)
    except ValueError as exc:
        raise InputError(f"cannot send a test to {address}: {exc}") from None
    permitted: set[str] = set()
    for entry in allowed:
        try:
            permitted.add(_channel_and_address(entry)[1])
        except ValueError:
            continue  # settings validation let it through; it can match nothing
    if normalised not in permitted:
        listed = ", ".join(allowed) if allowed else "none yet"
        raise InputError(
            f"{address} is not a test recipient: tests go only to the addresses in settings "
            f"[studio] test_recipients ({listed}); add it there to send it tests"
        )
    return channel, normalised


def mark_as_test(message: RenderedMessage, *, smart_encoding: bool = False) -> RenderedMessage:
    """MESSAGE with `[TEST]` before its subject, text part and SMS (the SMS segments counted again)."""
    if message.channel == "sms" and message.sms is not None:
        sms = TEST_PREFIX + message.sms
        counted = count_segments(sms, smart_encoding=smart_encoding)
        return replace(
            message,
            sms=sms,
            segments=counted.count,
            encoding=counted.encoding,
            ucs2_characters=counted.ucs2_characters,
        )
    return replace(
        message,
        subject=TEST_PREFIX + (message.subject or ""),
        text=TEST_PREFIX + (message.text or "") if message.text is not None else None,
    )


def send_test(
    studio: Studio,
    target_id: str,
    *,
    customer_id: str,
    to: str,
    channel: str | None = None,
    locale: str | None = None,
    at: datetime | None = None,
    record_id: str | None = None,
    channels: Mapping[str, Channel] | None = None,
) -> TestSendResult:
    """Render TARGET_ID as CUSTOMER_ID and send it, marked as a test, to the allow-listed TO.

    The channel follows the address (an email address gets the email); CHANNEL, when given,
    must agree with it. Refusals (an address not allow-listed, a template without that channel,
    a message that cannot be rendered) are InputError; what the provider said is in the result.
    """
    settings = studio.settings
    address_channel, address = allowed_recipient(settings.studio.test_recipients, to)
    if channel is not None and channel != address_channel:
        kind = "an email address" if address_channel == "email" else "a phone number"
        raise InputError(f"{to} is {kind}: it can get a test {address_channel}, not {channel}")
    when = at or studio.clock()
    target = studio.target(target_id)
    person = studio.person(customer_id, locale, when)
    wanted = locale or str(person.customer.get("locale") or "") or None
    chosen = studio.choose(target, person, wanted or settings.delivery.default_locale, when, record_id)
    try:
        rendered = studio.render(target, address_channel, person, chosen, wanted, when)
    except RenderFailure as failure:
        raise InputError(
            f"{target.name} cannot be rendered as {person.customer['id']}: {failure.problem.format()}"
        ) from None
    message = mark_as_test(rendered, smart_encoding=settings.twilio.smart_encoding)
    test_id = f"test-{uuid.uuid4().hex[:16]}"
    outgoing = OutgoingMessage(
        outbox_id=test_id,
        channel=address_channel,
        to=address,
        customer_id=str(person.customer["id"]),
        rule=target.name,
        locale=message.locale,
        subject=message.subject,
        text=message.text,
        html=message.html,
        sms=message.sms,
        test=True,
    )
    chosen_channels = channels if channels is not None else make_channels(settings)
    outcome, provider, provider_id, error = "sent", None, None, None
    try:
        receipt = chosen_channels[address_channel].send(outgoing)
        provider, provider_id = receipt.provider, receipt.provider_id
    except DeliveryError as exc:
        outcome, error = "failed", str(exc)
    sent_at = studio.clock()
    with studio.app.engine.begin() as connection:
        record_test_send(
            connection,
            id=test_id,
            sent_at=sent_at,
            rule=target.name,
            template=target.template,
            customer_id=outgoing.customer_id,
            record_id=chosen.record_id,
            channel=address_channel,
            recipient=address,
            locale=message.locale,
            outcome=outcome,
            provider=provider,
            provider_id=provider_id,
            error=error,
        )
    return TestSendResult(
        id=test_id,
        target=target.name,
        template=target.template,
        customer_id=outgoing.customer_id,
        record_id=chosen.record_id,
        channel=address_channel,
        to=address,
        locale=message.locale,
        sent_at=sent_at,
        outcome=outcome,
        provider=provider,
        provider_id=provider_id,
        error=error,
        subject=message.subject,
        text=message.text,
        sms=message.sms,
        segments=message.segments,
        encoding=message.encoding,
    )

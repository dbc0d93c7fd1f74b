"""Inbound feedback: the providers' webhooks and SMS keywords — who may call, and what each event changes.

Checking a token or a signature and reading what a provider's event means are pure functions;
the `apply_*` functions write the ledger inside the caller's transaction. Feedback only ever
narrows what outreach may do (a suppression, a withdrawn consent), except an explicit START.

Twilio signs the exact URL it called (scheme, host, path and query) plus the form fields, so
the URL is rebuilt from `server.public_url`, not from what a proxy forwarded. SendGrid signs the
timestamp and the raw body: the body is verified before it is parsed.
"""

from __future__ import annotations

import binascii
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

import structlog
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy.engine import Connection
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator, get_signature_algorithm

from outreach.channels import EMAIL, SMS, WITHDRAWS_SMS_CONSENT_CODES
from outreach.state import ledger
from outreach.state.ingest import parse_phone

log = structlog.get_logger("outreach.webhooks")

EVENTS_TOKEN_ENV = "OUTREACH_EVENTS_TOKEN"
TWILIO_TOKEN_ENV = "TWILIO_AUTH_TOKEN"
SENDGRID_KEY_ENV = "SENDGRID_WEBHOOK_PUBLIC_KEY"

TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
TWILIO_SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


@dataclass(frozen=True)
class Secrets:
    """What inbound requests are checked against; an endpoint whose secret is unset is off."""

    events_token: str | None = None
    twilio_auth_token: str | None = None
    sendgrid_public_key: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if environ is None else environ

        def read(name: str) -> str | None:
            return env.get(name, "").strip() or None

        return cls(read(EVENTS_TOKEN_ENV), read(TWILIO_TOKEN_ENV), read(SENDGRID_KEY_ENV))


# -- Twilio --------------------------------------------------------------------------------------


def public_url(base: str, path: str, query: str) -> str:
    """The URL a provider called: the configured public base, the request's path and raw query."""
    return base.rstrip("/") + path + (f"?{query}" if query else "")


def form_params(body: bytes) -> ImmutableMultiDict[str, str] | None:
    """An `application/x-www-form-urlencoded` body as a multi-dict (blank values kept); None if unreadable."""
    try:
        return ImmutableMultiDict(
            parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        )
    except (UnicodeDecodeError, ValueError):
        return None


def twilio_signature_ok(
    auth_token: str,
    url: str,
    params: Mapping[str, str],
    signature: str | None,
    settings_header: str | None = None,
) -> bool:
    """Twilio's X-Twilio-Signature check (HMAC of URL + sorted form fields), with the SDK's validator."""
    if not signature:
        return False
    return bool(
        RequestValidator(auth_token).validate(
            url, params, signature, algorithm=get_signature_algorithm(settings_header)
        )
    )


# Twilio error codes that mean the number must not be texted again: unsubscribed (21610),
# invalid (21211), not a mobile (21614), unknown handset (30005), landline/unreachable (30006).
TWILIO_SUPPRESSING_CODES = frozenset({"21211", "21610", "21614", "30005", "30006"})

# How far along a message is: a late callback never moves a contact back (`sent` after `delivered`).
TWILIO_STAGES = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 2,
    "sending": 3,
    "sent": 4,
    "delivered": 5,
    "undelivered": 5,
    "failed": 5,
    "canceled": 5,
    "partially_delivered": 5,
    "read": 6,
}
SENDGRID_STAGES = {
    "processed": 1,
    "deferred": 2,
    "delivered": 3,
    "bounce": 3,
    "dropped": 3,
    "open": 4,
    "click": 5,
    "spamreport": 6,
    "unsubscribe": 6,
    "group_unsubscribe": 6,
    "group_resubscribe": 6,
}


def later_statuses(stages: Mapping[str, int], status: str) -> list[str]:
    """The statuses STATUS must not overwrite: those further along (all known ones, if STATUS is unknown)."""
    stage = stages.get(status, 0)
    return sorted(name for name, other in stages.items() if other > stage)


@dataclass(frozen=True)
class Feedback:
    """What one provider event means for a contact and its customer."""

    status: str
    suppress: bool = False
    withdraw_sms_consent: bool = False
    code: str | None = None
    reason: str = ""


def twilio_status_feedback(status: str, error_code: str | None) -> Feedback:
    """A status callback's MessageStatus and ErrorCode → what to record."""
    status = status.strip().lower()
    code = (error_code or "").strip() or None
    if status in ("undelivered", "failed") and code in TWILIO_SUPPRESSING_CODES:
        return Feedback(
            status,
            suppress=True,
            withdraw_sms_consent=code in WITHDRAWS_SMS_CONSENT_CODES,
            code=code,
            reason=f"twilio: message {status} with error {code}",
        )
    return Feedback(status, code=code)


def apply_feedback(
    connection: Connection,
    contact: ledger.Delivered,
    channel: str,
    feedback: Feedback,
    stages: Mapping[str, int],
    now: datetime,
) -> bool:
    """Record FEEDBACK on CONTACT (suppressing CHANNEL if it says so); False if a later status was kept."""
    written = ledger.set_provider_status(
        connection, contact.id, feedback.status, now, unless=later_statuses(stages, feedback.status)
    )
    if feedback.suppress:
        ledger.add_suppression(connection, contact.customer_id, channel, feedback.reason, feedback.code, now)
    if feedback.withdraw_sms_consent:
        ledger.withdraw_sms_consent(connection, contact.customer_id)
    return written


def apply_twilio_status(
    connection: Connection, outbox_id: str | None, message_sid: str | None, feedback: Feedback, now: datetime
) -> ledger.Delivered | None:
    """A status callback for the contact with OUTBOX_ID (or MESSAGE_SID); None if no contact has either."""
    contact = ledger.contact_for_event(connection, outbox_id, message_sid)
    if contact is not None:
        apply_feedback(connection, contact, SMS, feedback, TWILIO_STAGES, now)
    return contact


OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})

Keyword = Literal["stop", "start"]


def inbound_keyword(body: str, opt_out_type: str | None = None) -> Keyword | None:
    """`stop`, `start` or None for an incoming SMS, read the way Twilio does (one word, any case).

    With Advanced Opt-Out on, Twilio says what it made of the message in OptOutType.
    """
    said = (opt_out_type or "").strip().upper()
    if said in ("STOP", "START"):
        return "stop" if said == "STOP" else "start"
    word = body.strip().rstrip(".!").strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return "stop"
    if word in OPT_IN_KEYWORDS:
        return "start"
    return None


def apply_keyword(connection: Connection, phone: str, keyword: Keyword, now: datetime) -> list[str]:
    """STOP: every customer with PHONE loses SMS consent and is suppressed; START: both undone. Their ids."""
    try:
        number = parse_phone(phone)
    except ValueError:
        return []
    customer_ids = ledger.customers_with_phone(connection, number)
    for customer_id in customer_ids:
        if keyword == "stop":
            ledger.withdraw_sms_consent(connection, customer_id)
            ledger.add_suppression(connection, customer_id, SMS, "the customer replied STOP", "STOP", now)
        else:
            ledger.grant_sms_consent(connection, customer_id)
            ledger.remove_suppression(connection, customer_id, SMS)
    return customer_ids


# -- SendGrid ------------------------------------------------------------------------------------


def sendgrid_verifier(public_key: str) -> EventWebhook | None:
    """The SDK's verifier for the base64 public key of Mail Settings; None if the key cannot be read."""
    try:
        return EventWebhook(public_key)
    except (ValueError, TypeError):
        return None


def sendgrid_signature_ok(
    verifier: EventWebhook, raw_body: bytes, signature: str | None, timestamp: str | None
) -> bool:
    """The ECDSA signature over timestamp + raw body (verified before the body is parsed)."""
    if not signature or not timestamp:
        return False
    try:
        return bool(verifier.verify_signature(raw_body.decode("utf-8"), signature, timestamp))
    except (UnicodeDecodeError, binascii.Error, ValueError):
        return False


SENDGRID_SUPPRESSING_EVENTS = frozenset(
    {"bounce", "dropped", "spamreport", "unsubscribe", "group_unsubscribe"}
)


def sendgrid_feedback(event: Mapping[str, Any]) -> Feedback | None:
    """One Event Webhook event → what to record; None for an event outreach did not send."""
    name = event.get("event")
    if not isinstance(name, str) or not name or not isinstance(event.get("outbox_id"), str):
        return None
    # A "blocked" bounce is the receiving server refusing for now (reputation, rate): not the address.
    if name in SENDGRID_SUPPRESSING_EVENTS and not (name == "bounce" and event.get("type") == "blocked"):
        return Feedback(name, suppress=True, code=name, reason=f"sendgrid: {name}")
    return Feedback(name)


@dataclass(frozen=True)
class Applied:
    """One event as handled: its kind, the contact it was about (None if unknown to the ledger)."""

    kind: str
    outbox_id: str | None
    contact: ledger.Delivered | None


def apply_sendgrid_events(connection: Connection, events: Iterable[Any], now: datetime) -> list[Applied]:
    """Apply a batch in the order the events happened (SendGrid does not send them in order)."""
    usable = sorted((e for e in events if isinstance(e, dict)), key=_happened_at)
    handled: list[Applied] = []
    for event in usable:
        feedback = sendgrid_feedback(event)
        name = event.get("event")
        kind = name if isinstance(name, str) else "unknown"
        if feedback is None:
            handled.append(Applied(kind, None, None))
            continue
        outbox_id = str(event["outbox_id"])
        contact = ledger.contact_for_event(connection, outbox_id)
        if contact is not None:
            apply_feedback(connection, contact, EMAIL, feedback, SENDGRID_STAGES, now)
        handled.append(Applied(kind, outbox_id, contact))
    return handled


def _happened_at(event: Mapping[str, Any]) -> float:
    timestamp = event.get("timestamp")
    return float(timestamp) if isinstance(timestamp, (int, float)) else 0.0


def event_kind(stages: Mapping[str, int], kind: str) -> str:
    """KIND as a metrics label: a known one, or `other` (labels must stay few)."""
    return kind if kind in stages else "other"

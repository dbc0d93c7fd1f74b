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
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qsl

import structlog
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy.engine import Connection
from starlette.datastructures import ImmutableMultiDict
from twilio.request_validator import RequestValidator, get_signature_algorithm

from outreach.channels import EMAIL, SMS
from outreach.channels.codes import SUPPRESSING, SUPPRESSING_CODES, WITHDRAWS_SMS_CONSENT_CODES
from outreach.state import ledger, records
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
    fail: bool = False  # the provider gave up on the message for a reason about us, not the address


def twilio_status_feedback(status: str, error_code: str | None) -> Feedback:
    """A status callback's MessageStatus and ErrorCode → what to record."""
    status = status.strip().lower()
    code = (error_code or "").strip() or None
    if status in ("undelivered", "failed") and code in SUPPRESSING_CODES:
        return Feedback(
            status,
            suppress=True,
            withdraw_sms_consent=code in WITHDRAWS_SMS_CONSENT_CODES,
            code=code,
            reason=f"twilio: message {status} with error {code} ({SUPPRESSING[code].meaning})",
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
        records.set_sms_consent(connection, contact.customer_id, False)
    if feedback.fail:
        ledger.fail_delivered(connection, contact.id, feedback.reason, now)
    return written


@dataclass(frozen=True)
class StatusApplied:
    """A status callback as handled: the contact (None if unknown), the customers whose consent or
    suppressions changed, and whether it was a replay."""

    contact: ledger.Delivered | None
    customers: tuple[str, ...] = ()
    replay: bool = False


def apply_twilio_status(
    connection: Connection, outbox_id: str | None, message_sid: str | None, feedback: Feedback, now: datetime
) -> StatusApplied:
    """A status callback for the contact with OUTBOX_ID (or MESSAGE_SID). A callback seen before
    (the same MessageSid and status) changes nothing."""
    if message_sid and not ledger.first_sight(
        connection, "twilio-status", f"{message_sid}:{feedback.status}", now
    ):
        return StatusApplied(None, replay=True)
    contact = ledger.contact_for_event(connection, outbox_id, message_sid)
    if contact is None:
        return StatusApplied(None)
    apply_feedback(connection, contact, SMS, feedback, TWILIO_STAGES, now)
    return StatusApplied(contact, (contact.customer_id,) if feedback.suppress else ())


# -- SMS keywords ---------------------------------------------------------------------------------

# Twilio's default opt-out and opt-in words (they also act on them at the carrier), then Arabic
# and French. Compared after `normalise_keyword`, so diacritics, hamza forms and case do not matter.
OPT_OUT_KEYWORDS = (
    "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE",
    "إيقاف", "ايقاف", "أوقف", "اوقف", "توقف", "قف", "إلغاء", "الغاء", "إلغاء الاشتراك", "الغاء الاشتراك",
    "ARRET", "ARRÊT", "STOP SMS", "DESABONNER", "DÉSABONNER", "DESINSCRIRE", "DÉSINSCRIRE",
)  # fmt: skip
OPT_IN_KEYWORDS = (
    "START", "YES", "UNSTOP",
    "ابدأ", "ابدا", "اشتراك", "تشغيل",
    "DEMARRER", "DÉMARRER", "REPRENDRE",
)  # fmt: skip

Keyword = Literal["stop", "start"]

# Arabic marks that do not change a word: harakat, shadda, sukun, superscript alef, tatweel.
_ARABIC_MARKS = dict.fromkeys([*range(0x064B, 0x0660), 0x0670, 0x0640, *range(0x06D6, 0x06EE)])
_ALEF_FORMS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه"})


def normalise_keyword(text: str) -> str:
    """A reply as keywords are compared: NFKC, Arabic marks and alef/hamza forms folded, French
    accents dropped, case folded, surrounding punctuation and spaces trimmed, inner spaces single."""
    folded = unicodedata.normalize("NFKC", text).translate(_ARABIC_MARKS).translate(_ALEF_FORMS)
    # Latin accents (ARRÊT → ARRET); Arabic letters have no combining marks left to drop here.
    decomposed = unicodedata.normalize("NFD", folded)
    plain = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    words = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in plain).split()
    return " ".join(words).casefold()


@dataclass(frozen=True)
class Keywords:
    """The words that opt a number out of SMS or back in, compared normalised."""

    opt_out: frozenset[str]
    opt_in: frozenset[str]

    @classmethod
    def of(cls, extra_out: Iterable[str] = (), extra_in: Iterable[str] = ()) -> Keywords:
        """The built-in words plus EXTRA_OUT / EXTRA_IN (settings `feedback.opt_out_keywords`, …)."""
        return cls(
            frozenset(normalise_keyword(w) for w in (*OPT_OUT_KEYWORDS, *extra_out)),
            frozenset(normalise_keyword(w) for w in (*OPT_IN_KEYWORDS, *extra_in)),
        )

    def read(self, body: str, opt_out_type: str | None = None) -> Keyword | None:
        """`stop`, `start` or None for an incoming SMS: the whole message is one keyword.

        With Advanced Opt-Out on, Twilio says what it made of the message in OptOutType.
        """
        said = (opt_out_type or "").strip().upper()
        if said in ("STOP", "START"):
            return "stop" if said == "STOP" else "start"
        word = normalise_keyword(body)
        if word in self.opt_out:
            return "stop"
        if word in self.opt_in:
            return "start"
        return None


DEFAULT_KEYWORDS = Keywords.of()


def inbound_keyword(
    body: str, opt_out_type: str | None = None, keywords: Keywords = DEFAULT_KEYWORDS
) -> Keyword | None:
    """`stop`, `start` or None for an incoming SMS (see `Keywords.read`)."""
    return keywords.read(body, opt_out_type)


def apply_keyword(
    connection: Connection, phone: str, keyword: Keyword, now: datetime, message_sid: str | None = None
) -> list[str]:
    """STOP: every customer with PHONE loses SMS consent and is suppressed; START: both undone.
    The ids of the customers changed; none for a message seen before (a replayed webhook)."""
    if message_sid and not ledger.first_sight(connection, "twilio-inbound", message_sid, now):
        return []
    try:
        number = parse_phone(phone)
    except ValueError:
        return []
    customer_ids = records.customers_with_phone(connection, number)
    for customer_id in customer_ids:
        if keyword == "stop":
            records.set_sms_consent(connection, customer_id, False)
            ledger.add_suppression(connection, customer_id, SMS, "the customer replied STOP", "STOP", now)
        else:
            records.set_sms_consent(connection, customer_id, True)
            ledger.remove_suppression(connection, customer_id, SMS)
    if keyword != "stop":
        ledger.reachable_again(connection, customer_ids)  # consent given, suppressed or not
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


def sendgrid_timestamp_fresh(timestamp: str | None, now: datetime, max_age: timedelta) -> bool:
    """Whether a signed request's timestamp (epoch seconds) is within MAX_AGE of NOW (and not
    from the future by more than a minute of clock skew). An old signed request is a replay."""
    try:
        signed_at = datetime.fromtimestamp(int(str(timestamp).strip()), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return False
    return now - max_age <= signed_at <= now + timedelta(minutes=1)


# Event names that speak about the address, not about one message. A "blocked" bounce is the
# receiving server refusing for now (reputation, rate): not the address.
SENDGRID_SUPPRESSING_EVENTS = frozenset({"bounce", "spamreport", "unsubscribe", "group_unsubscribe"})

# `dropped` events whose reason is about the address (SendGrid's drop reasons); any other drop
# (spam content, a quota, an SMTPAPI header) is about the message: a recorded failure only.
SENDGRID_ADDRESS_DROPS = ("bounced address", "unsubscribed address", "spam reporting address", "invalid")


def sendgrid_feedback(event: Mapping[str, Any]) -> Feedback | None:
    """One Event Webhook event → what to record; None for an event without a name."""
    name = event.get("event")
    if not isinstance(name, str) or not name:
        return None
    if name == "dropped":
        reason = str(event.get("reason") or "")
        if reason.strip().lower().startswith(SENDGRID_ADDRESS_DROPS):
            return Feedback(name, suppress=True, code=name, reason=f"sendgrid: dropped ({reason})")
        return Feedback(name, fail=True, reason=f"dropped by SendGrid: {reason or 'no reason given'}")
    if name in SENDGRID_SUPPRESSING_EVENTS and not (name == "bounce" and event.get("type") == "blocked"):
        return Feedback(name, suppress=True, code=name, reason=f"sendgrid: {name}")
    return Feedback(name)


def sendgrid_outbox_id(event: Mapping[str, Any]) -> str | None:
    """The outbox id outreach sent in custom_args: SendGrid posts it at the top level of the event;
    older integrations nest it in `custom_args` or `unique_args`."""
    for where in (event, event.get("custom_args"), event.get("unique_args")):
        if isinstance(where, Mapping) and isinstance(where.get("outbox_id"), str) and where["outbox_id"]:
            return str(where["outbox_id"])
    return None


def sendgrid_message_id(event: Mapping[str, Any]) -> str | None:
    """The X-Message-Id the send returned: `sg_message_id` is that id, a dot and a filter suffix."""
    value = event.get("sg_message_id")
    if not isinstance(value, str) or not value:
        return None
    return value.split(".", 1)[0]


@dataclass(frozen=True)
class Applied:
    """One event as handled: its kind, the contact it was about (None if unknown to the ledger),
    the customers whose suppressions changed, whether it was a replay."""

    kind: str
    outbox_id: str | None
    contact: ledger.Delivered | None
    customers: tuple[str, ...] = ()
    replay: bool = False


def apply_sendgrid_events(connection: Connection, events: Iterable[Any], now: datetime) -> list[Applied]:
    """Apply a batch in the order the events happened (SendGrid does not send them in order).

    An event finds its contact by the outbox id, else by the message id; an address event
    (bounce, unsubscribe, …) about no known contact still suppresses email for the customers
    with that address. An event whose sg_event_id was seen before changes nothing.
    """
    usable = sorted((e for e in events if isinstance(e, dict)), key=_happened_at)
    handled: list[Applied] = []
    for event in usable:
        feedback = sendgrid_feedback(event)
        kind = feedback.status if feedback is not None else "unknown"
        event_id = event.get("sg_event_id")
        if (
            isinstance(event_id, str)
            and event_id
            and not ledger.first_sight(connection, "sendgrid", event_id, now)
        ):
            handled.append(Applied(kind, None, None, replay=True))
            continue
        if feedback is None:
            handled.append(Applied(kind, None, None))
            continue
        outbox_id = sendgrid_outbox_id(event)
        contact = ledger.contact_for_event(connection, outbox_id, sendgrid_message_id(event))
        if contact is not None:
            apply_feedback(connection, contact, EMAIL, feedback, SENDGRID_STAGES, now)
            changed = (contact.customer_id,) if feedback.suppress else ()
            handled.append(Applied(kind, contact.id, contact, changed))
            continue
        customers: tuple[str, ...] = ()
        address = event.get("email")
        if feedback.suppress and isinstance(address, str) and address:
            customers = tuple(records.customers_with_email(connection, address))
            for customer_id in customers:
                ledger.add_suppression(connection, customer_id, EMAIL, feedback.reason, feedback.code, now)
        handled.append(Applied(kind, outbox_id, None, customers))
    return handled


def _happened_at(event: Mapping[str, Any]) -> float:
    timestamp = event.get("timestamp")
    return float(timestamp) if isinstance(timestamp, (int, float)) else 0.0


def event_kind(stages: Mapping[str, int], kind: str) -> str:
    """KIND as a metrics label: a known one, or `other` (labels must stay few)."""
    return kind if kind in stages else "other"

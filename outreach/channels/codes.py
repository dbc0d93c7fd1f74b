"""What providers' error codes mean for a customer's address: one table for sends and for callbacks.

Codes are strings: Twilio's own error codes (`"21211"`), SendGrid's HTTP status (`"400"`).
A refusal about the recipient's address rather than about us suppresses the channel for the
customer so that no rule tries it again; an unsubscribe at the carrier also withdraws consent,
so a later opt-in has to come from the customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class CodeMeaning:
    provider: str
    meaning: str
    withdraws_sms_consent: bool = False


# Twilio: https://www.twilio.com/docs/api/errors — 21xxx come back from the Messages API when
# sending, 300xx in delivery status callbacks. SendGrid's mail/send has no codes of its own: 400
# is a malformed or invalid address, 403 a recipient the account may not send to.
SUPPRESSING: Final[dict[str, CodeMeaning]] = {
    "21211": CodeMeaning("twilio", "invalid 'To' phone number"),
    "21610": CodeMeaning("twilio", "the recipient replied STOP (unsubscribed)", withdraws_sms_consent=True),
    "21614": CodeMeaning("twilio", "not a mobile number"),
    "30005": CodeMeaning("twilio", "unknown destination handset"),
    "30006": CodeMeaning("twilio", "landline or unreachable carrier"),
    "400": CodeMeaning("sendgrid", "invalid email address"),
    "403": CodeMeaning("sendgrid", "recipient the account may not send to"),
}

SUPPRESSING_CODES: Final = frozenset(SUPPRESSING)
WITHDRAWS_SMS_CONSENT_CODES: Final = frozenset(
    code for code, m in SUPPRESSING.items() if m.withdraws_sms_consent
)

# Provider statuses (a contact's provider_status) that mean the message reached the recipient:
# Twilio's `delivered` and `read` (WhatsApp/RCS read receipts); SendGrid's `delivered` and the
# events only a delivered email can produce (opened, clicked, reported, unsubscribed from).
DELIVERED_STATUSES: Final = frozenset(
    {
        "delivered",
        "read",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    }
)

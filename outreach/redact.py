"""Keep customers' contact details and provider credentials out of logs and the ledger.

Providers quote what they refuse ("The 'To' number +15005550001 is not a valid phone
number."), drivers quote the row they choked on, connection errors quote request URLs with
the Twilio account SID in the path. `scrub` replaces, in any such text:

- email addresses → `<email>`;
- phone numbers: `+` and 7 to 15 digits (spaces, dots, dashes and brackets allowed between
  them), or a bare run of 10 to 15 digits → `<phone>`;
- Twilio account SIDs (`AC` + 32 hex digits) and SendGrid API keys (`SG.….…`) → `<credential>`.

Ids, times (`2026-01-15T12:00:00+00:00`), ports and HTTP codes are left alone.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+"
)
_PHONE = re.compile(
    r"(?<![\w+])\+\d(?:[ .()-]{0,2}\d){6,14}(?!\d)"  # international: +44 7911 123456, +1 (415) 555-0100
    r"|(?<![\w.:/+-])\d{10,15}(?![\w.:/-])"  # a bare run of digits: 447911123456
)
_CREDENTIAL = re.compile(r"\bAC[0-9a-fA-F]{32}\b|\bSG\.[\w-]{8,}\.[\w-]{8,}")


def scrub(text: str) -> str:
    """TEXT without email addresses, phone numbers or provider credentials."""
    if not text:
        return text
    text = _EMAIL.sub("<email>", text)
    text = _CREDENTIAL.sub("<credential>", text)
    return _PHONE.sub("<phone>", text)

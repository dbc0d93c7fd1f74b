"""What may be shown of a text: no email, no phone number, no credential, no database password."""

from __future__ import annotations

import pytest

from outreach.database_url import redact_url
from outreach.redact import scrub


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "The 'To' number +15005550001 is not a valid phone number.",
            "The 'To' number <phone> is not a valid phone number.",
        ),
        ("call +44 7911 123456 or +1 (415) 555-0100", "call <phone> or <phone>"),
        ("unformatted 447911123456 here", "unformatted <phone> here"),
        ("to a.b+c@ex-ample.co.uk now", "to <email> now"),
        (
            "/2010-04-01/Accounts/AC" + "fa4e" * 8 + "/Messages.json",
            "/2010-04-01/Accounts/<credential>/Messages.json",
        ),
        ("key SG.abcdefghij.klmnopqrstuv refused", "key <credential> refused"),
        # Left alone: times, ids, codes, ports, amounts.
        ("retrying at 2026-01-15T12:00:00+00:00", "retrying at 2026-01-15T12:00:00+00:00"),
        ("HTTP 400, Twilio error 21211 (port 443)", "HTTP 400, Twilio error 21211 (port 443)"),
        (
            "customer c-00001, outbox 5fc0d012f1484720a277fc25b0e4ab8f",
            "customer c-00001, outbox 5fc0d012f1484720a277fc25b0e4ab8f",
        ),
        ("total 1234.50 EUR, +05:30", "total 1234.50 EUR, +05:30"),
    ],
)
def test_scrub_hides_contact_details_and_credentials_only(text: str, shown: str) -> None:
    assert scrub(text) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bob:hunter2@db/outreach", "postgresql://bob:***@db/outreach"),
        ("postgresql://bob:hunter2@db:notaport/x", "postgresql://bob:***@db:notaport/x"),
        ("postgresql://bob:p@ss:w0rd@db/x", "postgresql://bob:***@db/x"),
        (
            "postgresql://db/x?user=bob&password=hunter2&sslmode=require",
            "postgresql://db/x?user=bob&password=***&sslmode=require",
        ),
        ("sqlite:///var/outreach.db", "sqlite:///var/outreach.db"),
    ],
)
def test_a_database_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown

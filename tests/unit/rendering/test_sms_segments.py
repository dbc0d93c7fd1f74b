"""SMS segments are counted as carriers bill them, and every SMS ends with an opt-out line."""

from __future__ import annotations

import pytest

from outreach.rendering.sms import (
    GSM7,
    UCS2,
    count_segments,
    encoding_of,
    has_opt_out_line,
    opt_out_line,
    with_opt_out,
)

ARABIC = "ب"
EMOJI = "🙂"  # outside the Basic Multilingual Plane: two UTF-16 code units

SEGMENT_CASES = [
    # (text, encoding, segments, units)
    ("", GSM7, 1, 0),
    ("a" * 160, GSM7, 1, 160),
    ("a" * 161, GSM7, 2, 161),
    ("a" * 306, GSM7, 2, 306),
    ("a" * 307, GSM7, 3, 307),
    ("a" * 459, GSM7, 3, 459),
    ("a" * 460, GSM7, 4, 460),
    ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà\n\r", GSM7, 1, 44),
    # Extension characters cost two septets each.
    ("€" * 80, GSM7, 1, 160),
    ("€" * 81, GSM7, 2, 162),
    ("a" * 159 + "^", GSM7, 2, 161),
    ("{}[]~|\\^€\f", GSM7, 1, 20),
    # An escape sequence is never split across segments: 152 + 2 does not fit 153.
    ("a" * 152 + "€" + "a" * 152, GSM7, 3, 306),
    ("a" * 151 + "€" + "a" * 153, GSM7, 2, 306),
    # Any character outside GSM-7 makes the whole message UCS-2.
    (ARABIC * 70, UCS2, 1, 70),
    (ARABIC * 71, UCS2, 2, 71),
    (ARABIC * 134, UCS2, 2, 134),
    (ARABIC * 135, UCS2, 3, 135),
    ("a" * 69 + ARABIC, UCS2, 1, 70),
    ("a" * 100 + ARABIC, UCS2, 2, 101),
    ("It’s here", UCS2, 1, 9),  # a curly apostrophe
    ("ç", UCS2, 1, 1),  # lower-case c-cedilla has no GSM-7 code
    # A surrogate pair counts two units and is never split.
    (EMOJI * 35, UCS2, 1, 70),
    (EMOJI * 36, UCS2, 2, 72),
    ("a" * 66 + EMOJI + "a" * 66, UCS2, 3, 134),
]


@pytest.mark.parametrize(("text", "encoding", "segments", "units"), SEGMENT_CASES)
def test_segments_follow_the_gsm7_and_ucs2_rules(text: str, encoding: str, segments: int, units: int) -> None:
    result = count_segments(text)
    assert (result.encoding, result.count, result.units) == (encoding, segments, units)


def test_an_arabic_letter_makes_an_english_message_ucs2() -> None:
    assert encoding_of("Your order is late") == GSM7
    assert encoding_of("Your order is late, " + ARABIC) == UCS2


@pytest.mark.parametrize(
    ("locale", "line"),
    [
        ("en", "Reply STOP to opt out."),
        ("en-GB", "Reply STOP to opt out."),
        ("ar", "لإيقاف الرسائل أرسل إيقاف أو STOP"),
        ("ar-EG", "لإيقاف الرسائل أرسل إيقاف أو STOP"),
        ("ar_SA", "لإيقاف الرسائل أرسل إيقاف أو STOP"),
        ("fr-CA", "Répondez STOP pour vous désinscrire."),
    ],
)
def test_the_opt_out_line_is_in_the_customers_language(locale: str, line: str) -> None:
    assert opt_out_line(locale) == line


def test_a_language_without_an_opt_out_line_gets_the_default_locales() -> None:
    assert not has_opt_out_line("sw")
    assert opt_out_line("sw", default_locale="ar") == opt_out_line("ar")


def test_the_opt_out_line_goes_on_its_own_line_after_the_trimmed_body() -> None:
    assert with_opt_out("  Your order is late.\n\n", "en") == "Your order is late.\nReply STOP to opt out."

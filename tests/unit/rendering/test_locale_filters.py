"""Money, numbers, dates and times are written as the customer reads them, in their time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from outreach.rendering.filters import (
    Formatting,
    format_date,
    format_datetime,
    format_money,
    format_number,
    format_time,
    format_timespan,
    isolate_ltr,
)

ARABIC_INDIC = set("٠١٢٣٤٥٦٧٨٩")
LATE_EVENING_UTC = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)


def fmt(locale: str, zone: str = "UTC") -> Formatting:
    return Formatting.of(locale, zone)


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        (1234.5, "USD", "en", "$1,234.50"),
        (1234.5, "GBP", "en-GB", "£1,234.50"),
        (1234.5, "EUR", "de", "1.234,50\xa0€"),
        (1234.6, "JPY", "en", "¥1,235"),  # the currency's own decimals
        (0.1 + 0.2, "USD", "en", "$0.30"),
        (1234.5, "EGP", "ar", "\u200f١٬٢٣٤٫٥٠\xa0ج.م.\u200f"),
        (1234.5, "EGP", "ar-EG", "\u200f١٬٢٣٤٫٥٠\xa0ج.م.\u200f"),
        (1234.5, "MAD", "ar-MA", "\u200f1.234,50\xa0د.م.\u200f"),  # the Maghreb writes Latin digits
        ("19.99", "usd", "en", "$19.99"),
    ],
)
def test_money_is_written_with_the_currency_and_the_locales_digits(
    amount: object, currency: str, locale: str, expected: str
) -> None:
    assert format_money(amount, currency, fmt(locale)) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        (None, "USD", "the value is empty"),
        ("lots", "USD", "is not a number"),
        (True, "USD", "is not a number"),
        (10, None, "the currency is empty"),
        (10, "", "the currency is empty"),
        (10, "DOLLARS", "is not an ISO 4217 currency code"),
    ],
)
def test_money_refuses_what_it_cannot_write_honestly(amount: object, currency: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_money(amount, currency, fmt("en"))


def test_a_date_is_the_calendar_day_in_the_customers_time_zone() -> None:
    assert format_date(LATE_EVENING_UTC, fmt("en", "Europe/London"), "long") == "November 24, 2026"
    assert format_date(LATE_EVENING_UTC, fmt("en", "Africa/Cairo"), "long") == "November 25, 2026"


def test_an_arabic_date_has_an_arabic_month_and_arabic_indic_digits() -> None:
    assert format_date(LATE_EVENING_UTC, fmt("ar", "Africa/Cairo"), "long") == "٢٥ نوفمبر ٢٠٢٦"


def test_a_time_is_the_wall_clock_time_in_the_customers_time_zone() -> None:
    morning = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
    assert format_time(morning, fmt("en-GB", "Africa/Cairo")) == "09:30"
    assert format_time(morning, fmt("ar", "Africa/Cairo")) == "٩:٣٠ ص"


def test_date_and_time_together_use_the_customers_zone_and_digits() -> None:
    text = format_datetime(LATE_EVENING_UTC, fmt("ar-EG", "Asia/Riyadh"), "long")
    assert "٢٥" in text and "نوفمبر" in text and not any(ch.isascii() and ch.isdigit() for ch in text)


def test_a_date_accepts_iso_text_and_plain_dates_from_json_attributes() -> None:
    assert format_date("2026-12-01", fmt("en"), "long") == "December 1, 2026"
    assert format_date("2026-12-01T23:30:00Z", fmt("en", "Asia/Tokyo"), "long") == "December 2, 2026"
    assert format_date(date(2026, 12, 1), fmt("en-GB"), "medium") == "1 Dec 2026"


def test_a_naive_time_is_taken_as_utc_as_it_is_stored() -> None:
    assert format_date(datetime(2026, 11, 24, 23, 30), fmt("en", "Asia/Tokyo"), "long") == "November 25, 2026"


@pytest.mark.parametrize("value", [None, "soon", 42])
def test_a_date_refuses_values_that_are_not_dates(value: object) -> None:
    with pytest.raises(ValueError, match="date"):
        format_date(value, fmt("en"))


def test_numbers_use_the_locales_separators_and_digits() -> None:
    assert format_number(1249.5, fmt("en")) == "1,249.5"
    assert format_number(1249.5, fmt("en"), 2) == "1,249.50"
    assert format_number(1249.5, fmt("ar")) == "١٬٢٤٩٫٥"
    assert format_number(3, fmt("ar")) == "٣"


def test_a_timespan_is_said_in_words_including_the_arabic_dual() -> None:
    assert format_timespan(timedelta(days=2, hours=3), fmt("en")) == "2 days"
    assert format_timespan(timedelta(days=2), fmt("ar")) == "يومان"
    assert format_timespan(timedelta(days=3), fmt("ar")) == "٣ أيام"


def test_ltr_isolates_identifiers_in_right_to_left_text_only() -> None:
    assert isolate_ltr("+44 20 7946 0000", fmt("ar")) == "\u2066+44 20 7946 0000\u2069"
    assert isolate_ltr("+44 20 7946 0000", fmt("en")) == "+44 20 7946 0000"


def test_arabic_reads_right_to_left_and_english_left_to_right() -> None:
    assert fmt("ar-EG").right_to_left and not fmt("en").right_to_left


@pytest.mark.parametrize(("locale", "zone"), [("xx-YY-ZZ", "UTC"), ("en", "Mars/Olympus_Mons")])
def test_an_unknown_locale_or_time_zone_is_refused_with_an_example(locale: str, zone: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\."):
        Formatting.of(locale, zone)


def test_every_digit_of_arabic_output_is_arabic_indic() -> None:
    text = format_money(1234567.89, "SAR", fmt("ar"))
    digits = [ch for ch in text if ch.isdigit()]
    assert digits and set(digits) <= ARABIC_INDIC

"""Locale-aware formatting of money, numbers, dates and times, as templates' filters use it.

What Arabic looks like: numbers, amounts, dates and times use the locale's digits — Arabic-Indic
(٠١٢٣٤٥٦٧٨٩) with the Arabic decimal and group separators (٫ ٬) for `ar` and for regions whose
CLDR default is Arabic-Indic (`ar-EG`, `ar-SA`, …), Latin digits where CLDR says the region uses
them (`ar-MA`, `ar-TN`, `ar-DZ`). CLDR's right-to-left marks (U+200F) are kept: they keep day,
month and year, and amount and currency, in reading order inside right-to-left text.
Identifiers (order numbers, phone numbers, URLs) are printed as stored; `ltr` isolates them so
right-to-left text cannot reorder their parts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import babel.dates
import babel.numbers
from babel import Locale

from outreach import locales
from outreach.clock import parse_instant

DATE_STYLES = ("short", "medium", "long", "full")

# Babel formats with Latin digits whatever the numbering system; these are the digits to put back.
_DIGITS = {
    "arab": "٠١٢٣٤٥٦٧٨٩",
    "arabext": "۰۱۲۳۴۵۶۷۸۹",
}
_LRI, _PDI = "\u2066", "\u2069"


def numbering_system(locale: Locale) -> str:
    """The digits a locale writes with: CLDR's default, except Arabic-Indic for bare `ar`.

    CLDR made Latin digits the default of the bare `ar` locale, but the Arabic-speaking
    customers it stands for (Egypt, the Gulf, the Levant) read Arabic-Indic digits; regions
    that use Latin ones (the Maghreb) say so in CLDR and keep them.
    """
    if locale.language == "ar" and locale.territory is None:
        return "arab"
    return locale.default_numbering_system or "latn"


@dataclass(frozen=True)
class Formatting:
    """How one customer reads numbers and times: a locale, its digits and a time zone."""

    locale: Locale
    zone: tzinfo
    numbering: str

    @classmethod
    def of(cls, locale: str, time_zone: str) -> Formatting:
        """The formatting for LOCALE and the IANA TIME_ZONE; ValueError says which is wrong."""
        return _formatting(locale, time_zone)

    @classmethod
    def _build(cls, locale: str, time_zone: str) -> Formatting:
        parsed = locales.babel_locale(locale)
        try:
            zone: tzinfo = ZoneInfo(time_zone) if time_zone not in ("UTC", "Z") else UTC
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{time_zone!r} is not an IANA time zone (e.g. Africa/Cairo)") from exc
        return cls(parsed, zone, numbering_system(parsed))

    @property
    def right_to_left(self) -> bool:
        return self.locale.text_direction == "rtl"

    def digits(self, text: str) -> str:
        """TEXT with its Latin digits written in this locale's digits."""
        digits = _DIGITS.get(self.numbering)
        return text.translate(str.maketrans("0123456789", digits)) if digits else text

    def _numbers(self) -> str:
        # Babel knows separators only for the numbering systems CLDR lists for the locale.
        try:
            babel.numbers.get_decimal_symbol(self.locale, numbering_system=self.numbering)
        except babel.numbers.UnsupportedNumberingSystemError:
            return "latn"
        return self.numbering


def _decimal(value: Any, what: str) -> Decimal:
    if value is None:
        raise ValueError(f"{what}: the value is empty")
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        raise ValueError(f"{what}: {value!r} is not a number")
    try:
        # str() first: Decimal(0.1) would carry the float's binary error into the amount.
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what}: {value!r} is not a number") from None


def format_money(amount: Any, currency: Any, fmt: Formatting) -> str:
    """AMOUNT in CURRENCY (ISO 4217), with the currency's own number of decimals."""
    value = _decimal(amount, "money")
    if not isinstance(currency, str) or not currency.strip():
        raise ValueError("money: the currency is empty; write e.g. order.total|money(order.currency)")
    code = currency.strip().upper()
    if not babel.numbers.is_currency(code):
        raise ValueError(f"money: {currency!r} is not an ISO 4217 currency code (e.g. EGP, USD)")
    text = babel.numbers.format_currency(value, code, locale=fmt.locale, numbering_system=fmt._numbers())
    return fmt.digits(text)


def format_number(value: Any, fmt: Formatting, decimals: int | None = None) -> str:
    """VALUE with the locale's separators and digits; DECIMALS fixes the fraction digits."""
    number = _decimal(value, "number")
    if decimals is not None:
        if not isinstance(decimals, int) or not 0 <= decimals <= 10:
            raise ValueError(f"number: decimals must be a whole number from 0 to 10, not {decimals!r}")
        number = number.quantize(Decimal(1).scaleb(-decimals))
        pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
        text = babel.numbers.format_decimal(
            number, format=pattern, locale=fmt.locale, numbering_system=fmt._numbers()
        )
    else:
        text = babel.numbers.format_decimal(number, locale=fmt.locale, numbering_system=fmt._numbers())
    return fmt.digits(text)


def _instant(value: Any, what: str) -> datetime | date:
    if value is None:
        raise ValueError(f"{what}: the value is empty")
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        # JSON attributes carry times as ISO 8601 text.
        try:
            return parse_instant(value)
        except ValueError:
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
    raise ValueError(f"{what}: {value!r} is not a date or time (ISO 8601 text is accepted)")


def _style(style: Any, what: str) -> str:
    if not isinstance(style, str) or not style:
        raise ValueError(f"{what}: the format must be one of {', '.join(DATE_STYLES)} or a CLDR pattern")
    return style


def format_date(value: Any, fmt: Formatting, style: str = "medium") -> str:
    """The calendar date of VALUE in the customer's time zone (`long`: 24 November 2026)."""
    moment = _instant(value, "date")
    day = moment.astimezone(fmt.zone).date() if isinstance(moment, datetime) else moment
    return fmt.digits(babel.dates.format_date(day, _style(style, "date"), locale=fmt.locale))


def format_time(value: Any, fmt: Formatting, style: str = "short") -> str:
    """The wall-clock time of VALUE in the customer's time zone (`short`: 9:30 AM)."""
    moment = _instant(value, "time")
    if not isinstance(moment, datetime):
        raise ValueError(f"time: {value!r} is a date without a time")
    text = babel.dates.format_time(moment, _style(style, "time"), tzinfo=fmt.zone, locale=fmt.locale)
    return fmt.digits(text)


def format_datetime(value: Any, fmt: Formatting, style: str = "medium") -> str:
    """Date and time of VALUE in the customer's time zone."""
    moment = _instant(value, "datetime")
    if not isinstance(moment, datetime):
        raise ValueError(f"datetime: {value!r} is a date without a time")
    text = babel.dates.format_datetime(moment, _style(style, "datetime"), tzinfo=fmt.zone, locale=fmt.locale)
    return fmt.digits(text)


def format_timespan(value: Any, fmt: Formatting) -> str:
    """A length of time in words, rounded to its largest unit (`2 days`, `يومان`)."""
    if not isinstance(value, timedelta):
        raise ValueError(f"timespan: {value!r} is not a length of time (e.g. now - order.promised_at)")
    text = babel.dates.format_timedelta(abs(value), threshold=1.0, locale=fmt.locale)
    return fmt.digits(text)


def isolate_ltr(value: Any, fmt: Formatting) -> str:
    """VALUE isolated as left-to-right inside right-to-left text (phone numbers, ids, URLs).

    Without it, `+44 20 7946 0000` in an Arabic sentence shows its groups in reverse order.
    Unicode isolates (LRI…PDI) are invisible and leave left-to-right text untouched.
    """
    if value is None:
        raise ValueError("ltr: the value is empty")
    text = str(value)
    return f"{_LRI}{text}{_PDI}" if fmt.right_to_left and text else text


@functools.lru_cache(maxsize=1024)
def _formatting(locale: str, time_zone: str) -> Formatting:
    # Parsing a locale and loading its CLDR data costs more than the rest of a small render;
    # a Formatting is immutable, so customers sharing a locale and a zone share one.
    return Formatting._build(locale, time_zone)

"""SMS length as carriers bill it, and the opt-out line every SMS ends with.

A message in GSM-7 (3GPP TS 23.038) fits 160 septets in one segment, 153 per segment when
concatenated; extension characters (`^{}\\[~]|€` and form feed) cost two septets. Any other
character — every Arabic letter, an emoji, a curly quote — makes the whole message UCS-2:
70 UTF-16 code units alone, 67 per segment when concatenated. The 7 (or 3) missing units per
segment carry the concatenation header.
"""

from __future__ import annotations

from dataclasses import dataclass

from outreach import locales

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# (single-segment capacity, per-segment capacity when concatenated), in septets or code units.
_CAPACITY = {GSM7: (160, 153), UCS2: (70, 67)}

# Twilio acts on STOP at the carrier whatever else is configured, so every language names it;
# Arabic also names its own word, which the inbound webhook understands (outreach.feedback).
OPT_OUT_LINES: dict[str, str] = {
    "en": "Reply STOP to opt out.",
    "ar": "لإيقاف الرسائل أرسل إيقاف أو STOP",
    "fr": "Répondez STOP pour vous désinscrire.",
    "es": "Responde STOP para darte de baja.",
    "de": "Antworte STOP zum Abbestellen.",
}


@dataclass(frozen=True)
class Segments:
    """How a carrier will split one SMS: its encoding, the number of segments and their length."""

    encoding: str
    count: int
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2


def encoding_of(text: str) -> str:
    """GSM-7 if every character has a GSM-7 code, else UCS-2."""
    return GSM7 if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text) else UCS2


def _unit_costs(text: str, encoding: str) -> list[int]:
    if encoding == GSM7:
        return [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def count_segments(text: str) -> Segments:
    """The segments TEXT is sent as; an empty message still costs one."""
    encoding = encoding_of(text)
    costs = _unit_costs(text, encoding)
    units = sum(costs)
    single, multi = _CAPACITY[encoding]
    if units <= single:
        return Segments(encoding, 1, units)
    # An escape sequence (GSM-7) or a surrogate pair (UCS-2) is never split across two
    # segments, so a segment can end one unit short: pack them as the carrier does.
    count, used = 1, 0
    for cost in costs:
        if used + cost > multi:
            count, used = count + 1, 0
        used += cost
    return Segments(encoding, count, units)


def opt_out_line(locale: str, default_locale: str = "en") -> str:
    """The opt-out line in the language of LOCALE (`ar-EG` → Arabic), else the default's, else English."""
    for tag in (locale, default_locale, "en"):
        if locales.language(tag) in OPT_OUT_LINES:
            return OPT_OUT_LINES[locales.language(tag)]
    return OPT_OUT_LINES["en"]


def has_opt_out_line(locale: str) -> bool:
    """Whether an opt-out line is written for the language of LOCALE."""
    return locales.language(locale) in OPT_OUT_LINES


def with_opt_out(body: str, locale: str, default_locale: str = "en") -> str:
    """BODY, trimmed, followed by the opt-out line on a line of its own."""
    return f"{body.strip()}\n{opt_out_line(locale, default_locale)}"

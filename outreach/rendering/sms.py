"""SMS length as Twilio bills it, and the opt-out line every SMS ends with.

A message in GSM-7 (3GPP TS 23.038) fits 160 septets in one segment, 153 per segment when
concatenated; extension characters (`^{}\\[~]|€` and form feed) cost two septets. Any other
character — every Arabic letter, an emoji, a curly quote, a no-break space — makes the whole
message UCS-2: 70 UTF-16 code units alone, 67 per segment when concatenated. The 7 (or 3)
missing units per segment carry the concatenation header.

A segment never ends inside a character cluster (what a reader sees as one character: an Arabic
letter with its shadda, a flag, a family emoji, a keycap), nor inside an escape sequence: the
next segment starts with it and this one ends short. Clusters are Unicode's extended grapheme
clusters (UAX #29, the `regex` module's `\\X`), as in Twilio's own segment calculator, which
splits CR LF in two. tests/data/sms_segments holds that calculator's answers for a few thousand
messages, and outreach gives the same on every one.

With Twilio's Smart Encoding (`twilio.smart_encoding`), the characters of Twilio's list are
replaced before the encoding is chosen (`smart_encoding.py`), and so before counting.
"""

from __future__ import annotations

import itertools
import unicodedata
from dataclasses import dataclass

import regex

from outreach import locales
from outreach.rendering.smart_encoding import smart_encode

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7_CHARACTERS = GSM7_BASIC | GSM7_EXTENSION

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# (single-segment capacity, per-segment capacity when concatenated), in septets or code units.
_CAPACITY = {GSM7: (160, 153), UCS2: (70, 67)}

_CLUSTER = regex.compile(r"\X")

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
    # The characters (clusters) that made the message UCS-2, each once, in order of appearance.
    ucs2_characters: tuple[str, ...] = ()


def clusters(text: str) -> list[str]:
    """TEXT cut into the characters a reader sees (extended grapheme clusters), CR LF as two."""
    if "\r\n" not in text:
        return list(_CLUSTER.findall(text))
    found: list[str] = []
    for cluster in _CLUSTER.findall(text):
        if cluster == "\r\n":
            found.extend(cluster)  # Twilio's calculator counts and splits them as two characters
        else:
            found.append(cluster)
    return found


def _is_gsm7(cluster: str) -> bool:
    return len(cluster) == 1 and cluster in GSM7_CHARACTERS


def forces_ucs2(cluster: str, *, smart_encoding: bool = False) -> bool:
    """Whether CLUSTER alone makes a message UCS-2 (after Smart Encoding's replacement when asked)."""
    sent = smart_encode(cluster) if smart_encoding else cluster
    return not all(ch in GSM7_CHARACTERS for ch in sent)


def encoding_of(text: str) -> str:
    """GSM-7 if every character has a GSM-7 code, else UCS-2."""
    return GSM7 if GSM7_CHARACTERS.issuperset(text) else UCS2


def _utf16_units(cluster: str) -> int:
    return len(cluster.encode("utf-16-le")) // 2


def _pieces(text: str, smart_encoding: bool) -> tuple[str, list[str], list[int]]:
    sent = smart_encode(text) if smart_encoding else text
    if GSM7_CHARACTERS.issuperset(sent):
        # Every GSM-7 character is a cluster of its own (CR LF is split anyway): no need to look.
        return GSM7, list(sent), [2 if ch in GSM7_EXTENSION else 1 for ch in sent]
    parts = clusters(sent)
    if max(sent) <= "\uffff":  # no surrogate pairs: a cluster costs its length
        return UCS2, parts, list(map(len, parts))
    return UCS2, parts, [len(c.encode("utf-16-le")) // 2 for c in parts]


def _packed(costs: list[int], encoding: str) -> list[int]:
    """The index of the first cluster of each segment."""
    single, multi = _CAPACITY[encoding]
    if sum(costs) <= single:
        return [0]
    starts, used = [0], 0
    for index, cost in enumerate(costs):
        if used + cost > multi and used:
            starts.append(index)
            used = 0
        used += cost
    return starts


def count_segments(text: str, *, smart_encoding: bool = False) -> Segments:
    """The segments TEXT is billed as; an empty message still costs one.

    SMART_ENCODING: count what Twilio sends with Smart Encoding on.
    """
    encoding, parts, costs = _pieces(text, smart_encoding)
    # In a GSM-7 message every cluster is one GSM-7 character: nothing to look for.
    ucs2 = (
        ()
        if encoding == GSM7
        else tuple(dict.fromkeys([c for c in parts if len(c) > 1 or c not in GSM7_CHARACTERS]))
    )
    return Segments(encoding, len(_packed(costs, encoding)), sum(costs), ucs2)


def split_segments(text: str, *, smart_encoding: bool = False) -> list[str]:
    """TEXT cut where the carrier cuts it (after Smart Encoding's replacements when asked)."""
    encoding, parts, costs = _pieces(text, smart_encoding)
    starts = [*_packed(costs, encoding), len(parts)]
    return ["".join(parts[a:b]) for a, b in itertools.pairwise(starts)]


def plain_spaces(text: str) -> str:
    """TEXT with its other spaces (no-break, narrow no-break, thin…) made plain, if that makes it GSM-7.

    Locale formatting writes them: English times (`9:30 AM` with U+202F before AM, CLDR 42 on),
    French amounts (`1 249,50 €` with U+202F and U+00A0). One is enough to make a message UCS-2,
    which costs a 157-character English SMS three segments instead of one. In a message that is UCS-2 anyway (Arabic), they
    cost nothing and keep the amount and its currency on one line, so they stay.
    """
    if encoding_of(text) == GSM7:
        return text
    plain = "".join(" " if ch != " " and unicodedata.category(ch) == "Zs" else ch for ch in text)
    return plain if encoding_of(plain) == GSM7 else text


@dataclass(frozen=True)
class Avoidable:
    """The characters that alone make a message UCS-2, and what it would cost without them."""

    characters: tuple[str, ...]  # each once, in order of appearance
    replacements: dict[str, str]  # the GSM-7 look-alike of those Smart Encoding replaces
    gsm7: Segments  # the message with them replaced (or left out)


def avoidable_ucs2(text: str, *, smart_encoding: bool = False) -> Avoidable | None:
    """What to change to make TEXT GSM-7, when only punctuation, symbols, spaces or emoji stand in the way.

    None when TEXT is GSM-7 already, or when letters of a script outside GSM-7 (Arabic, Greek
    lower case, Cyrillic…) make it UCS-2 whatever else it holds.
    """
    counted = count_segments(text, smart_encoding=smart_encoding)
    if counted.encoding == GSM7:
        return None
    if any(unicodedata.category(c[0])[0] == "L" for c in counted.ucs2_characters):
        return None
    sent = smart_encode(text) if smart_encoding else text
    replacements = {c: smart_encode(c) for c in counted.ucs2_characters if smart_encode(c) != c}
    fixed = "".join(replacements.get(c, c) for c in clusters(sent) if c in replacements or _is_gsm7(c))
    return Avoidable(counted.ucs2_characters, replacements, count_segments(fixed))


def describe(character: str) -> str:
    """A character (cluster) as a person can find it: `’ U+2019 RIGHT SINGLE QUOTATION MARK`."""
    points = " ".join(f"U+{ord(ch):04X}" for ch in character)
    names = " + ".join(unicodedata.name(ch, "unnamed") for ch in character)
    shown = character if character.isprintable() and not character.isspace() else repr(character)[1:-1]
    return f"{shown} {points} {names}"


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

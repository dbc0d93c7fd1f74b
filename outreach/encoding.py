"""Users' files are UTF-8: when one is not, say where it stops being UTF-8 and what it looks like;
and text holds only what both databases can store (`storable`, `made_storable`, at the end).

Spreadsheets and old exports write Windows-1252 or Latin-1 (`café` as the single byte 0xE9),
Windows editors write UTF-16 with a byte order mark; both are told apart here so the message
can name the encoding instead of "cannot decode byte 0xe9 in position 1925".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import overload

ADVICE = "save it as UTF-8"

_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


@dataclass(frozen=True)
class NotUtf8:
    """Where bytes stop being UTF-8 (1-based line and column, counted in characters) and why."""

    line: int
    col: int
    message: str


def wide_encoding(start: bytes) -> str | None:
    """`UTF-16` or `UTF-32` when START begins with that encoding's byte order mark, else None."""
    for bom, name in _BOMS:
        if start.startswith(bom):
            return name
    return None


def wide_message(name: str, what: str = "the file") -> str:
    return f"{what} is {name} (it starts with a {name} byte order mark): {ADVICE}"


def not_utf8(data: bytes, exc: UnicodeDecodeError, what: str = "the file") -> NotUtf8:
    """Where DATA stops being UTF-8 (EXC from decoding it), and what it probably is instead."""
    before = data[: exc.start]
    line = before.count(b"\n") + 1
    line_start = before.rfind(b"\n") + 1
    col = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
    return NotUtf8(line, col, byte_message(data[exc.start], what))


def byte_message(byte: int, what: str = "the file") -> str:
    """What to say about BYTE, which is not UTF-8 where it stands."""
    guess = " (the file looks like Latin-1 or Windows-1252)" if byte >= 0x80 else ""
    return f"byte 0x{byte:02X} is not UTF-8{guess}: {what} must be UTF-8 text; {ADVICE}"


# Text both databases can store. PostgreSQL refuses a NUL in text and in jsonb; a lone surrogate
# (half of a UTF-16 pair, which `json.loads` lets through) is not Unicode at all, so neither
# database's UTF-8 can hold it. Input a user gives is refused with a message saying which
# character (`storable`); words the project does not choose, such as a provider's error, are
# kept with each such character replaced by U+FFFD (`made_storable`), so recording what happened
# never fails on the text that describes it.

SURROGATE = re.compile("[\ud800-\udfff]")
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


# Whether both databases store a text, written out where it runs per field: a NUL is never
# printable, and printable text (names in any script) holds no surrogate, so the regular
# expression runs only on text with line breaks, tabs or worse.
#
#     "\x00" in text or not (text.isascii() or text.isprintable()) and SURROGATE.search(text)


def storable(text: str) -> str:
    """TEXT, if both databases can store it; ValueError saying which character they cannot."""
    if "\x00" in text or (not (text.isascii() or text.isprintable()) and SURROGATE.search(text)):
        raise ValueError(unstorable(text))
    return text


def unstorable(text: str) -> str:
    """What makes TEXT unstorable, for a message about it."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which the databases cannot store"
    bad = SURROGATE.search(text)
    code = ord(bad.group()) if bad is not None else 0
    return f"contains a lone surrogate (\\u{code:04x}), half of a UTF-16 pair: not valid Unicode text"


@overload
def made_storable(text: str) -> str: ...
@overload
def made_storable(text: None) -> None: ...
def made_storable(text: str | None) -> str | None:
    """TEXT with each NUL and lone surrogate replaced by U+FFFD; None stays None."""
    if text is None or ("\x00" not in text and (text.isascii() or text.isprintable())):
        return text
    return UNSTORABLE.sub(REPLACEMENT, text)

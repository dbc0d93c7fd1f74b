"""Users' files are UTF-8: when one is not, say where it stops being UTF-8 and what it looks like.

Spreadsheets and old exports write Windows-1252 or Latin-1 (`café` as the single byte 0xE9),
Windows editors write UTF-16 with a byte order mark; both are told apart here so the message
can name the encoding instead of "cannot decode byte 0xe9 in position 1925".
"""

from __future__ import annotations

from dataclasses import dataclass

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

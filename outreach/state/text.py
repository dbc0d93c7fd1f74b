"""Text both databases can store.

PostgreSQL refuses a NUL in text and in jsonb; a lone surrogate (half of a UTF-16 pair, which
`json.loads` lets through) is not Unicode at all, so neither database's UTF-8 can hold it.
Input a user gives is refused with a message saying which character (`storable`); words the
project does not choose, such as a provider's error or an exception's message, are kept with
each such character replaced by U+FFFD (`scrubbed`), so recording what happened never fails on
the text that describes it.
"""

from __future__ import annotations

import re
from typing import overload

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
def scrubbed(text: str) -> str: ...
@overload
def scrubbed(text: None) -> None: ...
def scrubbed(text: str | None) -> str | None:
    """TEXT with each NUL and lone surrogate replaced by U+FFFD; None stays None."""
    if text is None or ("\x00" not in text and (text.isascii() or text.isprintable())):
        return text
    return UNSTORABLE.sub(REPLACEMENT, text)

"""Loading customer state from JSONL and CSV: validate every record, upsert by id, all or nothing.

A file is read once, in batches, inside one transaction. Every line is validated; while no line
has been bad the batches are written, and the first bad line turns writing off (validation goes
on, so every bad line is reported together) and the transaction is rolled back at the end.

What a record means:
- a field present in a record is written; a field absent from a JSONL record keeps its stored
  value (a new row gets the column default) — so `{"id": "o1", "customer_id": "c1",
  "status": "delivered", "delivered_at": "…"}` updates an order without repeating it;
- `null` (an empty CSV cell) clears a field: NULL, or the column's default where the column
  cannot be empty (`name` "", `locale` "en", `timezone` "UTC", opt-ins false, `attributes` {},
  `items` []); `status` and `kind` cannot be cleared;
- `id` is required everywhere and `customer_id` on orders, checkouts and survey responses; the
  customer must exist in the database when the line is loaded (load customers files first).

The first half of this module is pure (`validate_record` is shared with `POST /events`); the
second half reads files and talks to the database.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import functools
import gzip
import io
import json
import math
import re
import zlib
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path, PurePath
from typing import IO, Any, Literal, cast

import email_validator
import orjson
import phonenumbers
from babel.numbers import list_currencies
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT
from sqlalchemy import Select, Table, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.sql.dml import Insert

from outreach import encoding, locales
from outreach.clock import EARLIEST, LATEST, RANGE_TEXT, in_range, parse_instant, utcnow
from outreach.encoding import SURROGATE, storable, unstorable
from outreach.errors import ConfigError, IngestError, Problem, closest, did_you_mean
from outreach.memory import collector_paused
from outreach.state import bulk, history, ledger
from outreach.state.db import large_sqlite_cache
from outreach.state.models import BY_NAME, ORDER_STATUSES, SURVEY_KINDS, TABLE_NAMES, named_table
from outreach.state.records import note_change
from outreach.vocabulary import CHANNELS

TABLES: tuple[str, ...] = TABLE_NAMES
BATCH_SIZE = 5000
MAX_PROBLEMS = 1000

# ---------------------------------------------------------------------------------------------
# Values: each parser takes a JSON value (or, `*_text`, a CSV cell) and returns the clean value
# or raises ValueError saying what is wrong with it.
# ---------------------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    if value is True or value is False:
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shown(value: Any, width: int = 40) -> str:
    """VALUE as a message shows it, cut short when long."""
    text = repr(value) if not isinstance(value, int) else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# Ids are primary keys: PostgreSQL's B-tree refuses keys much over 2,700 bytes.
MAX_ID_LENGTH = 255


def parse_id(value: Any) -> str:
    """Ids are strings; whole numbers are accepted and kept as their decimal text."""
    if isinstance(value, str):
        # The checks are written out (not calls): two ids a record, millions of records.
        if len(value) > MAX_ID_LENGTH:
            raise ValueError(f"is {len(value):,} characters long; an id is at most {MAX_ID_LENGTH}")
        if "\x00" in value or (not (value.isascii() or value.isprintable()) and SURROGATE.search(value)):
            raise ValueError(unstorable(value))
        if not value.strip():
            raise ValueError("must not be empty")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(10**MAX_ID_LENGTH) < value < 10**MAX_ID_LENGTH:
            raise ValueError(f"{_shown(value)} is too long for an id (at most {MAX_ID_LENGTH} digits)")
        return str(value)
    raise ValueError(f"must be a string, got {_kind(value)}")


def parse_text(value: Any) -> str:
    if isinstance(value, str):
        if "\x00" in value or (not (value.isascii() or value.isprintable()) and SURROGATE.search(value)):
            raise ValueError(unstorable(value))
        return value
    raise ValueError(f"must be a string, got {_kind(value)}")


def parse_bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    raise ValueError(f"must be true or false, got {_kind(value)}")


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def parse_bool_text(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean: write true/false, yes/no or 1/0")


# A quadrillion in any currency is past every real cart; beyond it an amount is a mistake
# (a column mix-up, a 400-digit number that float() cannot even convert).
MAX_MONEY = 10**15


def parse_money(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a number, got {_kind(value)}")
    try:
        amount = float(value)
    except OverflowError:  # an integer of hundreds of digits
        amount = math.inf
    if 0 <= amount <= MAX_MONEY:  # false for NaN too
        return amount
    if amount > MAX_MONEY:
        raise ValueError(f"{_shown(value)} is out of range: amounts go up to {MAX_MONEY:,}")
    raise ValueError(f"{_shown(value)} is not an amount: write a number ≥ 0, e.g. 49.90")


def parse_money_text(text: str) -> float:
    try:
        amount = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number: write e.g. 49.90") from None
    return parse_money(amount)


SCORE_RANGE = range(11)


def parse_score(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"must be a whole number from 0 to 10, got {_kind(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not a whole number from 0 to 10")
        value = int(value)
    if value not in SCORE_RANGE:
        raise ValueError(f"{value} is out of range: scores go from 0 to 10")
    return int(value)


def parse_score_text(text: str) -> int:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number from 0 to 10") from None
    return parse_score(number)


_FIRST_YEAR, _PAST_YEAR = f"{EARLIEST.year:04d}", f"{LATEST.year:04d}"


def parse_instant_value(value: Any) -> datetime:
    """An ISO 8601 time with an offset (or Z) → aware UTC."""
    if isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            # Every form fromisoformat reads starts with the four digits of the year, so the
            # text itself says whether a UTC instant is in range (cheaper than two comparisons
            # of aware datetimes, three times a record).
            if instant.tzinfo is UTC and _FIRST_YEAR <= value < _PAST_YEAR:
                return instant
        return parse_instant(value)  # converts other offsets, says what is wrong
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()!r} has no UTC offset: add Z or +HH:MM")
        try:
            return in_range(value.astimezone(UTC))
        except OverflowError:
            raise ValueError(
                f"{value.isoformat()!r} is out of range: outreach takes times {RANGE_TEXT}"
            ) from None
    raise ValueError(
        f"must be an ISO 8601 time with an offset (e.g. 2026-11-24T09:30:00Z), got {_kind(value)}"
    )


def _one_of(what: str, choices: Sequence[str]) -> Callable[[Any], str]:
    allowed = frozenset(choices)

    def parse(value: Any) -> str:
        if isinstance(value, str) and value in allowed:
            return value
        if not isinstance(value, str):
            raise ValueError(f"must be one of {', '.join(choices)}, got {_kind(value)}")
        close = closest(value.lower(), choices)
        hint = f"; did you mean {close!r}?" if close else ""
        raise ValueError(f"{value!r} is not {what} (one of {', '.join(choices)}){hint}")

    return parse


_CURRENCIES = frozenset(list_currencies())


def parse_currency(value: Any) -> str:
    """An ISO 4217 code, upper-cased."""
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 4217 currency code like EUR, got {_kind(value)}")
    code = value.strip().upper()
    if code not in _CURRENCIES:
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (e.g. EUR, GBP, AED, EGP)")
    return code


def parse_locale(value: Any) -> str:
    """A locale as BCP 47 with hyphens (`ar_eg` → `ar-EG`)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a locale like en, ar or ar-EG, got {_kind(value)}")
    try:
        return locales.normalise(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a locale Babel knows (e.g. en, ar, ar-EG)") from None


@lru_cache(maxsize=1)
def _time_zones() -> dict[str, str]:
    return {name.lower(): name for name in zoneinfo.available_timezones()}


def parse_timezone(value: Any) -> str:
    """An IANA time zone name, exactly as the tz database spells it."""
    if not isinstance(value, str):
        raise ValueError(f"must be an IANA time zone like Europe/London, got {_kind(value)}")
    zones = _time_zones()
    name = value.strip()
    if zones.get(name.lower()) == name:
        return name
    if name.lower() in zones:
        raise ValueError(f"{value!r} is not an IANA time zone (did you mean {zones[name.lower()]!r}?)")
    close = closest(name, zones.values())
    hint = f"did you mean {close!r}?" if close else "e.g. Europe/London, Asia/Dubai"
    raise ValueError(f"{value!r} is not an IANA time zone ({hint})")


# phonenumbers compiles its metadata patterns through the re module's 512-entry cache; numbers
# from many regions (+1 alone spans 25) overflow it and each check recompiles them. Newer
# releases can keep every compiled pattern instead (python-phonenumbers issue #108).
if hasattr(phonenumbers, "enable_pattern_cache"):
    phonenumbers.enable_pattern_cache()

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_COUNTRY_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}


def _canonical_e164(text: str) -> phonenumbers.PhoneNumber | None:
    """The number of a `+digits` string without phonenumbers.parse (three times slower).

    Country codes are prefix-free, so the first known prefix is the country code. A national
    number starting with 0 needs parse's handling of leading zeros and national prefixes.
    """
    for end in (2, 3, 4):
        code = _COUNTRY_CODES.get(text[1:end])
        if code is not None:
            national = text[end:]
            if not national or national[0] == "0":
                return None
            return phonenumbers.PhoneNumber(country_code=code, national_number=int(national))
    return None


# What a written phone number may hold besides digits (any script's): spaces, a leading plus
# (or a full-width one) and the separators of national formats, `+1 (415) 555-0100`.
_PHONE_TEXT = re.compile(r"[\d\s+\uff0b\-.()]*")
_EXTENSION = re.compile(r"(?:;\s*ext=|,|\s*(?:ext\.?|extension|x|#))\s*\d+\s*$", re.IGNORECASE)


def _phone_text_problem(value: str, text: str) -> str | None:
    """Why TEXT is not only a phone number, or None. phonenumbers would read letters as keypad
    digits (`+1 800 FLOWERS` → +18003569377, `(mobile)` → 662453) and drop an extension: guessing
    either stores a number nobody gave."""
    if _PHONE_TEXT.fullmatch(text):
        return None
    if _EXTENSION.search(text):
        return (
            f"{value!r} has an extension, which no SMS can reach: give the number alone "
            "(an extension belongs in attributes)"
        )
    if any(char.isalpha() for char in text):
        return (
            f"{value!r} has letters in it: write the number in digits only, e.g. +447911123456 "
            "(letters are not read as keypad digits; a note such as '(mobile)' belongs in attributes)"
        )
    return f"{value!r} has text besides the number: write the number alone, e.g. +447911123456"


def parse_phone(value: Any) -> str:
    """A valid phone number in international format, normalised to E.164 (`+447911123456`)."""
    if not isinstance(value, str):
        raise ValueError(f"must be a phone number like +447911123456, got {_kind(value)}")
    text = value.strip()
    problem = None if _E164.fullmatch(text) else _phone_text_problem(value, text)
    if problem is not None:
        raise ValueError(problem)
    normalised = _phone(text)
    if normalised is None:
        raise ValueError(
            f"{value!r} is not a phone number in international format: "
            "start with + and the country code, e.g. +447911123456"
        )
    if not normalised:
        raise ValueError(f"{value!r} is not a valid phone number (check the country code and digits)")
    return normalised


def is_valid_phone(number: phonenumbers.PhoneNumber) -> bool:
    """phonenumbers.is_valid_number, a third cheaper for the main region of a shared code.

    is_valid_number first finds the number's region by working out its type in each region of
    the country code, then works the type out again for that region. A number valid for the
    code's main region (listed first: US for +1, GB for +44) is valid, and that region is the
    one is_valid_number would find, so one check settles it; anything else takes the full path.
    """
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(number.country_code or 0, ())
    if regions and phonenumbers.is_valid_number_for_region(number, regions[0]):
        return True
    return bool(phonenumbers.is_valid_number(number))


# Checking a number costs 10-30 µs; numbers recur (households, shared lines, re-sent feeds).
@lru_cache(maxsize=16384)
def _phone(text: str) -> str | None:
    """TEXT in E.164, "" if it is no valid number, None if it cannot be read as one."""
    if _E164.fullmatch(text):
        number = _canonical_e164(text)
        if number is not None and is_valid_phone(number):
            return text
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        return None
    if not is_valid_phone(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=4096)
def _email_domain(domain: str) -> str | None:
    """The normalised ASCII form of an email domain, or None when the full check must decide."""
    try:
        checked = email_validator.validate_email("a@" + domain, check_deliverability=False)
    except email_validator.EmailNotValidError:
        return None
    return checked.domain if checked.domain.isascii() else None


def _email_slow(text: str) -> str:
    try:
        return email_validator.validate_email(text, check_deliverability=False).normalized
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"{text!r} is not a valid email address: {exc}") from None


def parse_email(value: Any) -> str:
    """A syntactically valid email address (checked offline), normalised as email_validator does.

    Plain ASCII addresses take a fast path giving email_validator's answer: the local part is
    checked with its own dot-atom pattern and the domain — which repeats across customers —
    is validated once and cached. Anything else goes through email_validator in full.
    """
    if not isinstance(value, str):
        raise ValueError(f"must be an email address, got {_kind(value)}")
    text = value.strip()
    local, at, domain = text.rpartition("@")
    if at and text.isascii() and DOT_ATOM_TEXT.fullmatch(local):
        normal_domain = _email_domain(domain)
        if normal_domain is not None:
            if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:
                local = local.lower()
            normalised = local + "@" + normal_domain
            if len(text) <= 254 and len(normalised) <= 254:
                return normalised
    return _email_slow(text)


# A scheme, a host and no white space: enough to catch a column mix-up or a relative link
# (urlsplit is ten times slower and accepts nearly anything).
# NUL and lone surrogates are left out here, so a good URL costs no further check.
_HTTP_URL = re.compile(
    "https?://[^\\s/?#@\x00\ud800-\udfff]+(?:[/?#][^\\s\x00\ud800-\udfff]*)?", re.IGNORECASE
)


def parse_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be an http(s) URL, got {_kind(value)}")
    text = value.strip()
    if not _HTTP_URL.fullmatch(text):
        storable(text)  # says so if a NUL or a surrogate is what is wrong
        raise ValueError(f"{_shown(value)} is not an http(s) URL (e.g. https://example.com/track/123)")
    return text


# JSON fields (attributes, items) are stored as JSON and read by rules: deep enough for any
# real document, shallow enough that no walk over them (ours, the JSON encoders', SQLite's
# json functions, PostgreSQL's jsonb) runs out of stack.
MAX_JSON_DEPTH = 32
_INT64 = 2**63


def _json_fine(value: Any, depth: int) -> bool:
    """A quick yes when VALUE (a JSON field, DEPTH levels down) is storable; no means: ask `_json_problem`."""
    if depth > MAX_JSON_DEPTH:
        return False
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or "\x00" in key or not (key.isascii() or key.isprintable()):
                return False
            if not _json_item_fine(item, depth):
                return False
        return True
    return all(_json_item_fine(item, depth) for item in value)


def _json_item_fine(item: Any, depth: int) -> bool:
    kind = type(item)
    if kind is str:
        return "\x00" not in item and (item.isascii() or item.isprintable())
    if kind is int:
        return -_INT64 <= item < _INT64  # type: ignore[no-any-return]
    if kind is float:
        return item - item == 0  # type: ignore[no-any-return]  # not for inf or nan
    if kind is dict or kind is list:
        return _json_fine(item, depth + 1)
    return item is None or kind is bool


def _json_problem(value: Any, path: str, depth: int) -> str | None:
    """What makes VALUE (at PATH) unstorable as JSON, or None."""
    if isinstance(value, str):
        try:
            storable(value)
        except ValueError as exc:
            return f"{path}: {exc}"
        return None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (
            None
            if -_INT64 <= value < _INT64
            else f"{path}: {_shown(value)} is out of range (a 64-bit integer)"
        )
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path}: {value!r} is not a number JSON can hold"
    if isinstance(value, (dict, list)):
        if depth > MAX_JSON_DEPTH:
            return f"{path}: nested more than {MAX_JSON_DEPTH} levels deep"
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"{path}: key {_shown(key)} is not a string"
                where = f"{path}.{key}" if len(key) <= 40 else f"{path}.{key[:37]}..."
                problem = _json_problem(key, where, depth) or _json_problem(item, where, depth + 1)
                if problem is not None:
                    return problem
        else:
            for index, item in enumerate(value):
                problem = _json_problem(item, f"{path}[{index}]", depth + 1)
                if problem is not None:
                    return problem
        return None
    return f"{path}: {_kind(value)} is not a JSON value"


def parse_object(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        if value and not _json_fine(value, 1):
            problem = _json_problem(value, "", 1)
            if problem is not None:
                raise ValueError(problem.lstrip("."))
        return value
    raise ValueError(f"must be a JSON object {{…}}, got {_kind(value)}")


def parse_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        if value and not _json_fine(value, 1):
            problem = _json_problem(value, "", 1)
            if problem is not None:
                raise ValueError(problem.lstrip("."))
        return value
    raise ValueError(f"must be a JSON list […], got {_kind(value)}")


# Every digit as 0, so that a run of 20 digits — as long as the largest integer orjson reads
# exactly (2**64 - 1), and more — is a plain substring search: a fifth of a regex's time.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_TWENTY_DIGITS = b"0" * 20


def _long_digits(raw: bytes) -> bool:
    """Whether RAW holds a run of 20 digits (in a number, or in a string)."""
    return _TWENTY_DIGITS in raw.translate(_DIGITS_AS_ZERO)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def loads_lenient(text: str | bytes) -> Any:
    """The json module's reading of TEXT, which words errors well; NaN and Infinity refused.

    Raises ValueError for anything it cannot read, including nesting too deep to read.
    """
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def read_json(raw: bytes) -> Any:
    """A JSON document read exactly: by orjson, except a document with a run of 20 digits —
    where orjson would read an integer beyond 64 bits as a float, without a word — which the
    json module reads (`loads_lenient`). Raises ValueError for what is not JSON."""
    if not _long_digits(raw):
        return orjson.loads(raw)
    return loads_lenient(raw)


def _json_text(parse: Callable[[Any], Any]) -> Callable[[str], Any]:
    def from_text(text: str) -> Any:
        try:
            decoded = loads_lenient(text)
        except ValueError as exc:
            raise ValueError(f"is not valid JSON ({exc})") from None
        return parse(decoded)

    return from_text


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

NullMeans = Literal["default", "missing", "refused"]


@dataclass(frozen=True)
class FieldRule:
    """How one field of a table is validated, and what null (an empty CSV cell) means for it."""

    parse: Callable[[Any], Any]
    parse_text: Callable[[str], Any]
    # default: write the model's default (NULL where the column allows it); missing: the field
    # is required; refused: the field has a value or is left out.
    null: NullMeans = "default"


def _rule(
    parse: Callable[[Any], Any], text: Callable[[str], Any] | None = None, null: NullMeans = "default"
) -> FieldRule:
    return FieldRule(parse, text or parse, null)


_ID = _rule(parse_id, null="missing")
_TEXT = _rule(parse_text)
_INSTANT = _rule(parse_instant_value)
_MONEY = _rule(parse_money, parse_money_text)
_CURRENCY = _rule(parse_currency)
_URL = _rule(parse_url)
_BOOL = _rule(parse_bool, parse_bool_text)
_OBJECT = _rule(parse_object, _json_text(parse_object))
_LIST = _rule(parse_list, _json_text(parse_list))

FIELDS: dict[str, dict[str, FieldRule]] = {
    "customers": {
        "id": _ID,
        "name": _TEXT,
        "email": _rule(parse_email),
        "phone": _rule(parse_phone),
        "locale": _rule(parse_locale),
        "timezone": _rule(parse_timezone),
        "preferred_channel": _rule(_one_of("a channel", CHANNELS)),
        "email_opt_in": _BOOL,
        "sms_opt_in": _BOOL,
        "attributes": _OBJECT,
    },
    "orders": {
        "id": _ID,
        "customer_id": _ID,
        "status": _rule(_one_of("an order status", ORDER_STATUSES), null="refused"),
        "placed_at": _INSTANT,
        "promised_at": _INSTANT,
        "delivered_at": _INSTANT,
        "total": _MONEY,
        "currency": _CURRENCY,
        "carrier": _TEXT,
        "tracking_url": _URL,
        "attributes": _OBJECT,
    },
    "checkouts": {
        "id": _ID,
        "customer_id": _ID,
        "started_at": _INSTANT,
        "completed_at": _INSTANT,
        "cart_value": _MONEY,
        "currency": _CURRENCY,
        "items": _LIST,
        "recovery_url": _URL,
        "attributes": _OBJECT,
    },
    "survey_responses": {
        "id": _ID,
        "customer_id": _ID,
        "kind": _rule(_one_of("a survey kind", SURVEY_KINDS), null="refused"),
        "score": _rule(parse_score, parse_score_text),
        "comment": _TEXT,
        "responded_at": _INSTANT,
        "attributes": _OBJECT,
    },
}

# Each field's parser for JSON values (False) and for CSV cells (True), looked up once a field.
_PARSERS: dict[bool, dict[str, dict[str, Callable[[Any], Any]]]] = {
    from_text: {
        table: {name: rule.parse_text if from_text else rule.parse for name, rule in rules.items()}
        for table, rules in FIELDS.items()
    }
    for from_text in (False, True)
}

_REQUIRED_FIELDS = {
    table: tuple(name for name, rule in FIELDS[table].items() if rule.null == "missing") for table in TABLES
}


@cache
def defaults(table: str) -> dict[str, Any]:
    """What a new row of TABLE holds in the fields a record leaves out: the model's defaults."""
    model_fields = BY_NAME[table].model.model_fields
    values = {name: model_fields[name].get_default(call_default_factory=True) for name in FIELDS[table]}
    return {name: value for name, value in values.items() if name not in _REQUIRED_FIELDS[table]}


def unknown_field_problem(table: str, name: str) -> str:
    hint = did_you_mean(name, FIELDS[table]) if len(name) <= 64 else ""
    return f"unknown field {_shown(name, 68)}{hint}"


def validate_record(
    table: str, record: Mapping[str, Any], *, from_text: bool = False
) -> dict[str, Any] | list[str]:
    """One record for TABLE → its clean fields (only those it gives), or every problem it has.

    FROM_TEXT says the values are CSV cells: an empty cell is null and booleans, numbers and
    JSON fields are parsed from text. The customer's existence is not checked here (that takes
    the database): see `missing_customers`.
    """
    parsers = _PARSERS[from_text][table]
    clean: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in record.items():
        parse = parsers.get(name)
        if parse is None:
            problems.append(unknown_field_problem(table, str(name)))
            continue
        if value is None or (from_text and value == ""):
            rule = FIELDS[table][name]
            if rule.null == "missing":
                problems.append(f"{name} is missing")
            elif rule.null == "refused":
                problems.append(f"{name} cannot be empty")
            else:
                default = defaults(table)[name]
                # {} and [] are the caller's to change: a fresh one each time.
                clean[name] = copy.copy(default) if isinstance(default, (dict, list)) else default
            continue
        try:
            clean[name] = parse(value)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
        except (TypeError, OverflowError, RecursionError, LookupError) as exc:
            # A validator's library choked on a value no test foresaw: the value is wrong, not outreach.
            problems.append(f"{name}: cannot be read ({type(exc).__name__})")
    for name in _REQUIRED_FIELDS[table]:
        if name not in record:
            problems.append(f"{name} is missing")
    return problems if problems else clean


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

Format = Literal["jsonl", "csv"]
_FORMATS: dict[str, Format] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def file_format(path: PurePath) -> Format | None:
    """`jsonl` or `csv` from the file name (a trailing `.gz` is looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return _FORMATS.get(suffixes[-1]) if suffixes else None


def table_for_path(path: PurePath) -> str | None:
    """The table a file is named after: `orders.jsonl`, `orders.2026-01-31.csv.gz` → orders."""
    name = path.name.split(".", 1)[0]
    return name if name in FIELDS else None


@dataclass(frozen=True)
class FileReport:
    """What happened to one file: loaded whole, or rejected with its problems."""

    path: str
    table: str | None
    records: int
    bad_lines: int
    problems: tuple[Problem, ...]
    # Rows the load added; the other records updated a row (loaded before, or earlier in the file).
    new_rows: int | None = None

    @property
    def rejected(self) -> bool:
        return bool(self.problems)

    def summary(self) -> str:
        if not self.rejected:
            noun = "record" if self.records == 1 else "records"
            loaded = f"{self.path}: loaded {self.records:,} {noun} into {self.table}"
            if self.new_rows is None or self.new_rows >= self.records:
                return loaded
            updates = self.records - self.new_rows
            return (
                f"{loaded}: {self.new_rows:,} new {'row' if self.new_rows == 1 else 'rows'}, "
                f"{updates:,} {'update of a row' if updates == 1 else 'updates of rows'} loaded before "
                "or earlier in this file (the later record wins)"
            )
        if self.bad_lines == 0:
            return f"{self.path}: nothing was loaded"
        lines = "bad line" if self.bad_lines == 1 else "bad lines"
        shown = sorted({p.line for p in self.problems if p.line is not None})
        more = f" (the first {len(shown):,} are listed)" if len(shown) < self.bad_lines else ""
        return f"{self.path}: {self.bad_lines:,} {lines}{more}; nothing was loaded from this file"


Progress = Callable[[int, int], None]
"""Told (bytes read, file size) after each batch."""

# A record as read from a file: its line, and its fields or why it could not be read.
Numbered = tuple[int, Mapping[str, Any] | Problem]


@dataclass
class _Reader:
    """A file opened for streaming, with a byte position for the progress bar."""

    raw: io.BufferedIOBase
    stream: io.BufferedIOBase
    size: int

    def position(self) -> int:
        return self.raw.tell()

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


def _open(path: Path) -> _Reader:
    raw = path.open("rb")
    size = path.stat().st_size
    stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw) if path.suffix.lower() == ".gz" else raw
    return _Reader(raw, stream, size)


# A line longer than this is not a record anyone meant to write (POST /events takes 16 MiB).
MAX_LINE_BYTES = 16 * 1024 * 1024


_UNREADABLE = (OSError, EOFError, zlib.error)


def _io_reason(exc: BaseException) -> str:
    """Why a file could not be read, in words (a corrupt or truncated .gz, a vanished file)."""
    if isinstance(exc, gzip.BadGzipFile):
        return f"not a gzip file ({exc})"
    if isinstance(exc, zlib.error):
        return "the compressed data is corrupt"
    if isinstance(exc, EOFError):
        return "the compressed file is cut short"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _peek(stream: Any, size: int) -> bytes:
    """The first SIZE bytes STREAM will give, without consuming them ("" if it cannot tell)."""
    peek = getattr(stream, "peek", None)
    try:
        return bytes(peek(size)[:size]) if callable(peek) else b""
    except _UNREADABLE:  # reading on reports it, at its line
        return b""


def read_jsonl(stream: IO[bytes], source: str) -> Iterator[Numbered]:
    """Each non-blank line of a JSONL stream as (line number, object or problem).

    orjson parses a line in a fifth of the time of the json module, but only strict RFC 8259
    JSON; a line it refuses, or one with a number it would bend (an integer beyond 64 bits, which
    it reads as a float), is parsed by the json module, which words the error. What only the
    json module accepts (huge integers, 1e400, lone surrogates, deep nesting) is then refused by
    the validation of each field; NaN and Infinity are refused here.
    """
    wide = encoding.wide_encoding(_peek(stream, 4))
    if wide is not None:
        yield 1, Problem(source, 1, None, encoding.wide_message(wide))
        return
    number = 0
    readline = stream.readline
    try:
        # readline with a limit (through C's partial: no Python call a line), so that a file
        # without line breaks is never read into memory whole.
        for number, raw in enumerate(iter(functools.partial(readline, MAX_LINE_BYTES + 1), b""), 1):
            if raw.isspace():
                continue
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while True:  # skip to the end of the overlong line
                    rest = readline(MAX_LINE_BYTES)
                    if not rest or rest.endswith(b"\n"):
                        break
                yield (
                    number,
                    Problem(source, number, None, f"the line is longer than {MAX_LINE_BYTES:,} bytes"),
                )
                continue
            try:
                value = read_json(raw)
            except ValueError:  # read again, for the problem worded and placed
                value = _lenient_line(raw, number, source)
            if isinstance(value, (dict, Problem)):
                yield number, value
            else:
                yield (
                    number,
                    Problem(source, number, None, f"must be a JSON object {{…}}, got {_kind(value)}"),
                )
    except _UNREADABLE as exc:  # a corrupt or truncated .gz: what was read so far is judged too
        yield number + 1, Problem(source, number + 1, None, f"cannot read on from here: {_io_reason(exc)}")


def _lenient_line(raw: bytes, number: int, source: str) -> Any:
    """A line orjson refused, read by the json module; or the Problem saying why it cannot be."""
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        found = encoding.not_utf8(raw, exc)
        return Problem(source, number, found.col, found.message)
    try:
        return loads_lenient(text)
    except json.JSONDecodeError as exc:
        return Problem(source, number, None, f"not valid JSON: {exc.msg} at column {exc.pos + 1}")
    except ValueError as exc:
        return Problem(source, number, None, f"not valid JSON: {exc}")


def _undecodable(cells: Sequence[str], header: Sequence[str] | None) -> str | None:
    """The problem of a CSV row whose bytes were not UTF-8 (decoded with surrogateescape), or None."""
    for index, cell in enumerate(cells):
        if cell.isascii():
            continue
        bad = SURROGATE.search(cell)
        if bad is not None:
            byte = ord(bad.group()) - 0xDC00  # surrogateescape keeps byte B as U+DC00 + B
            column = f"column {header[index]!r}: " if header is not None and index < len(header) else ""
            return column + encoding.byte_message(byte)
    return None


def read_csv(stream: IO[bytes], source: str, table: str) -> Iterator[Numbered]:
    """Each row of a CSV stream with a header line as (line number, cells by column or problem)."""
    wide = encoding.wide_encoding(_peek(stream, 4))
    if wide is not None:
        yield 1, Problem(source, 1, None, encoding.wide_message(wide))
        return
    # utf-8-sig: spreadsheets put a byte order mark in front of the header. Bytes that are not
    # UTF-8 are kept (as surrogates) so the row they are in is reported with the byte and column.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        yield 1, Problem(source, 1, None, f"cannot read the header: {exc}")
        return
    except _UNREADABLE as exc:
        yield 1, Problem(source, 1, None, f"cannot read the file: {_io_reason(exc)}")
        return
    if header is None:
        return
    undecodable = _undecodable(header, None)
    if undecodable is not None:
        yield 1, Problem(source, 1, None, f"header: {undecodable}")
        return
    header = [name.strip() for name in header]
    problems = [unknown_field_problem(table, name) for name in header if name not in FIELDS[table]]
    problems += [
        f"column {name!r} appears twice" for name in sorted({n for n in header if header.count(n) > 1})
    ]
    problems += [f"no {name!r} column" for name in _REQUIRED_FIELDS[table] if name not in header]
    if problems:
        for message in problems:
            yield 1, Problem(source, 1, None, f"header: {message}")
        return
    width = len(header)
    previous = reader.line_num
    try:
        for cells in reader:
            number, previous = previous + 1, reader.line_num
            if not cells:
                continue
            undecodable = _undecodable(cells, header)
            if undecodable is not None:
                yield number, Problem(source, number, None, undecodable)
                continue
            if len(cells) != width:
                yield number, Problem(source, number, None, f"has {len(cells)} cells, the header has {width}")
                continue
            yield number, dict(zip(header, cells, strict=False))
    except csv.Error as exc:
        yield previous + 1, Problem(source, previous + 1, None, f"cannot read CSV: {exc}")
    except _UNREADABLE as exc:
        yield (
            previous + 1,
            Problem(source, previous + 1, None, f"cannot read on from here: {_io_reason(exc)}"),
        )


# ---------------------------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------------------------


def state_table(name: str) -> Table:
    return named_table(name)


def _upsert_statement(
    dialect: str, table: str, given: frozenset[str], rows_from: Select[Any] | None = None
) -> Insert:
    """The upsert of clean rows of TABLE by id, of one row's parameters or of the rows of
    ROWS_FROM (`bulk`'s staged writes): GIVEN fields are written, the others kept."""
    target = state_table(table)
    statement: sqlite.Insert | postgresql.Insert
    if dialect == "sqlite":
        statement = sqlite.insert(target)
    elif dialect == "postgresql":
        statement = postgresql.insert(target)
    else:
        raise ConfigError(f"cannot load files into a {dialect} database: use SQLite or PostgreSQL")
    statement = bulk.rows_of(statement, target.c.keys(), rows_from)
    update = {name: statement.excluded[name] for name in sorted(given) if name != "id"}
    if not update:
        return statement.on_conflict_do_nothing(index_elements=["id"])
    return statement.on_conflict_do_update(index_elements=["id"], set_=update)


def _groups(rows: Sequence[Mapping[str, Any]]) -> list[tuple[frozenset[str], list[Mapping[str, Any]]]]:
    """ROWS split by the fields they give, in an order that keeps a later record for an id last.

    Without repeated ids the rows are grouped by fields (records with and without
    `delivered_at` alternate in a real feed; one statement per group is what makes loading
    fast). With repeated ids, consecutive runs keep the file's order exactly.
    """
    if len({row["id"] for row in rows}) == len(rows):
        grouped: dict[frozenset[str], list[Mapping[str, Any]]] = {}
        for row in rows:
            grouped.setdefault(frozenset(row), []).append(row)
        return list(grouped.items())
    runs: list[tuple[frozenset[str], list[Mapping[str, Any]]]] = []
    for row in rows:
        given = frozenset(row)
        if runs and runs[-1][0] == given:
            runs[-1][1].append(row)
        else:
            runs.append((given, [row]))
    return runs


@lru_cache(maxsize=256)
def _prepare(dialect: Dialect, table: str, given: frozenset[str]) -> bulk.Prepared:
    # The required fields, absent here, are in every row.
    prepared = bulk.prepare(
        dialect,
        _upsert_statement(dialect.name, table, given),
        state_table(table),
        defaults(table),
        staged=lambda rows_from: _upsert_statement(dialect.name, table, given, rows_from),
    )
    if sorted(name for name, _ in prepared.defaults) != sorted(state_table(table).c.keys()):
        raise AssertionError(
            f"upsert for {table} binds {prepared.defaults}, expected one parameter per column"
        )
    return prepared


def store_rows(
    connection: Connection,
    table: str,
    rows: Sequence[Mapping[str, Any]],
    at: datetime,
    *,
    keep_versions: bool,
    reach: set[str] | None = None,
) -> None:
    """Write clean ROWS to TABLE at AT, as every writer of customer state does: with KEEP_VERSIONS
    the stored version of each record they change is kept first (`history`); the contacts held
    back for want of a channel of each customer written (changed, with KEEP_VERSIONS) are due for
    a new decision (`ledger.reachable_again`): an address or a consent may have come. With REACH
    those customers are added to it instead, for the caller to mark just before it commits."""
    changed = history.keep_replaced(connection, table, rows, at) if keep_versions else None
    upsert_rows(connection, table, rows)
    if table == "customers":
        customers = [row["id"] for row in rows] if changed is None else changed
        if reach is None:
            ledger.reachable_again(connection, customers)
        else:
            reach.update(customers)


def upsert_rows(connection: Connection, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert or update ROWS (clean records) by id: given fields are written, the others kept.

    One compiled statement per set of given fields, the rows handed to the driver's
    executemany through the columns' bind processors (`bulk`).
    """
    for given, group in _groups(rows):
        _prepare(connection.dialect, table, given).execute(connection, group)


# The ids come as one parameter (a JSON array on SQLite, an array on PostgreSQL): an IN list
# of bound parameters costs SQLAlchemy about 8 µs an id to expand, against 1 µs for these.
_MISSING_CUSTOMERS = {
    "sqlite": text("SELECT value FROM json_each(:ids) WHERE value NOT IN (SELECT id FROM customers)"),
    "postgresql": text(
        "SELECT id FROM unnest(CAST(:ids AS text[])) AS wanted(id)"
        " WHERE NOT EXISTS (SELECT 1 FROM customers WHERE customers.id = wanted.id)"
    ),
}


def count_rows(connection: Connection, table: str) -> int:
    """How many rows TABLE holds, as this connection sees it."""
    target = state_table(table)
    return int(connection.execute(select(func.count()).select_from(target)).scalar_one())


def missing_customers(connection: Connection, ids: Iterable[str]) -> set[str]:
    """The ids among IDS with no customer row (as this connection sees it, uncommitted rows too)."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return set(connection.execute(_MISSING_CUSTOMERS["sqlite"], {"ids": json.dumps(wanted)}).scalars())
    if dialect == "postgresql":
        return set(connection.execute(_MISSING_CUSTOMERS["postgresql"], {"ids": wanted}).scalars())
    customers = state_table("customers")
    found = connection.execute(select(customers.c.id).where(customers.c.id.in_(wanted))).scalars()
    return set(wanted) - set(found)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


@dataclass
class _Tally:
    """Problems of one file, at most `limit` kept, every bad line counted."""

    limit: int
    problems: list[Problem] = field(default_factory=list)
    bad_lines: int = 0

    def add(self, line_problems: list[Problem]) -> None:
        self.bad_lines += 1
        for problem in line_problems:
            if self.limit and len(self.problems) >= self.limit:
                return
            self.problems.append(problem)


def load_records(
    connection: Connection,
    table: str,
    records: Iterable[Numbered],
    *,
    source: str,
    from_text: bool = False,
    max_problems: int = MAX_PROBLEMS,
    batch_size: int = BATCH_SIZE,
    after_batch: Callable[[], None] | None = None,
    now: datetime | None = None,
    keep_versions: bool = True,
) -> FileReport:
    """Validate and upsert numbered RECORDS into TABLE inside the caller's transaction.

    Writing stops at the first bad line; the caller rolls back when the report is rejected.
    MAX_PROBLEMS bounds the problems kept (0: keep all); bad lines are counted regardless.
    A stored record the load changes keeps its earlier version, replaced at NOW (default: the
    current time; `state.history`) — unless KEEP_VERSIONS is false, for a table that was empty
    before the load (a record given twice in it would keep a version that held for no time).
    """
    at = utcnow() if now is None else now
    tally = _Tally(max_problems)
    count = 0
    needs_customer = "customer_id" in FIELDS[table]
    batch: list[dict[str, Any]] = []
    reach: set[str] = set()  # the customers written whose reach may have changed
    pending: dict[int, list[Problem]] = {}
    # (line, customer id) of every record naming a well-formed customer id, bad records too,
    # so a line is told all that is wrong with it at once.
    references: list[tuple[int, str]] = []

    def flush() -> None:
        if references:
            missing = missing_customers(connection, (customer for _, customer in references))
            for line, customer in references:
                if customer in missing:
                    pending.setdefault(line, []).append(
                        Problem(
                            source,
                            line,
                            None,
                            f"customer_id: no customer {customer!r} "
                            "(load the customer first, e.g. customers.jsonl before this file)",
                        )
                    )
        for line in sorted(pending):
            tally.add(pending[line])
        if not tally.bad_lines and batch:
            store_rows(connection, table, batch, at, keep_versions=keep_versions, reach=reach)
        batch.clear()
        pending.clear()
        references.clear()
        if after_batch is not None:
            after_batch()

    for line, record in records:
        count += 1
        if isinstance(record, Problem):
            pending[line] = [record]
            continue
        result = validate_record(table, record, from_text=from_text)
        if isinstance(result, list):
            pending[line] = [Problem(source, line, None, message) for message in result]
            if needs_customer:
                with contextlib.suppress(ValueError):  # already reported as missing or malformed
                    references.append((line, parse_id(record.get("customer_id"))))
        else:
            batch.append(result)
            if needs_customer:
                references.append((line, result["customer_id"]))
        if len(batch) + len(pending) >= batch_size:
            flush()
    flush()
    if not tally.bad_lines:
        # Marked at the end: on PostgreSQL this takes the decision lock until the caller
        # commits, which must not stall every tick for the whole of a long load.
        ledger.reachable_again(connection, reach)
    return FileReport(source, table, count, tally.bad_lines, tuple(tally.problems))


def ingest_file(
    engine: Engine,
    path: str | Path,
    *,
    table: str | None = None,
    max_problems: int = MAX_PROBLEMS,
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> FileReport:
    """Load one JSONL or CSV file into TABLE (default: the table the file is named after), whole
    or not at all; NOW (default: the current time) stamps the versions it replaces."""
    source = str(path)
    path = Path(path)
    table = table or table_for_path(path)
    if table is None or table not in FIELDS:
        message = (
            f"unknown table {table!r} (one of {', '.join(TABLES)})"
            if table
            else "cannot tell which table this file is for: name it after its table "
            "(customers.jsonl, orders.csv, …) or pass --table"
        )
        return FileReport(source, table, 0, 0, (Problem(source, None, None, message),))
    kind = file_format(path)
    if kind is None:
        return FileReport(
            source,
            table,
            0,
            0,
            (Problem(source, None, None, "unknown format: name it .jsonl or .csv (optionally .gz)"),),
        )
    try:
        reader = _open(path)
    except OSError as exc:
        return FileReport(source, table, 0, 0, (Problem(source, None, None, f"cannot read: {exc.strerror}"),))
    try:
        records = (
            read_jsonl(cast(IO[bytes], reader.stream), source)
            if kind == "jsonl"
            else read_csv(cast(IO[bytes], reader.stream), source, table)
        )

        def tell() -> None:
            if progress is not None:
                progress(reader.position(), reader.size)

        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                rows_before = count_rows(connection, table)
                with collector_paused(), large_sqlite_cache(connection):
                    report = load_records(
                        connection,
                        table,
                        records,
                        source=source,
                        from_text=kind == "csv",
                        max_problems=max_problems,
                        batch_size=batch_size,
                        after_batch=tell,
                        now=now,
                        # A first load of a table has nothing to keep: no lookup per batch.
                        keep_versions=rows_before > 0,
                    )
            except BaseException:
                transaction.rollback()
                raise
            if report.rejected:
                transaction.rollback()
            else:
                report = replace(report, new_rows=count_rows(connection, table) - rows_before)
                note_change(connection, table, utcnow())
                transaction.commit()
        return report
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt .gz, a vanished file
        return FileReport(
            source, table, 0, 0, (Problem(source, None, None, f"cannot read: {_io_reason(exc)}"),)
        )
    finally:
        reader.close()


def load_order(paths: Sequence[str | Path], table: str | None = None) -> list[str | Path]:
    """PATHS with customers files first, so the other files can refer to their customers."""
    if table is not None:
        return list(paths)
    return sorted(paths, key=lambda p: table_for_path(PurePath(p)) != "customers")


def ingest_files(
    engine: Engine,
    paths: Sequence[str | Path],
    *,
    table: str | None = None,
    max_problems: int = MAX_PROBLEMS,
    progress: Callable[[str], Progress | None] | None = None,
    now: datetime | None = None,
) -> list[FileReport]:
    """Load each file in its own transaction (customers files first); one bad file spoils only itself.

    PROGRESS, given a path, returns the callback for that file's progress.
    """
    reports = []
    for path in load_order(paths, table):
        reports.append(
            ingest_file(
                engine,
                path,
                table=table,
                max_problems=max_problems,
                progress=progress(str(path)) if progress else None,
                now=now,
            )
        )
    return reports


def rejection(reports: Sequence[FileReport]) -> IngestError | None:
    """One error listing every problem of every rejected file, each file closed by a summary line."""
    rejected = [report for report in reports if report.rejected]
    if not rejected:
        return None
    lines: list[str] = []
    for report in rejected:
        lines.extend(problem.format() for problem in report.problems)
        lines.append(report.summary())
    return IngestError("\n".join(lines), problems=[p for r in rejected for p in r.problems])

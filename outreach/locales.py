"""Locale tags, normalised one way for ingest, templates, formatting and SMS: `ar_eg` → `ar-EG`."""

from __future__ import annotations

import functools

from babel import Locale, UnknownLocaleError


@functools.lru_cache(maxsize=1024)
def canonical(tag: str) -> str:
    """`ar_eg` → `ar-EG`: language lower case, region upper case, script title case (BCP 47)."""
    parts = [p for p in tag.replace("_", "-").split("-") if p]
    if not parts:
        return ""
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2 or part.isdigit():
            out.append(part.upper())
        elif len(part) == 4:
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def language(tag: str) -> str:
    """The language of a tag: `ar-EG` → `ar`."""
    return canonical(tag).split("-")[0]


@functools.lru_cache(maxsize=512)
def babel_locale(tag: str) -> Locale:
    """The Babel locale of a BCP 47 (`ar-EG`) or POSIX (`ar_EG`) tag; ValueError if Babel knows none."""
    try:
        return Locale.parse(canonical(tag).replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError(f"{tag!r} is not a known locale (e.g. en, ar, ar-EG)") from exc


def normalise(tag: str) -> str:
    """A known locale in canonical form (`ar_eg` → `ar-EG`); ValueError if Babel knows none."""
    return str(babel_locale(tag)).replace("_", "-")


def candidates(locale: str | None, default_locale: str) -> list[str]:
    """The locales to try for a customer, most specific first: `ar-EG` → `ar-EG`, `ar`, default."""
    found: list[str] = []
    parts = canonical(locale or "").split("-")
    while parts and parts[0]:
        found.append("-".join(parts))
        parts.pop()
    found.append(canonical(default_locale))
    return list(dict.fromkeys(found))

"""outreach counts SMS segments as Twilio's own calculator does, on every case it was asked about.

tests/data/sms_segments/cases.jsonl holds the calculator's answers (encoding, segments and the
characters that force UCS-2); generate.py beside it says how they were produced and re-runs it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from outreach.rendering.sms import GSM7, UCS2, count_segments, plain_spaces

CASES = Path(__file__).resolve().parents[2] / "data" / "sms_segments" / "cases.jsonl"


def _cases() -> list[dict[str, Any]]:
    header, *rows = CASES.read_text(encoding="utf-8").split("\n")
    cases = [json.loads(row) for row in rows if row]
    assert json.loads(header)["cases"] == len(cases)
    return cases


ORACLE = _cases()


def test_the_oracle_cases_cover_every_class_the_issue_names() -> None:
    classes = " ".join({case["class"] for case in ORACLE})
    for needed in (
        "ASCII",
        "extension",
        "Arabic letter + shadda",
        "flag",
        "keycap",
        "family emoji",
        "emoji with skin tone",
        "English time",
        "French money",
        "smart encoding on",
    ):
        assert needed in classes
    assert len(ORACLE) > 1000


# Emoji ZWJ sequences newer than Unicode 10 whose second part is not an old "glue after ZWJ" emoji
# (heart on fire, Unicode 13.1) are one character to Unicode's current rules, which outreach
# follows (the `regex` module), and two to the calculator's grapheme-splitter 1.0.4 (Unicode 10).
# They change the count only when the sequence straddles a segment's end and the rest of the
# message fills the next segment to within a few units: these two cases, where outreach says 3.
KNOWN_DIFFERENCES = {
    "UCS-2: heart on fire after ASCII text, 134 units": 3,
    "UCS-2: heart on fire after Arabic text, 134 units": 3,
}


def test_outreach_agrees_with_twilios_calculator_on_every_case_but_the_known_ones() -> None:
    disagreements: Counter[str] = Counter()
    first: dict[str, str] = {}
    for case in ORACLE:
        counted = count_segments(case["text"], smart_encoding=case["smart_encoding"])
        if KNOWN_DIFFERENCES.get(case["class"]) == counted.count == case["segments"] + 1:
            continue
        # The same code points force UCS-2 (grouped into clusters by each side's rules).
        forcing = set("".join(counted.ucs2_characters))
        if (counted.encoding, counted.count, forcing) != (
            case["encoding"],
            case["segments"],
            set("".join(case["ucs2"])),
        ):
            disagreements[case["class"]] += 1
            first.setdefault(case["class"], f"{case['text']!r}: {counted} != {case}")
    assert not disagreements, "\n".join(f"{n} × {c}: e.g. {first[c]}" for c, n in disagreements.items())


def test_the_known_differences_are_one_case_each_and_still_in_the_table() -> None:
    differing = Counter(
        case["class"]
        for case in ORACLE
        if count_segments(case["text"], smart_encoding=case["smart_encoding"]).count != case["segments"]
    )
    assert differing == dict.fromkeys(KNOWN_DIFFERENCES, 1)


def test_cluster_lists_match_the_calculator_wherever_both_follow_the_same_unicode_rules() -> None:
    for case in ORACLE:
        if "heart on fire" not in case["class"]:
            counted = count_segments(case["text"], smart_encoding=case["smart_encoding"])
            assert list(counted.ucs2_characters) == case["ucs2"], case["text"]


def test_a_cluster_across_the_67_unit_boundary_starts_the_next_segment() -> None:
    # 66 Arabic letters, then a letter with its shadda (2 units): 68 units do not fit a segment of
    # 67, and the shadda must not travel alone — Twilio bills 3 segments where a count of code
    # units alone says 2.
    text = "ب" * 66 + "بّ" + "ب" * 66
    assert count_segments(text).count == 3
    matching = [c for c in ORACLE if c["text"] == text]
    assert matching and matching[0]["segments"] == 3


@pytest.mark.parametrize("label", ["English time", "English date and time", "French money", "German money"])
def test_locale_formatting_alone_never_makes_an_sms_ucs2_once_its_spaces_are_plain(label: str) -> None:
    raw = [c for c in ORACLE if c["class"] == f"locale: {label}"]
    fixed = {c["text"]: c for c in ORACLE if c["class"] == f"locale: {label}, spaces made plain"}
    assert raw and fixed
    for case in raw:
        assert case["encoding"] == UCS2  # as Babel writes it: a no-break space somewhere
        plain = plain_spaces(case["text"])
        assert fixed[plain]["encoding"] == GSM7
        assert count_segments(plain).count == fixed[plain]["segments"] <= case["segments"]


def test_a_157_character_english_sms_with_a_time_is_one_segment_not_three() -> None:
    case = next(c for c in ORACLE if c["class"] == "locale: English time" and len(c["text"]) == 157)
    assert (case["encoding"], case["segments"]) == (UCS2, 3)
    assert (
        count_segments(plain_spaces(case["text"])).encoding,
        count_segments(plain_spaces(case["text"])).count,
    ) == (
        GSM7,
        1,
    )


def test_arabic_keeps_its_no_break_spaces() -> None:
    text = "طلبك بقيمة ١٬٢٤٩٫٥٠\u00a0ج.م.\u200f"
    assert plain_spaces(text) == text

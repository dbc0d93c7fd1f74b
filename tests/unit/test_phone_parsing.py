"""Phone numbers at ingest: written numbers are read, anything else is refused, never guessed."""

from __future__ import annotations

import pytest

from outreach.state.ingest import parse_phone, validate_record


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+447911123456", "+447911123456"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("+44 (0) 20 7946 0958", "+442079460958"),
        ("+44.20.7946.0958", "+442079460958"),
        ("＋447911123456", "+447911123456"),
        ("+٤٤٧٩١١١٢٣٤٥٦", "+447911123456"),
    ],
)
def test_a_number_written_with_spaces_separators_or_other_digits_is_stored_in_e164(
    text: str, expected: str
) -> None:
    assert parse_phone(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("+4930123456 (mobile)", "has letters in it: write the number in digits only"),
        ("+1 800 FLOWERS", "has letters in it: write the number in digits only"),
        ("tel:+447911123456", "has letters in it"),
        ("+44 20 7946 0958 ext. 123", "has an extension, which no SMS can reach: give the number alone"),
        ("+44 20 7946 0958 x123", "has an extension"),
        ("+1-800-555-0100;ext=12", "has an extension"),
        ("+447911123456#12", "has an extension"),
        ("+447911123456 / 789", "has text besides the number: write the number alone"),
    ],
)
def test_letters_extensions_and_trailing_text_are_refused_with_what_to_do(text: str, says: str) -> None:
    """phonenumbers would read letters as keypad digits (`(mobile)` → 662453) and drop an extension."""
    with pytest.raises(ValueError) as raised:
        parse_phone(text)
    assert str(raised.value).startswith(f"{text!r} {says}")


def test_an_ingested_customer_with_a_note_in_the_phone_field_is_a_bad_line_not_a_made_up_number() -> None:
    problems = validate_record("customers", {"id": "c-1", "name": "Ada", "phone": "+4930123456 (mobile)"})
    assert problems == [
        "phone: '+4930123456 (mobile)' has letters in it: write the number in digits only, e.g. "
        "+447911123456 (letters are not read as keypad digits; a note such as '(mobile)' belongs in attributes)"
    ]

"""The templates folder is read whole: layout, front matter, locale fallback, every problem located."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach import locales
from outreach.rendering.loader import (
    KIND_EMAIL_HTML,
    KIND_EMAIL_TEXT,
    KIND_SHARED,
    KIND_SMS,
    load_catalog,
)
from tests.unit.rendering.builders import write_templates

EMAIL = '---\nsubject: "Your order {{ order.id }}"\n---\n<p>Hello</p>\n'


def load(tmp_path: Path, files: dict[str, str]):  # type: ignore[no-untyped-def]
    write_templates(tmp_path / "templates", files)
    return load_catalog(tmp_path / "templates", tmp_path)


@pytest.mark.parametrize(
    ("customer", "default", "expected"),
    [
        ("ar-EG", "en", ["ar-EG", "ar", "en"]),
        ("ar_eg", "en", ["ar-EG", "ar", "en"]),
        ("zh-Hant-TW", "en", ["zh-Hant-TW", "zh-Hant", "zh", "en"]),
        ("en", "en", ["en"]),
        ("", "en", ["en"]),
        (None, "ar", ["ar"]),
    ],
)
def test_locales_fall_back_from_region_to_language_to_the_default(
    customer: str | None, default: str, expected: list[str]
) -> None:
    assert locales.candidates(customer, default) == expected


def test_locale_tags_are_written_the_bcp47_way() -> None:
    assert [locales.canonical(t) for t in ("AR_eg", "en-gb", "sr-latn-RS")] == [
        "ar-EG",
        "en-GB",
        "sr-Latn-RS",
    ]


def test_each_file_is_known_by_template_channel_and_locale(tmp_path: Path) -> None:
    catalog, problems = load(
        tmp_path,
        {
            "late/email.en.html": EMAIL,
            "late/email.en.txt": "Hello\n",
            "late/sms.ar_EG.txt": "مرحبا\n",
            "_layout/email.en.html": "<html></html>\n",
            "README.md": "notes beside the templates are ignored\n",
        },
    )
    assert problems == []
    kinds = {(f.template, f.kind, f.locale) for f in catalog.files.values()}
    assert kinds == {
        ("late", KIND_EMAIL_HTML, "en"),
        ("late", KIND_EMAIL_TEXT, "en"),
        ("late", KIND_SMS, "ar-EG"),
        ("_layout", KIND_SHARED, None),
    }
    assert catalog.templates == ["late"]


def test_the_customer_gets_their_region_then_their_language_then_the_default(tmp_path: Path) -> None:
    catalog, _ = load(
        tmp_path, {"late/sms.en.txt": "en", "late/sms.ar.txt": "ar", "late/sms.ar-SA.txt": "sa"}
    )
    found = {loc: catalog.resolve("late", "sms", loc, "en") for loc in ("ar-SA", "ar-EG", "fr", None)}
    assert {loc: f.locale if f else None for loc, f in found.items()} == {
        "ar-SA": "ar-SA",
        "ar-EG": "ar",
        "fr": "en",
        None: "en",
    }
    assert catalog.resolve("late", "email", "en", "en") is None


def test_front_matter_gives_the_subject_and_keeps_the_bodys_line_numbers(tmp_path: Path) -> None:
    catalog, _ = load(tmp_path, {"late/email.en.html": EMAIL})
    f = catalog.files["late/email.en.html"]
    assert f.subject == "Your order {{ order.id }}"
    assert (f.subject_line, f.subject_col) == (2, 11)
    assert f.body.splitlines()[3] == "<p>Hello</p>"  # still line 4, as in the file


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("<p>Hello</p>\n", 1, "email HTML must begin with front matter"),
        ("---\nsubject: Hi\n<p>Hello</p>\n", 1, "front matter is not closed"),
        ("---\nsubject: {{ order.id }} is late\n---\n", 2, "put the subject in quotes"),
        ("---\n- a list\n---\n", 2, "front matter must be keys and values"),
        ("---\ntitle: Hi\n---\n", 2, "unknown front matter key 'title'"),
        ("---\nsubjct: Hi\n---\n", 2, "did you mean 'subject'"),
        ("---\nsubject: 42\n---\n", 2, "subject must be text"),
        ("---\nsubject: '  '\n---\n", 2, "the subject is empty"),
        ("---\nfrom: x\n---\n", 2, "unknown front matter key"),
        ("---\n---\n<p>Hi</p>\n", 2, "front matter must be keys and values"),
    ],
)
def test_front_matter_mistakes_are_reported_with_their_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    _, problems = load(tmp_path, {"late/email.en.html": text})
    assert [(p.file, p.line) for p in problems] == [("templates/late/email.en.html", line)]
    assert message in problems[0].message


def test_misnamed_files_and_orphan_text_parts_are_reported(tmp_path: Path) -> None:
    _, problems = load(
        tmp_path,
        {
            "late/emial.en.html": "x",
            "late/sms.en.html": "x",
            "late/email.fr.txt": "x",
            "late/nested/sms.en.txt": "x",
            "late/sms.xx-QQ.txt": "x",
        },
    )
    messages = {p.file: p.message for p in problems}
    assert "template files are email.LOCALE.html" in messages["templates/late/emial.en.html"]
    assert "rename it to sms.en.txt" in messages["templates/late/sms.en.html"]
    assert "add email.fr.html beside it" in messages["templates/late/email.fr.txt"]
    assert "template files are" in messages["templates/late/nested/sms.en.txt"]
    assert "unknown locale 'xx-QQ' in the file name" in messages["templates/late/sms.xx-QQ.txt"]


def test_files_that_are_not_utf8_or_too_large_are_reported(tmp_path: Path) -> None:
    root = write_templates(tmp_path / "templates", {"late/sms.en.txt": "x"})
    (root / "late" / "sms.en.txt").write_bytes(b"caf\xe9\n")
    (root / "late" / "sms.ar.txt").write_bytes(b"a" * 70_000)
    _, problems = load_catalog(root, tmp_path)
    assert [(p.line, p.col, p.message.split(":")[0]) for p in problems] == [
        (None, None, "the file is 70000 bytes, more than a template may be (65536)"),
        (1, 4, "byte 0xE9 is not UTF-8 (the file looks like Latin-1 or Windows-1252)"),
    ]


def test_a_missing_templates_folder_is_a_problem_not_an_empty_set(tmp_path: Path) -> None:
    _, problems = load_catalog(tmp_path / "nowhere", tmp_path)
    assert "the templates folder does not exist" in problems[0].message

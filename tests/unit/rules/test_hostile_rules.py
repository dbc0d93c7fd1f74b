"""Hostile rules files: every one is a located problem, never a traceback, never a silent drop."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.rules.loader import check_rules
from tests.hostile import BASE, RULES_CASES, RulesCase


def _check(directory: Path) -> list[str]:
    _rules, problems = check_rules(directory, template_exists=lambda name: True)
    return [p.format() for p in problems]


@pytest.mark.parametrize("case", RULES_CASES, ids=[c.name for c in RULES_CASES])
def test_a_hostile_rules_file_is_a_located_problem(tmp_path: Path, case: RulesCase) -> None:
    """The file's problem names the file and, where it has one, the line."""
    (tmp_path / "x.yaml").write_bytes(case.content)
    _rules, problems = check_rules(tmp_path, template_exists=lambda name: True)
    found = [p for p in problems if case.expect in p.message]
    assert found, [p.format() for p in problems]
    assert all(p.file == str(tmp_path / "x.yaml") for p in found)
    if case.line is not None:
        assert case.line in [p.line for p in found], [p.format() for p in found]


def test_a_folder_named_like_a_rules_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").mkdir()
    (tmp_path / "y.yaml").write_bytes(BASE + b"    when: order.total > 1\n")
    rules, problems = check_rules(tmp_path, template_exists=lambda name: True)
    assert [p.format() for p in problems] == [
        f"{tmp_path / 'x.yaml'}: is a folder, not a file: rename it or move it out of the way"
    ]
    assert rules.names() == ["a"]


def test_a_long_flat_chain_of_and_or_terms_is_a_valid_condition(tmp_path: Path) -> None:
    """Hundreds of terms joined by `and` and `or` are not nesting: they load and evaluate."""
    terms = " and ".join(f"order.total != {n}" for n in range(400)) + " or order.total > 5"
    (tmp_path / "x.yaml").write_bytes(BASE + f"    when: {terms}\n".encode())
    rules, problems = check_rules(tmp_path, template_exists=lambda name: True)
    assert problems == []
    from datetime import UTC, datetime

    from outreach.rules.evaluate import condition_holds

    rule = rules.get("a")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert condition_holds(rule.condition, {"order": {"total": 1000.0}, "customer": {}}, now) is True
    assert condition_holds(rule.condition, {"order": {"total": 3.0}, "customer": {}}, now) is False


def test_a_long_source_line_is_shown_around_the_caret(tmp_path: Path) -> None:
    """A problem deep inside a very long line shows a window of it, with the caret under the mistake."""
    (tmp_path / "x.yaml").write_bytes(
        BASE + b"    when: " + b"order.total > 1 and " * 200 + b"order.totl > 1\n"
    )
    _header, source, caret = _check(tmp_path)[0].splitlines()
    assert len(source) < 120
    assert source[caret.index("^") :].startswith("totl")

"""Every mistake the `when` language reports, from a table of bad expressions with their messages.

tests/data/when_bad.yaml holds, like Prometheus's model/rulefmt/testdata/*.bad.yaml, each bad
expression with the exact message it must give and the column its caret points at.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import yaml

from outreach.rules import expressions
from outreach.rules.expressions import ExpressionProblems, compile_expression

TABLE = Path(__file__).resolve().parents[2] / "data" / "when_bad.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(TABLE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=[case["when"] for case in CASES])
def test_a_bad_expression_gives_its_message_at_its_column(case: dict[str, Any]) -> None:
    with pytest.raises(ExpressionProblems) as raised:
        compile_expression(case["when"], case["about"])
    assert [(p.offset + 1, p.message) for p in raised.value.problems] == [(case["col"], case["error"])]


def _reports_in_source() -> set[int]:
    """The lines of expressions.py where the analyser reports a mistake (`self.fail(…)`)."""
    tree = ast.parse(Path(expressions.__file__).read_text(encoding="utf-8"))
    return {
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "fail"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "self"
    }


def test_the_table_reaches_every_mistake_the_analyser_can_report() -> None:
    """A new message in expressions.py without a case in when_bad.yaml fails here."""
    reached: set[int] = set()
    fail_code = expressions._Analyser.fail.__code__

    def watch(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code is fail_code and frame.f_back is not None:
            reached.add(frame.f_back.f_lineno)

    sys.setprofile(watch)
    try:
        for case in CASES:
            with pytest.raises(ExpressionProblems):
                compile_expression(case["when"], case["about"])
    finally:
        sys.setprofile(None)
    missing = _reports_in_source() - reached
    assert not missing, f"no case in {TABLE.name} reaches expressions.py lines {sorted(missing)}"


def test_several_mistakes_in_one_expression_are_all_reported() -> None:
    with pytest.raises(ExpressionProblems) as raised:
        compile_expression('order.stauts == "x" and order.total == "y"', "order")
    assert [p.message for p in raised.value.problems] == [
        "unknown field 'order.stauts' (did you mean 'status'?)",
        "cannot compare a number with a string",
    ]

"""`outreach test-rules`: rule unit tests kept beside the rules, run like code review checks."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from outreach.cli import cli

REPO = Path(__file__).resolve().parents[2]


def _invoke(rules: Path, tmp_path: Path) -> tuple[int, str]:
    env = {
        "OUTREACH_PATHS__RULES": str(rules),
        "OUTREACH_PATHS__TEMPLATES": str(REPO / "templates"),
        "OUTREACH_DATABASE__URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    result = CliRunner().invoke(cli, ["test-rules"], env=env)
    return result.exit_code, result.output


def test_the_shipped_rule_tests_pass(tmp_path: Path) -> None:
    """Every case in rules/tests/ passes against the shipped rules."""
    code, output = _invoke(REPO / "rules", tmp_path)
    assert code == 0, output
    assert "7 passed, 0 failed" in output


def test_a_wrong_expectation_fails_with_exit_code_1(tmp_path: Path) -> None:
    """A case whose expectation the rule contradicts is reported as FAIL and the command exits 1."""
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    case = rules / "tests" / "canonical.yaml"
    case.write_text(
        case.read_text(encoding="utf-8").replace("expect: match", "expect: no match", 1), encoding="utf-8"
    )
    code, output = _invoke(rules, tmp_path)
    assert code == 1
    assert (
        "FAIL a parcel promised two days ago and not delivered is late: expected no match, got match"
        in output
    )

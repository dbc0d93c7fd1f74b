"""`outreach test-rules`: rule unit tests kept beside the rules, run through the real tick over a
timeline of records, reported the way promtool reports rule tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner, Result

from outreach.cli import cli

REPO = Path(__file__).resolve().parents[2]


def _invoke(rules: Path, tmp_path: Path, *args: str) -> Result:
    env = {
        "OUTREACH_PATHS__RULES": str(rules),
        "OUTREACH_PATHS__TEMPLATES": str(REPO / "templates"),
        "OUTREACH_DATABASE__URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    return CliRunner().invoke(cli, ["test-rules", *args], env=env)


def _shipped_count() -> int:
    """How many tests rules/tests/ ships."""
    return len(
        yaml.safe_load((REPO / "rules" / "tests" / "canonical.yaml").read_text(encoding="utf-8"))["tests"]
    )


def _rules_with_tests(tmp_path: Path, tests: str) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(REPO / "rules", rules)
    (rules / "tests" / "canonical.yaml").write_text(tests, encoding="utf-8")
    return rules


def test_the_shipped_rule_tests_pass(tmp_path: Path) -> None:
    """Every test in rules/tests/ passes against the shipped rules and templates."""
    result = _invoke(REPO / "rules", tmp_path)
    assert result.exit_code == 0, result.output
    assert f"{_shipped_count()} passed, 0 failed" in result.output


def test_the_shipped_rule_tests_use_timelines_and_decisions(tmp_path: Path) -> None:
    """They show each feature: quiet hours, a cap won by priority, a contact cancelled by new records."""
    text = (REPO / "rules" / "tests" / "canonical.yaml").read_text(encoding="utf-8")
    assert "timeline:" in text and "decision: deferred" in text and "decision: skipped" in text
    assert "sent: false" in text and "text:" in text


def test_a_wrong_expectation_fails_with_exit_code_1(tmp_path: Path) -> None:
    """A case whose expectation the rule contradicts is reported as FAIL and the command exits 1."""
    shipped = (REPO / "rules" / "tests" / "canonical.yaml").read_text(encoding="utf-8")
    rules = _rules_with_tests(tmp_path, shipped.replace("expect: match", "expect: no match", 1))
    result = _invoke(rules, tmp_path)
    assert result.exit_code == 1
    assert "FAIL a parcel promised two days ago and not delivered is late" in result.output
    assert "exp: match=false" in result.output and "got: match=true" in result.output
    assert f"{_shipped_count() - 1} passed, 1 failed" in result.output


TIMELINE = """\
tests:
  - name: a late parcel at night waits for the morning
    rule: late-delivery
    settings: {quiet_hours: "QUIET"}
    records:
      customers: [{id: c-1, phone: "+447911123456", sms_opt_in: true, timezone: Europe/London}]
      orders: [{id: o-1, status: shipped, promised_at: 2026-11-22T12:00:00Z}]
    timeline:
      - at: 2026-11-23T22:00:00Z
        expect: [{decision: deferred, send_at: 2026-11-24T09:00:00Z, sent: false}]
"""


def test_a_failing_timeline_says_which_instant_and_contact_with_expected_and_got(tmp_path: Path) -> None:
    """With quiet hours off the parcel is texted at once: the test fails, promtool-style."""
    assert (
        _invoke(_rules_with_tests(tmp_path, TIMELINE.replace("QUIET", "21:00-09:00")), tmp_path).exit_code
        == 0
    )
    result = _invoke(_rules_with_tests(tmp_path / "off", TIMELINE.replace("QUIET", "off")), tmp_path)
    assert result.exit_code == 1
    assert "FAIL a late parcel at night waits for the morning (" in result.output
    assert "at 2026-11-23T22:00:00Z, late-delivery o-1:" in result.output
    assert "exp: decision=deferred send_at=2026-11-24T09:00:00Z sent=false" in result.output
    assert "got: decision=send send_at=2026-11-23T22:00:00Z sent=true" in result.output


def test_json_output_is_one_document_with_every_test_and_failure(tmp_path: Path) -> None:
    result = _invoke(_rules_with_tests(tmp_path, TIMELINE.replace("QUIET", "off")), tmp_path, "--json")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert (document["passed"], document["failed"], document["problems"]) == (0, 1, [])
    [test] = document["tests"]
    assert test["name"] == "a late parcel at night waits for the morning" and test["passed"] is False
    [failure] = test["failures"]
    assert failure["at"] == "2026-11-23T22:00:00Z" and failure["entity"] == "o-1"
    assert failure["expected"]["decision"] == "deferred" and failure["got"]["decision"] == "send"


def test_a_typo_in_a_test_file_is_an_error_with_its_line_not_a_vacuous_pass(tmp_path: Path) -> None:
    """`promised_att` used to be ignored, the order never late and `no match` passing."""
    typo = """\
tests:
  - name: a parcel without a promise is not late
    rule: late-delivery
    now: 2026-11-24T12:00:00Z
    customer: {id: c-1}
    order: {id: o-1, status: shipped, promised_att: 2026-11-22T12:00:00Z}
    expect: no match
"""
    result = _invoke(_rules_with_tests(tmp_path, typo), tmp_path)
    assert result.exit_code == 1
    assert (
        "canonical.yaml:6:39: test \"a parcel without a promise is not late\": unknown field 'promised_att'"
        in result.output
    )
    assert "(did you mean 'promised_at'?)" in result.output
    assert "0 passed, 0 failed, 1 problem(s) in the test files" in result.output


def test_the_shipped_timeline_tests_fail_when_what_they_rely_on_is_taken_away(tmp_path: Path) -> None:
    """Not vacuous: without the overnight delivery the text goes out; without quiet hours it is
    not deferred; with room for two messages the late parcel is not skipped."""
    shipped = (REPO / "rules" / "tests" / "canonical.yaml").read_text(encoding="utf-8")
    no_arrival = shipped.replace(
        "orders: [{id: o-1, status: delivered, delivered_at: 2026-11-24T07:30:00Z}]", "orders: []"
    )
    no_quiet = shipped.replace('settings: {quiet_hours: "21:00-09:00"}', 'settings: {quiet_hours: "off"}')
    roomy = shipped.replace("settings: {max_per_day: 1}", "settings: {max_per_day: 2}")
    for name, text, words in [
        ("arrival", no_arrival, "exp: match=false decision=none sent=false"),
        ("quiet", no_quiet, "got: decision=send channel=sms send_at=2026-11-23T22:00:00Z sent=true"),
        ("cap", roomy, "got: decision=send"),
    ]:
        assert text != shipped, name
        result = _invoke(_rules_with_tests(tmp_path / name, text), tmp_path)
        assert result.exit_code == 1 and f"{_shipped_count() - 1} passed, 1 failed" in result.output, (
            result.output
        )
        assert words in result.output, result.output


def test_the_readme_example_of_a_timeline_test_passes(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Rule tests") :]
    example = section[
        section.index("```yaml\n") + len("```yaml\n") : section.index("```\n", section.index("```yaml"))
    ]
    result = _invoke(_rules_with_tests(tmp_path, example), tmp_path)
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.output

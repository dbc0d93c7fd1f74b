"""What `outreach check` says about journeys — steps, group_wait and inhibits — in the shipped
rules with one edit: each problem at its FILE:LINE:COL with the line and a caret, a did-you-mean
where a name is misspelt, and exit code 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from outreach.cli import cli
from tests.integration.test_check_gate import workspace


@dataclass(frozen=True)
class Located:
    """A problem expected at the line holding LINE_TEXT, its caret under AT (the first AT on it)."""

    line_text: str
    at: str
    rule: str
    message: str


@dataclass(frozen=True)
class Case:
    name: str
    edits: tuple[tuple[str, str], ...]  # (old, new) in rules/canonical.yaml, each found once
    expect: tuple[Located, ...]


def _after(anchor: str, *lines: str) -> tuple[str, str]:
    """An edit adding LINES after the line ANCHOR."""
    return anchor, anchor + "".join(f"\n{line}" for line in lines)


INHIBIT_LATE_DELIVERY = _after(
    "    goal_window: 3d", "    inhibits:", "      - rule: late-delivery", "        for: 1d"
)
CASES = (
    Case(
        "an inhibition cycle of two rules",
        (INHIBIT_LATE_DELIVERY,),
        (
            Located(
                "- rule: stalled-checkout",
                "stalled-checkout",
                "late-delivery",
                "inhibitions form a cycle (late-delivery inhibits stalled-checkout inhibits late-delivery): "
                "each would silence the other; keep the inhibition in one direction",
            ),
        ),
    ),
    Case(
        "an inhibition cycle of three rules",
        (
            _after(
                "    goal_window: 3d", "    inhibits:", "      - rule: detractor-follow-up", "        for: 1d"
            ),
            _after("    priority: 30", "    inhibits:", "      - rule: late-delivery", "        for: 1d"),
        ),
        (
            Located(
                "- rule: late-delivery",
                "late-delivery",
                "detractor-follow-up",
                "inhibitions form a cycle (detractor-follow-up inhibits late-delivery inhibits stalled-checkout "
                "inhibits detractor-follow-up): each would silence the other; keep the inhibition in one direction",
            ),
        ),
    ),
    Case(
        "a rule inhibiting itself",
        (("      - rule: stalled-checkout ", "      - rule: late-delivery    "),),
        (
            Located(
                "- rule: late-delivery",
                "late-delivery",
                "late-delivery",
                "a rule cannot inhibit itself (use cooldown)",
            ),
        ),
    ),
    Case(
        "a misspelt inhibited rule",
        (("      - rule: stalled-checkout ", "      - rule: stalled-chekout  "),),
        (
            Located(
                "- rule: stalled-chekout",
                "stalled-chekout",
                "late-delivery",
                "inhibits unknown rule 'stalled-chekout' (did you mean 'stalled-checkout'?)",
            ),
        ),
    ),
    Case(
        "a misspelt field of an inhibition",
        (("        for: 2d", "        fro: 2d"),),
        (
            Located(
                "- rule: stalled-checkout",
                "rule",
                "late-delivery",
                "'inhibits' entry: missing required field 'for'",
            ),
            Located(
                "fro: 2d", "fro", "late-delivery", "unknown field 'fro' (did you mean 'for'?) in 'inhibits'"
            ),
        ),
    ),
    Case(
        # The inhibited rule is refused for its own mistake; it is not also an unknown rule.
        "a misspelt step field",
        (("        template: stalled_checkout_reminder", "        templte: stalled_checkout_reminder"),),
        (
            Located("- after: 1d", "after", "stalled-checkout", "step 2: missing required field 'template'"),
            Located(
                "templte: stalled_checkout_reminder",
                "templte",
                "stalled-checkout",
                "unknown step field 'templte' (did you mean 'template'?)",
            ),
        ),
    ),
    Case(
        "a misspelt channels of a step",
        (("        channels: [sms]\n", "        chanels: [sms]\n"),),
        (
            Located(
                "chanels: [sms]",
                "chanels",
                "stalled-checkout",
                "unknown step field 'chanels' (did you mean 'channels'?)",
            ),
        ),
    ),
    Case(
        "a bad duration in after",
        (("      - after: 1d", "      - after: 1x"),),
        (
            Located(
                "- after: 1x",
                "1x",
                "stalled-checkout",
                "step 2: 'after': '1x' is not a duration: write a number and a unit (s, m, h, d, w), e.g. 15m, 2h, 1d",
            ),
        ),
    ),
    Case(
        "an after of 0s",
        (("      - after: 1d", "      - after: 0s"),),
        (Located("- after: 0s", "0s", "stalled-checkout", "step 2: 'after' must be longer than 0s"),),
    ),
    Case(
        "a bad duration in group_wait",
        (_after("    template: late_delivery", "    group_wait: 30 minutes"),),
        (
            Located(
                "group_wait: 30 minutes",
                "30 minutes",
                "late-delivery",
                "'30 minutes' is not a duration: write a number and a unit (s, m, h, d, w), e.g. 15m, 2h, 1d",
            ),
        ),
    ),
    Case(
        "a bad duration in for",
        (("        for: 2d", "        for: two days"),),
        (
            Located(
                "for: two days",
                "two days",
                "late-delivery",
                "'for': 'two days' is not a duration: write a number and a unit (s, m, h, d, w), e.g. 15m, 2h, 1d",
            ),
        ),
    ),
    Case(
        "a step template that does not exist",
        (("        template: stalled_checkout_reminder", "        template: stalled_checkout_remindr"),),
        (
            Located(
                "template: stalled_checkout_remindr",
                "stalled_checkout_remindr",
                "stalled-checkout",
                "unknown template 'stalled_checkout_remindr': no folder templates/stalled_checkout_remindr/",
            ),
        ),
    ),
)


def check(settings: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli, ["--settings", str(settings), "check"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stderr.splitlines()


def shown(path: Path, text: str, problem: Located) -> list[str]:
    """PROBLEM as check prints it: FILE:LINE:COL, the rule and message, the line and a caret."""
    [(number, line)] = [
        (n, line) for n, line in enumerate(text.splitlines(), start=1) if problem.line_text in line
    ]
    col = line.index(problem.at, line.index(problem.line_text)) + 1
    return [
        f'{path}:{number}:{col}: rule "{problem.rule}": {problem.message}',
        f"    {line.rstrip()}",
        "    " + " " * (col - 1) + "^",
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_check_refuses_a_journey_mistake_at_its_place(tmp_path: Path, case: Case) -> None:
    settings = workspace(tmp_path)
    rules = tmp_path / "rules" / "canonical.yaml"
    text = rules.read_text(encoding="utf-8")
    for old, new in case.edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    rules.write_text(text, encoding="utf-8")
    exit_code, printed = check(settings)
    expected = [line for problem in case.expect for line in shown(rules, text, problem)]
    assert printed == [*expected, f"{len(case.expect)} error(s), 0 warning(s)"]
    assert exit_code == 1


def test_a_step_template_missing_in_a_locale_is_named_with_its_step(tmp_path: Path) -> None:
    settings = workspace(tmp_path)
    (tmp_path / "templates" / "stalled_checkout_reminder" / "sms.ar.txt").unlink()
    exit_code, printed = check(settings)
    assert printed == [
        'templates/stalled_checkout_reminder/sms.ar.txt: rule "stalled-checkout": '
        "missing: step 2 of the rule sends sms and delivery.locales lists 'ar'",
        "1 error(s), 0 warning(s)",
    ]
    assert exit_code == 1


def test_a_step_sending_a_channel_its_template_lacks_names_each_missing_file(tmp_path: Path) -> None:
    settings = workspace(tmp_path)
    rules = tmp_path / "rules" / "canonical.yaml"
    text = rules.read_text(encoding="utf-8")
    rules.write_text(
        text.replace("        channels: [sms]\n", "        channels: [sms, email]\n"), encoding="utf-8"
    )
    exit_code, printed = check(settings)
    assert printed == [
        f'templates/stalled_checkout_reminder/email.{locale}.html: rule "stalled-checkout": '
        f"missing: step 2 of the rule sends email and delivery.locales lists '{locale}'"
        for locale in ("ar", "en")
    ] + ["2 error(s), 0 warning(s)"]
    assert exit_code == 1

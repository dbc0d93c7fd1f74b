"""Rules files: every mistake is reported at once, at its place, with what to do."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from outreach.errors import RulesError
from outreach.rules.loader import check_rules, load_rules

REPO = Path(__file__).resolve().parents[3]
BAD = REPO / "tests" / "data" / "rules_bad"


def _problems(directory: Path) -> list[str]:
    _rules, problems = check_rules(
        directory, template_exists=lambda name: name in {"late_delivery", "stalled_checkout"}
    )
    return [p.format().splitlines()[0] for p in problems]


def test_the_canonical_rules_load_with_their_fields() -> None:
    """The three shipped rules load, with defaults filled in from settings."""
    rules = load_rules(REPO / "rules", default_every=timedelta(minutes=30))
    assert rules.names() == ["late-delivery", "stalled-checkout", "detractor-follow-up"]
    late = rules.get("late-delivery")
    assert (late.about, late.channels, late.every, late.priority) == (
        "order",
        ("sms", "email"),
        timedelta(minutes=15),
        20,
    )
    assert rules.get("stalled-checkout").holdout == pytest.approx(0.10)
    assert rules.get("stalled-checkout").every == timedelta(minutes=30)
    assert rules.get("detractor-follow-up").escalate is True


@pytest.mark.parametrize(
    "expected",
    [
        "checkout.yaml:12:5: rule \"stalled-checkout\": unknown field 'priorty' (did you mean 'priority'?)",
        "checkout.yaml:5:50: rule \"stalled-checkout\": when: unknown field 'checkout.cart_valu' (did you mean 'cart_value'?)",
        "checkout.yaml:7:15: rule \"stalled-checkout\": unknown channel 'fax': expected email or sms",
        "checkout.yaml:9:12: rule \"stalled-checkout\": '15 minutes' is not a duration",
        "checkout.yaml:10:14: rule \"stalled-checkout\": 'holdout' must be a percentage",
        'checkout.yaml:11:18: rule "stalled-checkout": quiet_hours \'22:00-7:00\' must look like "21:00-09:00"',
        "checkout.yaml:14:11: rule \"Bad_Name\": name 'Bad_Name' must be kebab-case",
        "checkout.yaml:15:12: rule \"Bad_Name\": unknown about 'shipment'",
        'checkout.yaml:22:101: rule "detractor": when: the expression ends too early; expected a value',
        "checkout.yaml:24:15: rule \"detractor\": unknown template 'no_such_template'",
        "checkout.yaml:25:15: rule \"detractor\": 'escalate' must be true or false",
    ],
)
def test_every_planted_mistake_is_reported_with_its_place(expected: str) -> None:
    """Each mistake in the broken rules file is reported as FILE:LINE:COL with the rule's name."""
    assert any(line.endswith(expected) or expected in line for line in _problems(BAD)), _problems(BAD)


def test_all_problems_come_at_once() -> None:
    """One check reports every problem in the file, not the first one only."""
    assert len(_problems(BAD)) == 11


def test_a_problem_shows_the_source_line_and_a_caret_under_the_mistake() -> None:
    """The caret stands under the misspelt field inside a folded `when` block."""
    _rules, problems = check_rules(BAD, template_exists=lambda name: True)
    text = next(p.format() for p in problems if "cart_valu" in p.message)
    _header, source, caret = text.splitlines()
    assert source.strip().startswith("checkout.completed_at is null")
    assert source[caret.index("^") :].startswith("cart_valu > 0")


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("", "the file is empty"),
        ("rule:\n  - name: x\n", "unknown top-level key 'rule' (did you mean 'rules'?)"),
        ("rules: {name: x}\n", "`rules:` must be a list"),
        ("rules:\n  - name: a\n    about: order\n", "missing required field 'when'"),
        ("rules: [\n", "not valid YAML"),
        (
            "rules:\n  - {name: a, about: order, when: 'order.status == \"x\"', channels: [email], template: late_delivery}\n"
            "  - {name: a, about: order, when: 'order.status == \"y\"', channels: [email], template: late_delivery}\n",
            "a rule with this name is already defined",
        ),
        (
            "rules:\n  - {name: a, about: customer, when: 'order.status == \"x\"', channels: [email], template: late_delivery}\n",
            "unknown name 'order': a rule about customer can use customer.…",
        ),
        (
            "rules:\n  - {name: a, about: order, when: 'order.total > 1', channels: [email], template: late_delivery, goal_window: 2d}\n",
            "'goal_window' needs a 'goal'",
        ),
    ],
)
def test_malformed_files_get_a_clear_message(tmp_path: Path, yaml_text: str, message: str) -> None:
    """Structural mistakes in a rules file are explained, not crashed on."""
    (tmp_path / "rules.yaml").write_text(yaml_text, encoding="utf-8")
    problems = _problems(tmp_path)
    assert any(message in p for p in problems), problems


def test_load_rules_raises_one_error_listing_every_problem() -> None:
    """load_rules refuses a broken set as a whole, naming each problem."""
    with pytest.raises(RulesError) as caught:
        load_rules(BAD, template_exists=lambda name: True)
    assert len(caught.value.problems) == 10
    assert "priorty" in str(caught.value)


def test_an_unknown_rule_name_suggests_the_closest() -> None:
    """Asking for a rule that does not exist suggests the nearest name."""
    with pytest.raises(RulesError, match="did you mean 'late-delivery'"):
        load_rules(REPO / "rules").get("late-delivry")

"""`outreach check`: every problem in the rules files and the templates, in one list."""

from __future__ import annotations

from outreach.app import App
from outreach.errors import Problem
from outreach.rendering import RuleInfo, lint_templates
from outreach.rules.loader import RuleSet

# A grouped message is checked with this many records: most customers with several late orders
# have two or three at once; an SMS that fits three fits the common case.
GROUP_SIZE_CHECKED = 3


def check_all(app: App) -> tuple[RuleSet, list[Problem]]:
    """The valid rules, and the problems in the rules files then in the templates they use."""
    rules, problems = app.check_rules()
    return rules, problems + lint_templates(app.settings, rule_infos(rules))


def rule_infos(rules: RuleSet) -> list[RuleInfo]:
    """What lint checks for each template a rule sends: its own, and each follow-up step's."""
    infos: list[RuleInfo] = []
    for r in rules:
        of = r.journey_length
        size = GROUP_SIZE_CHECKED if r.group else 1
        infos.append(RuleInfo(r.name, r.about, r.channels, r.template, r.description, (1, of), size))
        infos.extend(
            RuleInfo(r.name, r.about, s.channels, s.template, r.description, (s.number, of)) for s in r.steps
        )
    return infos

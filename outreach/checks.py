"""`outreach check`: every problem in the rules files and the templates, in one list."""

from __future__ import annotations

from outreach.app import App
from outreach.errors import Problem
from outreach.rendering import RuleInfo, lint_templates
from outreach.rules.loader import RuleSet


def check_all(app: App) -> tuple[RuleSet, list[Problem]]:
    """The valid rules, and the problems in the rules files then in the templates they use."""
    rules, problems = app.check_rules()
    infos = [RuleInfo(r.name, r.about, r.channels, r.template, r.description) for r in rules]
    return rules, problems + lint_templates(app.settings, infos)

"""`outreach check`: every problem in the rules files and the templates, in one list."""

from __future__ import annotations

from outreach.app import App
from outreach.errors import Problem
from outreach.rendering import RuleInfo, lint_templates


def check_all(app: App) -> list[Problem]:
    """Problems in the rules files, then in the templates the rules use (errors and warnings)."""
    rules, problems = app.check_rules()
    infos = [RuleInfo(r.name, r.about, r.channels, r.template, r.description) for r in rules]
    return problems + lint_templates(app.settings, infos)

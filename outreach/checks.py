"""`outreach check`: every problem in the rules files and the templates, in one list."""

from __future__ import annotations

from outreach.app import App
from outreach.errors import Problem


def check_all(app: App) -> list[Problem]:
    """Problems in the rules files, then in the templates the rules use (errors and warnings)."""
    rules, problems = app.check_rules()
    try:
        from outreach.rendering import RuleInfo, lint_templates
    except ImportError:  # the rendering package is optional in partial installs
        return problems
    infos = [RuleInfo(r.name, r.about, r.channels, r.template, r.description) for r in rules]
    return problems + lint_templates(app.settings, infos)

"""`outreach check`, the one gate: every problem in the settings' rules and templates, in one list.

`check_all(app)` is what `outreach check` prints and what the daemon's reload must accept or
refuse: one function, so the two can never disagree. It reads the rules files, compiles the
templates once, lints the templates every valid rule uses (and the others), and returns the
valid rules, the renderer over the compiled templates and every problem. A set is good to run
when it has no errors (`Checked.ok`); warnings are shown, not refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from outreach.app import App
from outreach.errors import ConfigError, Problem
from outreach.rendering import Renderer, RuleInfo, lint_templates
from outreach.rendering.loader import sorted_problems
from outreach.rendering.renderer import compile_templates
from outreach.rules.loader import RuleSet


@dataclass(frozen=True)
class Checked:
    """The outcome of `check_all`: what is valid, and every problem (errors and warnings)."""

    rules: RuleSet  # the rules without problems of their own
    renderer: Renderer | None  # every template compiled; None when a template does not compile
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        """True when the set may run: no errors anywhere (then `renderer` is not None)."""
        return not self.errors and self.renderer is not None


def check_all(app: App) -> Checked:
    """The valid rules, the compiled templates and every problem: rules files first, then templates."""
    settings = app.settings
    rules, rule_problems = app.check_rules()
    compiled = compile_templates(settings)
    infos = [RuleInfo(r.name, r.about, r.channels, r.template, r.description) for r in rules]
    template_problems = lint_templates(settings, infos, compiled)
    renderer: Renderer | None = None
    if not compiled.errors:
        try:
            renderer = Renderer.from_compiled(settings, compiled)
        except ConfigError as exc:
            template_problems = sorted_problems(
                [*template_problems, Problem("settings", None, None, str(exc))]
            )
    return Checked(rules, renderer, (*rule_problems, *template_problems))

"""`outreach check`, the one gate: every problem in the settings' rules and templates, in one list.

`check_all(app)` is what `outreach check` prints and what the daemon's reload must accept or
refuse: one function, so the two can never disagree. It reads the rules files, compiles the
templates once, lints the templates every valid rule uses (and the others), and returns the
valid rules, the renderer over the compiled templates and every problem. A set is good to run
when it has no errors (`Checked.ok`); warnings are shown, not refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from outreach.app import App
from outreach.errors import ConfigError, Problem
from outreach.rendering import Renderer, RuleInfo, lint_templates
from outreach.rendering.loader import sorted_problems
from outreach.rendering.renderer import compile_templates
from outreach.rules.loader import RuleSet

# A grouped message is checked with this many records: most customers with several late orders
# have two or three at once; an SMS that fits three fits the common case.
GROUP_SIZE_CHECKED = 3


@dataclass(frozen=True)
class Checked:
    """The outcome of `check_all`: what is valid, and every problem (errors and warnings)."""

    rules_dir: Path
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

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rules_dir": str(self.rules_dir),
            "rules": self.rules.names(),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [problem_json(p) for p in self.problems],
        }


def check_all(app: App) -> Checked:
    """The valid rules, the compiled templates and every problem: rules files first, then
    templates. `outreach check` prints it; the daemon's reload runs exactly this and swaps the
    set in only when it is `ok`."""
    settings = app.settings
    rules, rule_problems = app.check_rules()
    compiled = compile_templates(settings)
    template_problems = lint_templates(settings, rule_infos(rules), compiled)
    renderer: Renderer | None = None
    if not compiled.errors:
        try:
            renderer = Renderer.from_compiled(settings, compiled)
        except ConfigError as exc:
            template_problems = sorted_problems(
                [*template_problems, Problem("settings", None, None, str(exc))]
            )
    return Checked(app.rules_dir, rules, renderer, (*rule_problems, *template_problems))


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


def problem_json(problem: Problem) -> dict[str, Any]:
    """A problem as `--json` prints it (`check`, `test-rules`, `ingest`)."""
    return {
        "file": problem.file,
        "line": problem.line,
        "col": problem.col,
        "rule": problem.rule,
        "severity": problem.severity,
        "message": problem.message,
    }

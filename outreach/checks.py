"""`outreach check`: every problem in the rules files and the templates, in one list."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class CheckResult:
    """What `outreach check` found: the valid rules and every problem (errors and warnings)."""

    rules_dir: Path
    rules: tuple[str, ...]
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rules_dir": str(self.rules_dir),
            "rules": list(self.rules),
            "errors": self.errors,
            "warnings": self.warnings,
            "problems": [problem_json(p) for p in self.problems],
        }


def check(app: App) -> CheckResult:
    """Every problem of the rules files and templates, with the names of the valid rules."""
    rules, problems = check_all(app)
    return CheckResult(app.rules_dir, tuple(rules.names()), tuple(problems))

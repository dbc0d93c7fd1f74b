"""`outreach test-rules`: unit tests for rules, kept beside them in `rules/tests/*.yaml`.

    tests:
      - name: a parcel two days late matches
        rule: late-delivery
        now: 2026-11-24T12:00:00Z
        customer: {id: c-1, timezone: Europe/London}
        order: {id: o-1, status: shipped, promised_at: 2026-11-22T09:00:00Z}
        expect: match            # or: no match

Each case evaluates the rule's condition on the given records with the same Python predicate
the dispatcher uses at send time (which property tests keep identical to the SQL). The files
are read like rules files (outreach.safe_yaml) and each record is validated like ingest's, so
a broken case is a located problem, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, SequenceNode

from outreach import safe_yaml
from outreach.clock import in_range, parse_instant
from outreach.errors import OutreachError, Problem, did_you_mean
from outreach.rules.evaluate import condition_holds
from outreach.rules.loader import RuleSet
from outreach.rules.schema import fields_of

CASE_FIELDS = {"name", "rule", "now", "customer", "order", "checkout", "survey", "expect"}
_TABLES = {"customer": "customers", "order": "orders", "checkout": "checkouts", "survey": "survey_responses"}


@dataclass(frozen=True)
class CaseResult:
    file: str
    name: str
    passed: bool
    message: str


def _record(entity: str, given: Any, customer_id: str) -> dict[str, Any]:
    """A record with every field of ENTITY (absent ones null), validated as ingest validates it."""
    from outreach.state.ingest import validate_record  # state imports rules: only when tests run

    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValueError(f"{entity} must be a mapping of fields, e.g. {entity}: {{id: x-1}}")
    defaults: dict[str, Any] = {"id": f"{entity}-1"}
    if entity != "customer":
        defaults["customer_id"] = customer_id
    clean = validate_record(_TABLES[entity], {**defaults, **{str(k): v for k, v in given.items()}})
    if isinstance(clean, list):
        raise ValueError(f"{entity}: " + "; ".join(clean))
    return {field_name: clean.get(field_name) for field_name in fields_of(entity)}


def _now(value: Any) -> datetime:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return in_range(value)
    if isinstance(value, str):
        return parse_instant(value)
    raise ValueError("now must be a time with an offset, e.g. now: 2026-11-24T12:00:00Z")


def _cases(path: Path) -> tuple[list[tuple[int | None, Any]], list[Problem]]:
    """The cases of one test file with their lines, or the problems that keep it from being read."""
    lines: list[str] = []
    try:
        text = safe_yaml.read_text(path, "a rule test file")
        lines = text.splitlines()
        root = safe_yaml.compose(text)
    except safe_yaml.YamlRefused as exc:
        where = exc.located
        source = lines[where.line - 1] if where.line and 0 < where.line <= len(lines) else None
        return [], [Problem(str(path), where.line, where.col, where.message, source_line=source)]
    if root is None:
        return [], []
    items: Node | None = None
    if isinstance(root, MappingNode):
        for key, value in root.value:
            if getattr(key, "value", None) == "tests":
                items = value
            else:
                name = str(getattr(key, "value", "?"))
                return [], [
                    Problem(
                        str(path),
                        key.start_mark.line + 1,
                        key.start_mark.column + 1,
                        f"unknown top-level key {name[:60]!r}{did_you_mean(name, ['tests'])}: a test file holds `tests:`",
                    )
                ]
    if not isinstance(items, SequenceNode):
        where = items if items is not None else root
        return [], [
            Problem(
                str(path),
                where.start_mark.line + 1,
                where.start_mark.column + 1,
                "expected a list `tests:` of cases (each starting with `- name: …`)",
            )
        ]
    cases: list[tuple[int | None, Any]] = []
    for item in items.value:
        line = item.start_mark.line + 1
        try:
            cases.append((line, safe_yaml.construct(item)))
        except safe_yaml.NotAValue as exc:
            return [], [Problem(str(path), line, None, f"cannot read this case: {exc}")]
    return cases, []


def run_rule_tests(directory: Path, rules: RuleSet) -> tuple[list[CaseResult], list[Problem]]:
    """Run every case under DIRECTORY/tests; results, and problems in the test files themselves."""
    results: list[CaseResult] = []
    problems: list[Problem] = []
    for path in sorted((directory / "tests").glob("*.yaml")):
        cases, unreadable = _cases(path)
        problems.extend(unreadable)
        for index, (line, case) in enumerate(cases, start=1):
            if not isinstance(case, dict):
                problems.append(Problem(str(path), line, None, f"case {index} must be a mapping of fields"))
                continue
            label = str(case.get("name") or f"case {index}")[:200]
            unknown = sorted(str(name) for name in case if name not in CASE_FIELDS)
            if unknown:
                problems.append(
                    Problem(
                        str(path),
                        line,
                        None,
                        f"test {label!r}: unknown field(s) "
                        + ", ".join(f"{name[:60]!r}{did_you_mean(name, CASE_FIELDS)}" for name in unknown),
                    )
                )
                continue
            try:
                rule = rules.get(str(case.get("rule")))
                now = _now(case.get("now"))
                expect = str(case.get("expect", "")).strip().lower()
                if expect not in ("match", "no match"):
                    raise ValueError("expect must be `match` or `no match`")
                customer = _record("customer", case.get("customer"), "")
                records = {"customer": customer}
                if rule.about != "customer":
                    records[rule.about] = _record(rule.about, case.get(rule.about), customer["id"])
            except (KeyError, ValueError, OutreachError) as exc:  # a broken case is reported, not crashed on
                problems.append(Problem(str(path), line, None, f"test {label!r}: {exc}"))
                continue
            holds = condition_holds(rule.condition, records, now)
            passed = holds == (expect == "match")
            message = f"expected {expect}, got {'match' if holds else 'no match'}"
            results.append(CaseResult(str(path), label, passed, message))
    return results, problems

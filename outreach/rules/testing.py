"""`outreach test-rules`: unit tests for rules, kept beside them in `rules/tests/*.yaml`.

    tests:
      - name: a parcel two days late matches
        rule: late-delivery
        now: 2026-11-24T12:00:00Z
        customer: {id: c-1, timezone: Europe/London}
        order: {id: o-1, status: shipped, promised_at: 2026-11-22T09:00:00Z}
        expect: match            # or: no match

Each case evaluates the rule's condition on the given records with the same Python predicate
the dispatcher uses at send time (which property tests keep identical to the SQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from outreach.clock import parse_instant
from outreach.errors import OutreachError, Problem
from outreach.rules.evaluate import condition_holds
from outreach.rules.loader import RuleSet
from outreach.rules.schema import Type, fields_of

CASE_FIELDS = {"name", "rule", "now", "customer", "order", "checkout", "survey", "expect"}


@dataclass(frozen=True)
class CaseResult:
    file: str
    name: str
    passed: bool
    message: str


def _record(entity: str, given: dict[str, Any]) -> dict[str, Any]:
    """A record with every field of ENTITY (absent ones null), instants parsed."""
    record: dict[str, Any] = {}
    for field_name, kind in fields_of(entity).items():
        value = given.get(field_name)
        if kind is Type.TIME and isinstance(value, (str, datetime)):
            value = parse_instant(str(value)) if isinstance(value, str) else value
        record[field_name] = value
    return record


def run_rule_tests(directory: Path, rules: RuleSet) -> tuple[list[CaseResult], list[Problem]]:
    """Run every case under DIRECTORY/tests; results, and problems in the test files themselves."""
    results: list[CaseResult] = []
    problems: list[Problem] = []
    for path in sorted((directory / "tests").glob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for index, case in enumerate(document.get("tests") or [], start=1):
            label = str(case.get("name") or f"case {index}")
            unknown = set(case) - CASE_FIELDS
            if unknown:
                problems.append(
                    Problem(
                        str(path),
                        None,
                        None,
                        f"test {label!r}: unknown field(s) {', '.join(sorted(unknown))}",
                    )
                )
                continue
            try:
                rule = rules.get(str(case.get("rule")))
                now = (
                    parse_instant(str(case["now"]))
                    if not isinstance(case.get("now"), datetime)
                    else case["now"]
                )
                expect = str(case.get("expect", "")).strip().lower()
                if expect not in ("match", "no match"):
                    raise ValueError("expect must be `match` or `no match`")
                records = {"customer": _record("customer", case.get("customer") or {})}
                if rule.about != "customer":
                    records[rule.about] = _record(rule.about, case.get(rule.about) or {})
            except (KeyError, ValueError, OutreachError) as exc:  # a broken case is reported, not crashed on
                problems.append(Problem(str(path), None, None, f"test {label!r}: {exc}"))
                continue
            holds = condition_holds(rule.condition, records, now)
            passed = holds == (expect == "match")
            message = f"expected {expect}, got {'match' if holds else 'no match'}"
            results.append(CaseResult(str(path), label, passed, message))
    return results, problems

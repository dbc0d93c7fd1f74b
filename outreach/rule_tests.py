"""`outreach test-rules`: unit tests for rules, kept beside them in `rules/tests/*.yaml`.

In the spirit of Prometheus's `promtool test rules` (alerts over a timeline of samples), a test
sets records at several instants and checks the contacts the real tick decides and sends:

    tests:
      - name: a late parcel at night waits for the morning
        rule: late-delivery                  # the rule the expectations are about (default)
        settings: {quiet_hours: "21:00-09:00", max_per_day: 1}   # optional delivery overrides
        records:                             # loaded before the first instant, as ingest loads them
          customers: [{id: c-1, timezone: Europe/London, phone: "+447911123456", sms_opt_in: true}]
          orders: [{id: o-1, status: shipped, promised_at: 2026-11-22T12:00:00Z}]
        timeline:
          - at: 2026-11-23T22:00:00Z
            expect:
              - {entity: o-1, decision: deferred, channel: sms, send_at: 2026-11-24T09:00:00Z}
          - at: 2026-11-24T09:00:00Z
            records: {orders: [{id: o-1, status: delivered, delivered_at: 2026-11-24T08:30:00Z}]}
            expect:
              - {entity: o-1, decision: none, sent: false}

The short form of earlier versions still works: `now`, the records as `customer:` and
`order:`/`checkout:`/`survey:` mappings, and `expect: match` or `expect: no match`.

An expectation is about one rule (default: the test's) and one record (`entity`, default: the
test's only record of the rule's kind) and checks any of: `match` (the condition holds),
`decision` (send, deferred, skipped, suppressed, holdout, expired, or none: no new decision at
this instant — no match, or decided before), `channel`, `send_at`, `reason` (text it contains),
`sent` (a message for it left at this instant) and `text` (text in that message).

Each test runs the real pipeline, not a copy of it: a scratch SQLite database, the records
validated by ingest and upserted like `outreach ingest` does, `outreach.tick.run_tick` at each
instant with every enabled rule (or those the test lists in `rules:`; a rule an expectation is
about ticks too, enabled or not), and the outbox channel writing to a
scratch file. Expectations read only the tick's decisions and the outbox lines.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from outreach import safe_yaml
from outreach.app import App
from outreach.errors import Problem, RulesError, TemplateError, did_you_mean
from outreach.policy import Decision
from outreach.quiet_hours import QuietHours
from outreach.rules.loader import RuleSet
from outreach.settings import DatabaseSettings, DeliverySettings, EscalationSettings, Settings
from outreach.state import ingest
from outreach.state.models import BY_ABOUT, TABLE_NAMES
from outreach.vocabulary import CHANNELS, About

DECISIONS = (
    "send",
    "deferred",
    "skipped",
    "suppressed",
    "holdout",
    "expired",
    "grouped",
    "cancelled",
    "none",
)
FILE_KEYS = ("tests",)
TEST_KEYS = (
    "name",
    "rule",
    "rules",
    "settings",
    "records",
    "timeline",
    "now",
    "expect",
    "customer",
    "order",
    "checkout",
    "survey",
)
STEP_KEYS = ("at", "records", "expect")
EXPECT_KEYS = ("rule", "entity", "step", "match", "decision", "channel", "send_at", "reason", "sent", "text")
SETTINGS_KEYS = ("quiet_hours", "max_per_day", "max_per_week", "default_locale")
# The short form's one record per kind, and the table each goes to.
SHORT_RECORDS = {
    "customer": "customers",
    "order": "orders",
    "checkout": "checkouts",
    "survey": "survey_responses",
}
_NULL_TAG = "tag:yaml.org,2002:null"


# -- a test, as read from its file ---------------------------------------------------------------


@dataclass(frozen=True)
class RecordChange:
    """One record to upsert (clean fields, as ingest validated them)."""

    table: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Expectation:
    """What one rule should do about one record at an instant; None fields are not checked."""

    line: int
    rule: str
    entity: str
    customer: str  # the record's customer: the messages of this rule to them are its messages
    match: bool | None = None
    decision: str | None = None
    channel: str | None = None
    send_at: datetime | None = None
    reason: str | None = None
    sent: bool | None = None
    text: tuple[str, ...] = ()
    step: int = 1  # which message of the rule's journey (a follow-up: 2, 3, …)


@dataclass(frozen=True)
class Step:
    at: datetime
    line: int
    records: tuple[RecordChange, ...]
    expect: tuple[Expectation, ...]


@dataclass(frozen=True)
class RuleTest:
    file: str
    line: int
    name: str
    rules: tuple[str, ...]  # the rules that tick: `rules:` or every enabled one, and those expected of
    settings: Mapping[str, Any]  # overrides of [delivery]
    steps: tuple[Step, ...]


# -- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """An expectation the tick did not meet: what was expected and what happened, field by field."""

    at: datetime
    rule: str
    entity: str
    expected: Mapping[str, Any]
    got: Mapping[str, Any]

    def describe(self) -> str:
        return (
            f"at {_instant_text(self.at)}, {self.rule} {self.entity}:\n"
            f"    exp: {_fields_text(self.expected)}\n"
            f"    got: {_fields_text(self.got)}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "at": _instant_text(self.at),
            "rule": self.rule,
            "entity": self.entity,
            "expected": {k: _json(v) for k, v in self.expected.items()},
            "got": {k: _json(v) for k, v in self.got.items()},
        }


@dataclass(frozen=True)
class RuleTestResult:
    file: str
    line: int
    name: str
    failures: tuple[Failure, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "line": self.line,
            "passed": self.passed,
            "failures": [f.as_json() for f in self.failures],
        }


@dataclass(frozen=True)
class RuleTestRun:
    """Every test's result, and the problems found in the test files (those tests did not run)."""

    results: tuple[RuleTestResult, ...]
    problems: tuple[Problem, ...]

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": len(self.results) - self.failed,
            "failed": self.failed,
            "tests": [r.as_json() for r in self.results],
            "problems": [
                {"file": p.file, "line": p.line, "col": p.col, "message": p.message} for p in self.problems
            ],
        }


def _instant_text(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return _instant_text(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _fields_text(values: Mapping[str, Any]) -> str:
    parts = []
    for key, value in values.items():
        if isinstance(value, datetime):
            shown = _instant_text(value)
        elif isinstance(value, str) and key in ("reason", "text"):
            shown = json.dumps(value if len(value) <= 160 else value[:157] + "…", ensure_ascii=False)
        elif isinstance(value, tuple):
            shown = json.dumps(list(value), ensure_ascii=False)
        elif isinstance(value, bool):
            shown = "true" if value else "false"
        else:
            shown = "null" if value is None else str(value)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


# -- reading test files ------------------------------------------------------------------------------


class _Invalid(Exception):
    """A test has problems (already recorded); it is not run."""


@dataclass
class _Reader:
    """Reads one test file, recording every problem with its FILE:LINE:COL.

    A problem in one field does not stop the reading: the rest of the test is read on, so every
    mistake is reported at once (a value that cannot be read is None from then on); a test
    with any problem is not run.
    """

    path: Path
    lines: list[str]
    rules: RuleSet
    problems: list[Problem] = field(default_factory=list)
    rule_given: bool = False  # the test being read names its rule (perhaps misspelt)

    def problem(self, node: Node, message: str, test: str | None = None) -> None:
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        source = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        prefix = f"test {json.dumps(test, ensure_ascii=False)}: " if test else ""
        self.problems.append(Problem(str(self.path), line, col, prefix + message, source_line=source))

    def mapping(
        self, node: Node, allowed: Sequence[str], what: str, test: str | None
    ) -> dict[str, tuple[Node, Node]]:
        """The fields of a mapping node; unknown and repeated fields are problems."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what} must be a mapping of fields", test)
            raise _Invalid
        found: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            name = str(key.value)
            if name in found:
                self.problem(key, f"field '{name}' is given twice", test)
            elif name not in allowed:
                self.problem(
                    key,
                    f"unknown field '{name}' in {what}{did_you_mean(name, allowed)}: expected {', '.join(allowed)}",
                    test,
                )
            else:
                found[name] = (key, value)
        return found

    def sequence(self, node: Node, what: str, test: str | None) -> list[Node]:
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{what} must be a list (items starting with `- `)", test)
            raise _Invalid
        return list(node.value)

    def value(self, node: Node) -> Any:
        try:
            return safe_yaml.construct(node)
        except safe_yaml.NotAValue as exc:
            self.problem(node, f"cannot read this value: {exc}", None)
            raise _Invalid from None

    def text(self, node: Node, what: str, test: str | None) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag == _NULL_TAG:
            self.problem(node, f"{what} must be text", test)
            return None
        return str(node.value)

    def instant(self, node: Node, what: str, test: str | None) -> datetime | None:
        text = self.text(node, what, test)
        if text is None:
            return None
        try:
            return ingest.parse_instant_value(text)
        except ValueError as exc:
            self.problem(node, f"{what}: {exc}", test)
            return None

    def rule_name(self, node: Node, test: str | None) -> str | None:
        name = self.text(node, "a rule", test)
        if name is None:
            return None
        try:
            self.rules.get(name)
        except RulesError as exc:
            self.problem(node, str(exc), test)
            return None
        return name

    # -- the file ---------------------------------------------------------------------------------
    def tests(self, root: Node | None) -> list[RuleTest]:
        if root is None:
            return []
        try:
            top = self.mapping(root, FILE_KEYS, "a rule tests file", None)
            items = self.sequence(top["tests"][1], "`tests:`", None) if "tests" in top else []
        except _Invalid:
            return []
        found = []
        for index, item in enumerate(items, start=1):
            before = len(self.problems)
            try:
                test = self.test(item, index)
            except _Invalid:
                continue
            if len(self.problems) == before:
                found.append(test)
        return found

    def test(self, node: Node, index: int) -> RuleTest:
        label = f"test {index}"
        if isinstance(node, MappingNode):
            for key, value in node.value:
                if key.value == "name" and isinstance(value, ScalarNode):
                    label = str(value.value)
        fields = self.mapping(node, TEST_KEYS, "a test", label)
        self.rule_given = "rule" in fields  # a misspelt one is reported once, not at each expectation
        rule = self.rule_name(fields["rule"][1], label) if "rule" in fields else None
        named = [rule] if rule else []
        # `rules:` names the rules that tick; by default every enabled rule does, as in `run`.
        base = [r.name for r in self.rules if r.enabled]
        if "rules" in fields:
            base = []
            for item in self.sequence(fields["rules"][1], "`rules`", label):
                if (name := self.rule_name(item, label)) is not None:
                    base.append(name)
        settings = self.settings(fields["settings"][1], label) if "settings" in fields else {}
        known: dict[str, dict[str, str]] = {table: {} for table in TABLE_NAMES}  # table → id → customer
        first: list[RecordChange] = []
        for short, table in SHORT_RECORDS.items():
            if short in fields:
                first += self.some(self.record(table, fields[short][1], known, label))
        if "records" in fields:
            first += self.records(fields["records"][1], known, label)
        if "timeline" in fields:
            for clash in ("now", "expect"):
                if clash in fields:
                    self.problem(
                        fields[clash][0],
                        f"`{clash}` belongs in a step of the timeline (`- at: …`), not beside `timeline:`",
                        label,
                    )
            raw_steps = [
                (self.mapping(item, STEP_KEYS, "a timeline step", label), item)
                for item in self.sequence(fields["timeline"][1], "`timeline`", label)
            ]
            if not raw_steps:
                self.problem(fields["timeline"][1], "the timeline has no steps", label)
        elif "now" in fields:
            only = {"at": fields["now"], **({"expect": fields["expect"]} if "expect" in fields else {})}
            raw_steps = [(only, node)]
        else:
            self.problem(node, "a test needs `now:` (one instant) or `timeline:` (steps `- at: …`)", label)
            raise _Invalid
        # The records of every step first: an expectation may name a record that arrives later.
        changes: list[list[RecordChange]] = []
        for step, _item in raw_steps:
            changes.append(self.records(step["records"][1], known, label) if "records" in step else [])
        if changes:
            changes[0] = first + changes[0]
        steps: list[Step] = []
        for (step, item), records in zip(raw_steps, changes, strict=True):
            if "at" not in step:
                self.problem(item, "a timeline step needs `at:` (its instant)", label)
                continue
            at = self.instant(step["at"][1], "at", label)
            if at is None:
                continue
            if steps and at <= steps[-1].at:
                self.problem(step["at"][1], "the steps of a timeline must be in time order", label)
            expect = self.expectations(step["expect"][1], rule, known, label) if "expect" in step else ()
            named += [e.rule for e in expect]
            steps.append(Step(at, item.start_mark.line + 1, tuple(records), expect))
        if not any(step.expect for step in steps) and not any("expect" in step for step, _ in raw_steps):
            self.problem(node, "the test expects nothing: add `expect:` to a step", label)
        ticking = tuple(dict.fromkeys(base + named))  # a rule the test expects of ticks, even disabled
        return RuleTest(str(self.path), node.start_mark.line + 1, label, ticking, settings, tuple(steps))

    @staticmethod
    def some(change: RecordChange | None) -> list[RecordChange]:
        return [] if change is None else [change]

    def settings(self, node: Node, test: str) -> dict[str, Any]:
        fields = self.mapping(node, SETTINGS_KEYS, "`settings`", test)
        values = {name: self.value(value) for name, (_key, value) in fields.items()}
        try:
            DeliverySettings(**{**DeliverySettings().model_dump(), **values})
        except ValidationError as exc:
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                where = fields[name][1] if name in fields else node
                self.problem(where, f"settings.{name}: {error['msg']}", test)
        quiet = values.get("quiet_hours")
        if isinstance(quiet, str) and quiet != "off":
            try:
                QuietHours.parse(quiet)
            except ValueError as exc:
                self.problem(fields["quiet_hours"][1], f"settings.quiet_hours: {exc}", test)
        return values

    # -- records ----------------------------------------------------------------------------------
    def records(self, node: Node, known: dict[str, dict[str, str]], test: str) -> list[RecordChange]:
        tables = self.mapping(node, TABLE_NAMES, "`records` (tables, as `outreach ingest` names them)", test)
        found = []
        for table in TABLE_NAMES:  # customers first, as ingest loads them
            if table in tables:
                for item in self.sequence(tables[table][1], f"`{table}`", test):
                    found += self.some(self.record(table, item, known, test))
        return found

    def record(
        self, table: str, node: Node, known: dict[str, dict[str, str]], test: str
    ) -> RecordChange | None:
        """One record validated field by field as `outreach ingest` validates a CSV row."""
        fields = self.mapping(node, tuple(ingest.FIELDS[table]), f"a record of {table}", test)
        required = [name for name, rule in ingest.FIELDS[table].items() if rule.null == "missing"]
        clean: dict[str, Any] = {}
        bad = False
        for name, (_key, value) in fields.items():
            trial = {other: "x" for other in required if other != name} | {name: self.cell(value)}
            checked = ingest.validate_record(table, trial, from_text=True)
            if isinstance(checked, list):
                for message in checked:
                    self.problem(value, f"{table} record: {message}", test)
                bad = True
            else:
                clean[name] = checked[name]
        if "id" not in clean:
            if "id" not in fields:
                self.problem(node, f"{table} record: id is missing", test)
            return None
        if table != "customers":
            customers = list(known["customers"])
            if "customer_id" not in clean:
                earlier = known[table].get(clean["id"])
                if earlier is None and len(customers) != 1:
                    if "customer_id" not in fields:
                        self.problem(
                            node,
                            f"{table} record {clean['id']}: say whose it is with customer_id"
                            f" (the test's customers: {', '.join(customers) or 'none'})",
                            test,
                        )
                    return None
                clean["customer_id"] = earlier or customers[0]
            elif clean["customer_id"] not in known["customers"]:
                self.problem(
                    fields["customer_id"][1],
                    f"{table} record: no customer {clean['customer_id']!r} in this test"
                    f"{did_you_mean(clean['customer_id'], customers)}: add it under customers",
                    test,
                )
                return None
        # Known even when a field is wrong, so expectations naming it are checked too.
        known[table][clean["id"]] = clean["id"] if table == "customers" else clean["customer_id"]
        return None if bad else RecordChange(table, clean)

    def cell(self, node: Node) -> Any:
        """A field as ingest reads a CSV cell: the text written, null for null, JSON for a structure."""
        if isinstance(node, ScalarNode):
            return None if node.tag == _NULL_TAG else str(node.value)
        return json.dumps(self.value(node), ensure_ascii=False, default=str)

    # -- expectations -----------------------------------------------------------------------------
    def expectations(
        self, node: Node, rule: str | None, known: dict[str, dict[str, str]], test: str
    ) -> tuple[Expectation, ...]:
        if isinstance(node, ScalarNode):
            said = str(node.value).strip().lower()
            if said not in ("match", "no match"):
                self.problem(node, "expect must be `match`, `no match` or a list of expectations", test)
                return ()
            if rule is None:
                if not self.rule_given:
                    self.problem(node, "`expect: match` needs the test's `rule`", test)
                return ()
            found = self.entity(None, node, rule, known, test)
            if found is None:
                return ()
            return (Expectation(node.start_mark.line + 1, rule, *found, match=said == "match"),)
        items = [self.expectation(item, rule, known, test) for item in self.sequence(node, "expect", test)]
        return tuple(item for item in items if item is not None)

    def expectation(
        self, node: Node, default_rule: str | None, known: dict[str, dict[str, str]], test: str
    ) -> Expectation | None:
        fields = self.mapping(node, EXPECT_KEYS, "an expectation", test)
        checks: dict[str, Any] = {}
        bad = False

        def choice(name: str, allowed: Sequence[str], what: str) -> None:
            nonlocal bad
            said = self.text(fields[name][1], name, test)
            if said is None or said not in allowed:
                if said is not None:
                    self.problem(
                        fields[name][1],
                        f"unknown {what} '{said}'{did_you_mean(said, allowed)}: expected one of {', '.join(allowed)}",
                        test,
                    )
                bad = True
            else:
                checks[name] = said

        for name in ("match", "sent"):
            if name in fields:
                value = self.value(fields[name][1])
                if isinstance(value, bool):
                    checks[name] = value
                else:
                    self.problem(fields[name][1], f"{name} must be true or false", test)
                    bad = True
        if "decision" in fields:
            choice("decision", DECISIONS, "decision")
        journey_step = 1
        if "step" in fields:
            value = self.value(fields["step"][1])
            if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
                journey_step = value
            else:
                self.problem(
                    fields["step"][1],
                    "step must be a whole number: 1 for the rule's message, 2 for its first follow-up",
                    test,
                )
                bad = True
        if "channel" in fields:
            choice("channel", CHANNELS, "channel")
        if "send_at" in fields:
            checks["send_at"] = self.instant(fields["send_at"][1], "send_at", test)
            bad = bad or checks["send_at"] is None
        if "reason" in fields:
            checks["reason"] = self.text(fields["reason"][1], "reason", test)
            bad = bad or checks["reason"] is None
        if "text" in fields:
            raw = self.value(fields["text"][1])
            texts = [raw] if isinstance(raw, str) else raw
            if isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts):
                checks["text"] = tuple(texts)
            else:
                self.problem(
                    fields["text"][1],
                    "text must be a string or a list of strings to find in the message",
                    test,
                )
                bad = True
        if not checks and not bad:
            self.problem(node, "the expectation checks nothing: give " + ", ".join(EXPECT_KEYS[2:]), test)
            bad = True
        if "rule" in fields:
            rule = self.rule_name(fields["rule"][1], test)
        elif default_rule is not None:
            rule = default_rule
        else:
            if not self.rule_given:
                self.problem(node, "say which rule this expects: `rule: NAME` here or on the test", test)
            rule = None
        if rule is None:
            return None
        found = self.entity(fields.get("entity", (None, None))[1], node, rule, known, test)
        if found is None or bad:
            return None
        if journey_step > self.rules.get(rule).journey_length:
            self.problem(
                fields["step"][1],
                f"rule {rule} has {self.rules.get(rule).journey_length} step(s), not {journey_step}",
                test,
            )
            return None
        return Expectation(node.start_mark.line + 1, rule, *found, **checks, step=journey_step)

    def entity(
        self, node: Node | None, at: Node, rule: str, known: dict[str, dict[str, str]], test: str
    ) -> tuple[str, str] | None:
        """The record an expectation is about, and its customer."""
        about = self.rules.get(rule).about
        table = BY_ABOUT[About(about)].name
        ids = list(known[table])
        if node is None:
            if len(ids) != 1:
                self.problem(
                    at,
                    f"say which {about} this expects with `entity:` (the test's {table}: {', '.join(ids) or 'none'})",
                    test,
                )
                return None
            return ids[0], known[table][ids[0]]
        entity = self.text(node, "entity", test)
        if entity is None:
            return None
        if entity not in known[table]:
            self.problem(
                node,
                f"no {about} {entity!r} in this test{did_you_mean(entity, ids)}: {rule} is about {table}",
                test,
            )
            return None
        return entity, known[table][entity]


def read_tests(path: Path, rules: RuleSet) -> tuple[list[RuleTest], list[Problem]]:
    """The tests of one file and every problem in it, each with its FILE:LINE:COL."""
    lines: list[str] = []
    try:
        # Read like a rules file: bounded (aliases, depth, size), no tags, the encoding named.
        text = safe_yaml.read_text(path, "a rule test file")
        lines = text.splitlines()
        root = safe_yaml.compose(text)
    except safe_yaml.YamlRefused as exc:
        where = exc.located
        source = lines[where.line - 1] if where.line and 0 < where.line <= len(lines) else None
        return [], [Problem(str(path), where.line, where.col, where.message, source_line=source)]
    reader = _Reader(path, lines, rules)
    tests = reader.tests(root)
    return tests, sorted(reader.problems, key=lambda p: (p.line or 0, p.col or 0))


# -- running a test -----------------------------------------------------------------------------------


def run_rule_tests(app: App, rules: RuleSet | None = None, *, directory: Path | None = None) -> RuleTestRun:
    """Run every test under DIRECTORY (default: the rules folder's `tests/`) against RULES."""
    rule_set = rules if rules is not None else app.load_rules()
    folder = directory if directory is not None else app.rules_dir / "tests"
    tests: list[RuleTest] = []
    problems: list[Problem] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        found, trouble = read_tests(path, rule_set)
        tests += found
        problems += trouble
    results = []
    if tests:
        with _Scratch(app.settings) as scratch:
            results = [scratch.run(test, rule_set) for test in tests]
    return RuleTestRun(tuple(results), tuple(problems))


class _Scratch:
    """One scratch SQLite database and outbox folder for a run of tests, emptied between tests.

    One engine for the whole run: SQLAlchemy caches compiled statements per engine, and
    compiling the tick's queries anew for each test would double the time a test takes.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __enter__(self) -> _Scratch:
        from outreach.rendering.renderer import compile_templates
        from outreach.state.db import make_engine

        self._folder = tempfile.TemporaryDirectory(prefix="outreach-test-rules-")
        self.root = Path(self._folder.name)
        self.url = f"sqlite:///{self.root / 'scratch.db'}"
        self.engine = make_engine(self.url)  # created and migrated
        with self.engine.connect() as connection:
            names = sa.inspect(connection).get_table_names()
        metadata = sa.MetaData()
        metadata.reflect(self.engine, only=[name for name in names if name != "alembic_version"])
        self.tables = list(reversed(metadata.sorted_tables))  # dependents first
        self.compiled = compile_templates(self.settings)
        if self.compiled.errors:
            self.__exit__()
            raise TemplateError(problems=self.compiled.errors)
        self.count = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.dispose()
        self._folder.cleanup()

    def run(self, test: RuleTest, rules: RuleSet) -> RuleTestResult:
        from outreach.rendering import Renderer
        from outreach.tick import make_dispatcher, run_tick

        self.count += 1
        with self.engine.begin() as connection:
            for table in self.tables:
                connection.execute(table.delete())
        outbox = self.root / f"outbox-{self.count}.jsonl"
        base = self.settings
        settings = base.model_copy(
            update={
                "database": DatabaseSettings(url=self.url),
                "paths": base.paths.model_copy(update={"outbox": str(outbox)}),
                # Never a provider, never a webhook: a test sends to its scratch outbox only.
                "delivery": base.delivery.model_copy(
                    update={**test.settings, "mode": "outbox", "concurrency": 1}
                ),
                "escalation": EscalationSettings(),
            }
        )
        app = App(settings, _engine=self.engine)
        renderer = Renderer.from_compiled(settings, self.compiled)
        ticking = [rules.get(name) for name in test.rules]
        dispatcher = make_dispatcher(app, lambda: rules, lambda: renderer)
        failures: list[Failure] = []
        seen = 0
        try:
            for step in test.steps:
                _load(app, step.records, step.at)
                report = run_tick(app, ticking, step.at, dispatcher=dispatcher)
                lines = _outbox_lines(outbox)
                sent, seen = lines[seen:], len(lines)
                decisions = {(d.rule, d.entity_id, d.step): d for d in report.decided.decisions}
                failures += [
                    failure
                    for expectation in step.expect
                    if (failure := _check(expectation, step.at, decisions, sent)) is not None
                ]
        finally:
            dispatcher.close()
        return RuleTestResult(test.file, test.line, test.name, tuple(failures))


def _load(app: App, changes: Sequence[RecordChange], at: datetime) -> None:
    """Store the records at AT as `outreach ingest` does; the reader checked them already."""
    with app.engine.begin() as connection:
        for change in changes:
            ingest.store_rows(connection, change.table, [change.values], at, keep_versions=False)


def _outbox_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _check(
    expectation: Expectation,
    at: datetime,
    decisions: Mapping[tuple[str, str, int], Decision],
    sent: Sequence[Mapping[str, Any]],
) -> Failure | None:
    from outreach.preview import decision_word

    decision = decisions.get((expectation.rule, expectation.entity, expectation.step))
    # A match decided before is a "duplicate" decision: nothing new is decided at this instant.
    new = decision if decision is not None and decision.state != "duplicate" else None
    messages = [
        m for m in sent if m.get("rule") == expectation.rule and m.get("customer_id") == expectation.customer
    ]
    # What a customer reads: the subject and text part of an email, the SMS (the HTML part
    # holds the same words as the text part, plus markup).
    bodies = "\n".join(
        str(m[part]).strip() for m in messages for part in ("subject", "text", "sms") if m.get(part)
    )
    channel = new.channel if new else (messages[0].get("channel") if messages else None)
    observed: dict[str, Any] = {
        "match": decision is not None,
        "decision": decision_word(new, at) if new else "none",
        "channel": channel,
        "send_at": new.send_at if new else None,
        "reason": decision.reason if decision is not None else "",
        "sent": bool(messages),
        "text": bodies,
    }
    expected: dict[str, Any] = {
        name: getattr(expectation, name)
        for name in ("match", "decision", "channel", "send_at", "reason", "sent")
        if getattr(expectation, name) is not None
    }
    if expectation.text:
        expected["text"] = expectation.text
    wrong = [name for name, value in expected.items() if not _meets(name, value, observed[name])]
    if not wrong:
        return None
    got = {name: observed[name] if name != "text" else (bodies or None) for name in expected}
    if "reason" not in got and observed["reason"]:
        got["reason"] = observed["reason"]
    return Failure(at, expectation.rule, expectation.entity, expected, got)


def _meets(name: str, expected: Any, observed: Any) -> bool:
    if name == "reason":
        return str(expected) in str(observed)
    if name == "text":
        return all(part in observed for part in expected)
    return bool(expected == observed)


__all__ = [
    "DECISIONS",
    "Expectation",
    "Failure",
    "RuleTest",
    "RuleTestResult",
    "RuleTestRun",
    "Step",
    "read_tests",
    "run_rule_tests",
]

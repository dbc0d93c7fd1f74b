"""Load `rules/*.yaml`: validate every field of every rule and report every problem at once.

Each problem is located (`FILE:LINE:COL: rule "NAME": …` with the line and a caret), including
mistakes inside a `when` expression, whose offsets are mapped back to the YAML source whether
the expression is written plain, quoted or as a folded block.

Files are read with `outreach.safe_yaml` (UTF-8 only, standard tags only, bounded size, depth
and aliases), and every value's type is checked before it is used, so no file ends in a
traceback. Whatever delivery would refuse at run time (`expires` not longer than `delay`, a
priority beyond the ledger's column, a duration beyond a century) is refused here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from outreach import safe_yaml
from outreach.durations import format_duration, parse_duration
from outreach.errors import Problem, RulesError, did_you_mean
from outreach.policy import RulePolicy
from outreach.quiet_hours import QuietHours
from outreach.rules.expressions import Expr, ExpressionProblems, compile_expression
from outreach.rules.schema import ABOUT_ENTITIES
from outreach.vocabulary import CHANNELS

NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
QUIET_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$")
# A folder directly under templates/ (never a path: `../../etc` must not reach outside it).
TEMPLATE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# The ledger keeps a contact's priority in a 32-bit integer column.
PRIORITY_RANGE = (-(2**31), 2**31 - 1)
_STR_TAG = "tag:yaml.org,2002:str"
FIELDS = (
    "name",
    "description",
    "about",
    "when",
    "channels",
    "template",
    "every",
    "priority",
    "cooldown",
    "delay",
    "expires",
    "quiet_hours",
    "holdout",
    "goal",
    "goal_window",
    "escalate",
    "enabled",
    "steps",
    "group",
    "group_wait",
    "inhibits",
)
STEP_FIELDS = ("after", "template", "channels")
INHIBIT_FIELDS = ("rule", "for")
GROUPS = ("customer",)
DEFAULT_GOAL_WINDOW = timedelta(days=7)


@dataclass(frozen=True)
class Step:
    """A follow-up of a rule's journey: sent `after` the previous step was sent (step 1 is the rule)."""

    number: int  # 2, 3, …
    after: timedelta
    template: str
    channels: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class Inhibit:
    """Once the rule contacts a customer, RULE stays quiet for that customer for `period`."""

    rule: str
    period: timedelta
    line: int = 0
    col: int = 0


@dataclass(frozen=True)
class Rule:
    """One validated rule, ready to evaluate."""

    name: str
    about: str
    when: str
    condition: Expr
    channels: tuple[str, ...]
    template: str
    every: timedelta
    description: str = ""
    priority: int = 0
    cooldown: timedelta | None = None
    delay: timedelta | None = None
    expires: timedelta | None = None
    quiet_hours: str | None = None
    holdout: float = 0.0
    goal: str | None = None
    goal_condition: Expr | None = None
    goal_window: timedelta | None = None
    escalate: bool = False
    enabled: bool = True
    steps: tuple[Step, ...] = ()
    group: str | None = None  # "customer": several matches of one customer become one message
    group_wait: timedelta = timedelta(0)
    inhibits: tuple[Inhibit, ...] = ()
    # Filled in once every file is read: (rule, period) of the rules that inhibit this one.
    inhibited_by: tuple[tuple[str, timedelta], ...] = ()
    file: str = ""
    line: int = 0

    @property
    def journey_length(self) -> int:
        """How many messages the journey has: the rule's own and its follow-up steps."""
        return 1 + len(self.steps)

    def step(self, number: int) -> Step:
        """Follow-up step NUMBER (2, 3, …)."""
        return self.steps[number - 2]

    def template_of(self, step: int) -> str:
        return self.template if step == 1 else self.step(step).template

    def channels_of(self, step: int) -> tuple[str, ...]:
        return self.channels if step == 1 else self.step(step).channels


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]

    def __iter__(self) -> Any:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def names(self) -> list[str]:
        return [rule.name for rule in self.rules]

    def get(self, name: str) -> Rule:
        """The rule called NAME; RulesError with a did-you-mean otherwise."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise RulesError(
            f'no rule named "{name}"{did_you_mean(name, self.names())}; the rules are: {", ".join(self.names()) or "none"}'
        )


_UNREADABLE = object()  # a value that could not be constructed; its problem is already reported


@dataclass
class _FileChecker:
    path: Path
    lines: list[str]
    default_every: timedelta
    template_exists: Callable[[str], bool] | None
    problems: list[Problem] = field(default_factory=list)
    # Every rule name given, valid or not: an inhibition of a rule with problems of its own is
    # not also an inhibition of an unknown rule.
    names: list[str] = field(default_factory=list)

    def problem(
        self,
        node: Node | None,
        message: str,
        rule: str | None = None,
        *,
        line: int | None = None,
        col: int | None = None,
    ) -> None:
        if node is not None:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
        source = self.lines[line - 1] if line and 0 < line <= len(self.lines) else None
        self.problems.append(Problem(str(self.path), line, col, message, rule, source))

    def value(self, node: Node, rule: str | None = None) -> Any:
        """The Python value of NODE, or _UNREADABLE (reported) when its tag cannot make one."""
        try:
            return safe_yaml.construct(node)
        except safe_yaml.NotAValue as exc:
            self.problem(node, f"cannot read this value: {exc}", rule)
            return _UNREADABLE

    def key_name(self, key: Node) -> str | None:
        """The text of a mapping key, or None (reported) when the key is not plain text."""
        if isinstance(key, ScalarNode) and key.tag == _STR_TAG:
            return str(key.value)
        self.problem(key, "a key must be a plain name such as `rules:` or `when:`")
        return None

    def rules(self, root: Node | None) -> list[Rule]:
        if root is None:
            self.problem(None, "the file is empty: expected a list `rules:`", line=1, col=1)
            return []
        if not isinstance(root, MappingNode):
            self.problem(root, "expected a mapping with a list `rules:` at the top")
            return []
        items: Node | None = None
        for key, value in root.value:
            name = self.key_name(key)
            if name is None:
                continue
            if name == "rules":
                if items is not None:
                    self.problem(key, "`rules:` is given twice: put every rule in one list")
                    continue
                items = value
            else:
                self.problem(
                    key,
                    f"unknown top-level key {_quoted(name)}{did_you_mean(name, ['rules'])}: a rules file holds only `rules:`",
                )
        if items is None:
            self.problem(root, "expected a list `rules:`")
            return []
        if not isinstance(items, SequenceNode):
            self.problem(items, "`rules:` must be a list of rules (each item starting with `- name: …`)")
            return []
        return [rule for item in items.value if (rule := self.rule(item)) is not None]

    def rule(self, node: Node) -> Rule | None:
        if not isinstance(node, MappingNode):
            self.problem(node, "each rule must be a mapping of fields (name, about, when, …)")
            return None
        before = len(self.problems)
        fields: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            name = self.key_name(key)
            if name is None:
                continue
            if name in fields:
                self.problem(key, f"field {_quoted(name)} is given twice")
            fields[name] = (key, value)
        rule_name: str | None = None
        if "name" in fields:
            raw_name = self.value(fields["name"][1])
            if isinstance(raw_name, str):
                rule_name = raw_name
                self.names.append(rule_name)
            elif raw_name is not _UNREADABLE:
                self.problem(fields["name"][1], "'name' must be text in kebab-case, e.g. name: late-delivery")

        def fail(field_name: str | None, message: str, at: Node | None = None) -> None:
            target = at if at is not None else (fields[field_name][1] if field_name in fields else node)
            self.problem(target, message, rule_name)

        for key_name, (key, _value) in fields.items():
            if key_name not in FIELDS:
                self.problem(
                    key,
                    f"unknown field {_quoted(key_name)}{did_you_mean(key_name, list(FIELDS))}",
                    rule_name,
                )
        for required in ("name", "about", "when", "channels", "template"):
            if required not in fields:
                fail(None, f"missing required field '{required}'")

        def scalar(field_name: str, kinds: tuple[type, ...], what: str) -> Any:
            if field_name not in fields:
                return None
            value = self.value(fields[field_name][1], rule_name)
            if value is _UNREADABLE:
                return None
            if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
                fail(field_name, f"'{field_name}' must be {what}")
                return None
            return value

        def duration(field_name: str) -> timedelta | None:
            text = scalar(field_name, (str, int), "a duration such as 15m, 2h or 1d")
            if text is None:
                return None
            try:
                return parse_duration(str(text))
            except ValueError as exc:
                fail(field_name, str(exc))
                return None

        if rule_name is not None and not NAME_RE.match(rule_name):
            fail(
                "name",
                f"name {_quoted(rule_name)} must be kebab-case (lowercase letters, digits and dashes), e.g. late-delivery",
            )
        about = scalar("about", (str,), "one of: " + ", ".join(ABOUT_ENTITIES))
        if about is not None and about not in ABOUT_ENTITIES:
            fail(
                "about",
                f"unknown about {_quoted(about)}{did_you_mean(about, list(ABOUT_ENTITIES))}: expected one of {', '.join(ABOUT_ENTITIES)}",
            )
            about = None
        when_text, condition = self.expression(fields, "when", about, rule_name)
        goal_text, goal_condition = self.expression(fields, "goal", about, rule_name)
        channels = self.channels(fields, fail)
        template = scalar("template", (str,), "the name of a folder under templates/")
        if template is not None and not TEMPLATE_NAME_RE.match(template):
            fail(
                "template",
                f"template {_quoted(template)} must be the name of a folder under templates/ "
                "(letters, digits, _ and -), not a path",
            )
            template = None
        if template is not None and self.template_exists is not None and not self.template_exists(template):
            fail("template", f"unknown template {_quoted(template)}: no folder templates/{template}/")
        every = duration("every")
        if every is not None and every <= timedelta(0):
            fail("every", "'every' must be longer than 0s")
        priority = scalar("priority", (int,), "a whole number (higher wins)")
        if priority is not None and not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]:
            fail(
                "priority",
                f"'priority' must be a whole number from {PRIORITY_RANGE[0]:,} to {PRIORITY_RANGE[1]:,}",
            )
            priority = None
        quiet = scalar(
            "quiet_hours", (str,), 'a window in the customer\'s local time such as "21:00-09:00", or "off"'
        )
        if quiet is not None and quiet != "off":
            try:
                if not QUIET_RE.match(quiet):
                    raise ValueError
                QuietHours.parse(quiet)
            except ValueError:
                fail(
                    "quiet_hours",
                    f'quiet_hours {_quoted(quiet)} must look like "21:00-09:00" (24-hour HH:MM-HH:MM, start and end differ), or be "off"',
                )
        holdout = self.holdout(fields, fail)
        goal_window = duration("goal_window")
        if goal_window is not None and "goal" not in fields:
            fail("goal_window", "'goal_window' needs a 'goal' expression to measure")
        steps = self.steps(fields, fail, rule_name, channels)
        group = scalar("group", (str,), "customer")
        if group is not None and group not in GROUPS:
            fail(
                "group",
                f"unknown group '{group}'{did_you_mean(group, list(GROUPS))}: the only group is customer",
            )
            group = None
        group_wait = duration("group_wait")
        if group_wait is not None and group is None:
            fail("group_wait", "'group_wait' needs 'group: customer'")
        if group is not None and "steps" in fields:
            fail(
                "group",
                "a rule with follow-up 'steps' cannot also 'group' its matches: split it into two rules",
            )
        inhibits = self.inhibits(fields, fail, rule_name)
        escalate = scalar("escalate", (bool,), "true or false")
        enabled = scalar("enabled", (bool,), "true or false")
        description = scalar("description", (str,), "text")
        cooldown, delay, expires = duration("cooldown"), duration("delay"), duration("expires")
        if expires is not None and expires <= (delay or timedelta(0)):
            # policy.RulePolicy refuses this too: every contact would expire before its delay ends.
            fail(
                "expires",
                f"'expires' ({format_duration(expires)}) must be longer than 'delay' "
                f"({format_duration(delay or timedelta(0))}): every contact would expire unsent",
            )

        if (
            len(self.problems) > before
            or condition is None
            or when_text is None
            or about is None
            or rule_name is None
            or template is None
        ):
            return None
        rule = Rule(
            name=rule_name,
            about=about,
            when=when_text,
            condition=condition,
            channels=channels,
            template=template,
            every=every or self.default_every,
            description=description or "",
            priority=priority or 0,
            cooldown=cooldown,
            delay=delay,
            expires=expires,
            quiet_hours=quiet,
            holdout=holdout,
            goal=goal_text,
            goal_condition=goal_condition,
            goal_window=(goal_window or DEFAULT_GOAL_WINDOW) if "goal" in fields else None,
            escalate=bool(escalate),
            enabled=True if enabled is None else enabled,
            steps=steps,
            group=group,
            group_wait=group_wait or timedelta(0),
            inhibits=inhibits,
            file=str(self.path),
            line=node.start_mark.line + 1,
        )
        try:
            # Whatever delivery would refuse at run time is refused here, at the rule's place.
            RulePolicy(
                name=rule.name,
                about=rule.about,
                channels=rule.channels,
                priority=rule.priority,
                cooldown=rule.cooldown,
                delay=rule.delay,
                expires=rule.expires,
                quiet_hours=rule.quiet_hours,
                holdout=rule.holdout,
            )
        except ValueError as exc:
            self.problem(node, str(exc).removeprefix(f'rule "{rule.name}": '), rule.name)
            return None
        return rule

    def channels(self, fields: dict[str, tuple[Node, Node]], fail: Callable[..., None]) -> tuple[str, ...]:
        if "channels" not in fields:
            return ()
        raw = self.value(fields["channels"][1])
        if raw is _UNREADABLE:
            return ()
        raw = [raw] if isinstance(raw, str) else raw
        if not isinstance(raw, list) or not raw:
            fail("channels", "'channels' must be a non-empty list, e.g. [email, sms]")
            return ()
        for item in raw:
            if not isinstance(item, str):
                fail("channels", "each channel must be a name, email or sms, e.g. channels: [sms, email]")
                return ()
            if item not in CHANNELS:
                fail(
                    "channels",
                    f"unknown channel {_quoted(item)}{did_you_mean(item, list(CHANNELS))}: expected email or sms",
                )
        if len(set(raw)) != len(raw):
            fail("channels", "a channel is listed twice")
        return tuple(str(item) for item in raw)

    def steps(
        self,
        fields: dict[str, tuple[Node, Node]],
        fail: Callable[..., None],
        rule: str | None,
        channels: tuple[str, ...],
    ) -> tuple[Step, ...]:
        """`steps:` — a list of follow-ups, each {after, template, channels?}."""
        if "steps" not in fields:
            return ()
        node = fields["steps"][1]
        if not isinstance(node, SequenceNode) or not node.value:
            fail("steps", "'steps' must be a list of follow-ups, e.g. - after: 1d, template: reminder")
            return ()
        found: list[Step] = []
        for number, item in enumerate(node.value, start=2):
            if not isinstance(item, MappingNode):
                self.problem(item, "each step is a mapping: after, template and optionally channels", rule)
                continue
            given = {str(k.value): (k, v) for k, v in item.value}
            for key, (key_node, _value) in given.items():
                if key not in STEP_FIELDS:
                    self.problem(
                        key_node, f"unknown step field '{key}'{did_you_mean(key, list(STEP_FIELDS))}", rule
                    )
            for required in ("after", "template"):
                if required not in given:
                    self.problem(item, f"step {number}: missing required field '{required}'", rule)
            after = self._duration_node(given.get("after", (None, None))[1], f"step {number}: 'after'", rule)
            template = self._template_node(given.get("template", (None, None))[1], rule)
            step_channels = channels
            if "channels" in given:
                step_channels = self._channels_node(given["channels"][1], rule) or channels
            if after is not None and after <= timedelta(0):
                self.problem(given["after"][1], f"step {number}: 'after' must be longer than 0s", rule)
                after = None
            if after is not None and template is not None:
                found.append(Step(number, after, template, step_channels, item.start_mark.line + 1))
        return tuple(found)

    def inhibits(
        self, fields: dict[str, tuple[Node, Node]], fail: Callable[..., None], rule: str | None
    ) -> tuple[Inhibit, ...]:
        """`inhibits:` — a list of {rule, for}: rules this one quiets for a customer it contacted."""
        if "inhibits" not in fields:
            return ()
        node = fields["inhibits"][1]
        if not isinstance(node, SequenceNode) or not node.value:
            fail("inhibits", "'inhibits' must be a list, e.g. - rule: stalled-checkout, for: 2d")
            return ()
        found: list[Inhibit] = []
        for item in node.value:
            if not isinstance(item, MappingNode):
                self.problem(item, "each entry of 'inhibits' is a mapping: rule and for", rule)
                continue
            given = {str(k.value): (k, v) for k, v in item.value}
            for key, (key_node, _value) in given.items():
                if key not in INHIBIT_FIELDS:
                    self.problem(
                        key_node,
                        f"unknown field '{key}'{did_you_mean(key, list(INHIBIT_FIELDS))} in 'inhibits'",
                        rule,
                    )
            for required in INHIBIT_FIELDS:
                if required not in given:
                    self.problem(item, f"'inhibits' entry: missing required field '{required}'", rule)
            target_node = given.get("rule", (None, None))[1]
            target = self.value(target_node) if target_node is not None else None
            if target_node is not None and not isinstance(target, str):
                self.problem(target_node, "'rule' must be the name of a rule", rule)
                target = None
            period = self._duration_node(given.get("for", (None, None))[1], "'for'", rule)
            if isinstance(target, str) and period is not None and target_node is not None:
                found.append(
                    Inhibit(
                        target, period, target_node.start_mark.line + 1, target_node.start_mark.column + 1
                    )
                )
        return tuple(found)

    def _duration_node(self, node: Node | None, what: str, rule: str | None) -> timedelta | None:
        if node is None:
            return None
        value = self.value(node)
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            self.problem(node, f"{what} must be a duration such as 15m, 2h or 1d", rule)
            return None
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.problem(node, f"{what}: {exc}", rule)
            return None

    def _template_node(self, node: Node | None, rule: str | None) -> str | None:
        if node is None:
            return None
        value = self.value(node)
        if not isinstance(value, str):
            self.problem(node, "'template' must be the name of a folder under templates/", rule)
            return None
        if self.template_exists is not None and not self.template_exists(value):
            self.problem(node, f"unknown template '{value}': no folder templates/{value}/", rule)
            return None
        return value

    def _channels_node(self, node: Node, rule: str | None) -> tuple[str, ...]:
        raw = self.value(node)
        raw = [raw] if isinstance(raw, str) else raw
        if not isinstance(raw, list) or not raw:
            self.problem(node, "'channels' must be a non-empty list, e.g. [email, sms]", rule)
            return ()
        bad = [item for item in raw if item not in CHANNELS]
        for item in bad:
            self.problem(
                node,
                f"unknown channel '{item}'{did_you_mean(str(item), list(CHANNELS))}: expected email or sms",
                rule,
            )
        return () if bad else tuple(str(item) for item in raw)

    def holdout(self, fields: dict[str, tuple[Node, Node]], fail: Callable[..., None]) -> float:
        if "holdout" not in fields:
            return 0.0
        raw = self.value(fields["holdout"][1])
        if raw is _UNREADABLE:
            return 0.0
        message = "'holdout' must be a percentage such as 10% (0% to 100%)"
        if isinstance(raw, str) and re.fullmatch(r"\d{1,3}(\.\d{1,6})?%", raw.strip()):
            value = float(raw.strip()[:-1]) / 100
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool) and 0 <= raw <= 1:
            value = float(raw)
        else:
            fail("holdout", message)
            return 0.0
        if not 0 <= value <= 1:
            fail("holdout", message)
        return value

    def expression(
        self, fields: dict[str, tuple[Node, Node]], field_name: str, about: str | None, rule: str | None
    ) -> tuple[str | None, Expr | None]:
        """The text of an expression field and its compiled form (None, None when absent or wrong)."""
        if field_name not in fields:
            return None, None
        node = fields[field_name][1]
        text = self.value(node, rule)
        if text is _UNREADABLE:
            return None, None
        if not isinstance(text, str):
            self.problem(
                node, f"'{field_name}' must be an expression, e.g. order.status == \"shipped\"", rule
            )
            return None, None
        if about is None:
            return text, None
        try:
            return text, compile_expression(text, about)
        except ExpressionProblems as exc:
            for located in exc.problems:
                line, col = self.locate(node, text, located.offset)
                self.problem(None, f"{field_name}: {located.message}", rule, line=line, col=col)
            return text, None

    def locate(self, node: Node, text: str, offset: int) -> tuple[int, int]:
        """Map an offset in an expression to its line and column in the YAML file.

        Folding and quoting only change white space, so the n-th non-blank character of the
        expression is the n-th non-blank character of the source after the scalar starts.
        """
        target = sum(1 for ch in text[:offset] if not ch.isspace())
        line, col = node.start_mark.line, node.start_mark.column
        style = getattr(node, "style", None)
        if style in ("|", ">"):
            line, col = line + 1, 0  # skip the indicator line
        elif style in ("'", '"'):
            col += 1
        seen = 0
        last = (line + 1, col + 1)
        for row in range(line, min(node.end_mark.line + 1, len(self.lines))):
            source = self.lines[row]
            start = col if row == line else 0
            for column in range(start, len(source)):
                if source[column].isspace():
                    continue
                if seen == target:
                    return row + 1, column + 1
                seen += 1
                last = (row + 1, column + 2)
        return last


def _quoted(text: str) -> str:
    """TEXT in quotes for a message, cut short when long."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def rules_files(directory: Path) -> list[Path]:
    """The rules files of DIRECTORY (`*.yaml`, `*.yml`), in name order."""
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def check_rules(
    directory: Path,
    *,
    default_every: timedelta = timedelta(minutes=15),
    template_exists: Callable[[str], bool] | None = None,
) -> tuple[RuleSet, list[Problem]]:
    """Every valid rule under DIRECTORY and every problem found, across all files."""
    problems: list[Problem] = []
    rules: list[Rule] = []
    defined: set[str] = set()
    sources: dict[str, list[str]] = {}
    if not directory.is_dir():
        return RuleSet(()), [
            Problem(
                str(directory),
                None,
                None,
                "rules folder not found: set paths.rules in settings.toml or OUTREACH_PATHS__RULES",
            )
        ]
    for path in rules_files(directory):
        lines: list[str] = []
        try:
            text = safe_yaml.read_text(path, "a rules file")
            lines = text.splitlines()
            root = safe_yaml.compose(text)
        except safe_yaml.YamlRefused as exc:
            where = exc.located
            source = lines[where.line - 1] if where.line and 0 < where.line <= len(lines) else None
            problems.append(Problem(str(path), where.line, where.col, where.message, source_line=source))
            continue
        checker = _FileChecker(path, lines, default_every, template_exists)
        rules.extend(checker.rules(root))
        defined.update(checker.names)
        sources[str(path)] = lines
        problems.extend(sorted(checker.problems, key=lambda p: (p.line or 0, p.col or 0)))
    seen: dict[str, Rule] = {}
    for rule in rules:
        if rule.name in seen:
            first = seen[rule.name]
            problems.append(
                Problem(
                    rule.file,
                    rule.line,
                    None,
                    f"a rule with this name is already defined at {first.file}:{first.line}",
                    rule.name,
                )
            )
        seen[rule.name] = rule
    problems.extend(_inhibition_problems(rules, defined, sources))
    rules = [
        replace(
            rule,
            inhibited_by=tuple(
                (other.name, i.period) for other in rules for i in other.inhibits if i.rule == rule.name
            ),
        )
        for rule in rules
    ]
    return RuleSet(tuple(rules)), problems


def _inhibition_problems(
    rules: list[Rule], defined: set[str], sources: dict[str, list[str]]
) -> list[Problem]:
    """Inhibitions naming unknown rules, and cycles (a inhibits b inhibits a) among RULES.

    DEFINED holds every rule name given, RULES only the rules without problems of their own;
    SOURCES the lines of each file, shown under a problem.
    """
    valid = {rule.name for rule in rules}
    problems: list[Problem] = []
    graph: dict[str, list[str]] = {}

    def problem(rule: Rule, inhibit: Inhibit, message: str) -> Problem:
        lines = sources.get(rule.file, [])
        source = lines[inhibit.line - 1] if 0 < inhibit.line <= len(lines) else None
        return Problem(rule.file, inhibit.line, inhibit.col, message, rule.name, source)

    for rule in rules:
        for inhibit in rule.inhibits:
            if inhibit.rule not in defined:
                message = (
                    f"inhibits unknown rule '{inhibit.rule}'{did_you_mean(inhibit.rule, sorted(defined))}"
                )
                problems.append(problem(rule, inhibit, message))
            elif inhibit.rule == rule.name:
                problems.append(problem(rule, inhibit, "a rule cannot inhibit itself (use cooldown)"))
            elif inhibit.rule in valid:
                graph.setdefault(rule.name, []).append(inhibit.rule)
    by_name = {rule.name: rule for rule in rules}
    reported: set[frozenset[str]] = set()
    for start in sorted(graph):
        cycle = _cycle_from(start, graph, [])
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            first = by_name[cycle[0]]
            where = next(i for i in first.inhibits if i.rule == cycle[1])
            problems.append(
                problem(
                    first,
                    where,
                    f"inhibitions form a cycle ({' inhibits '.join(cycle)}): each would silence the other; "
                    "keep the inhibition in one direction",
                )
            )
    return problems


def load_rules(
    directory: Path,
    *,
    default_every: timedelta = timedelta(minutes=15),
    template_exists: Callable[[str], bool] | None = None,
) -> RuleSet:
    """The rules under DIRECTORY; RulesError listing every problem if there is any."""
    rules, problems = check_rules(directory, default_every=default_every, template_exists=template_exists)
    if problems:
        raise RulesError(problems=problems)
    return rules


def _cycle_from(name: str, graph: dict[str, list[str]], path: list[str]) -> list[str] | None:
    """The first cycle reachable from NAME in GRAPH (a list of rules ending where it began), if any."""
    if name in path:
        return [*path[path.index(name) :], name]
    path.append(name)
    for target in graph.get(name, []):
        cycle = _cycle_from(target, graph, path)
        if cycle:
            return cycle
    path.pop()
    return None

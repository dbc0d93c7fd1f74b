"""Template checks for `outreach check`: every mistake, located, before any customer sees one.

For each file: syntax (file:line), and every variable and attribute path — walked through the
whole template, including `{% set %}` aliases — checked against the state tables and the `about`
entity of each rule using it, with a close match suggested. For each rule: a template for each
of its channels in every locale of `delivery.locales`, and a render with sample data (an SMS over
`delivery.sms_max_segments` is an error). For each message: an unsubscribe link in email (error)
and a way to reach a person — `company.support_phone`, `support_url` or `support_email` (warning).
Templates no rule uses, and shared layouts, are checked too.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import UnionType
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from outreach.errors import ConfigError, Problem, did_you_mean
from outreach.rendering.environment import (
    LOOP_GUARD,
    REMOVED_FILTERS,
    STR_METHODS,
    VALUE_GUARD,
)
from outreach.rendering.loader import (
    KIND_EMAIL_HTML,
    KIND_EMAIL_TEXT,
    KIND_SHARED,
    KIND_SMS,
    TemplateFile,
    sorted_problems,
)
from outreach.rendering.renderer import (
    COMMON_VARIABLES,
    ENTITY_VARIABLES,
    CompiledTemplates,
    Renderer,
    RenderFailure,
    RuleInfo,
    compile_templates,
)
from outreach.rendering.samples import SAMPLE_NOW, sample_customer, sample_entity
from outreach.rendering.sms import avoidable_ucs2, count_segments, describe, has_opt_out_line
from outreach.settings import CompanySettings, Settings
from outreach.state.models import Checkout, Customer, Order, SurveyResponse

CONTACT_FIELDS = ("support_phone", "support_url", "support_email")
_SAMPLE = "with sample data: "
_JINJA_NAMES = frozenset(
    {"range", "dict", "cycler", "joiner", "namespace", "loop", "caller", "varargs", "kwargs", "super", "self"}
)


@dataclass(frozen=True)
class Shape:
    """What a template expression is, as far as lint can tell: a record with fields, or a kind."""

    kind: str  # record | json | text | number | bool | time | any
    path: str = ""
    fields: Mapping[str, Shape] = field(default_factory=dict)


ANY = Shape("any")
_SCALAR_ATTRIBUTES: dict[str, frozenset[str]] = {
    "text": STR_METHODS,
    "number": frozenset(n for n in dir(float) + dir(int) if not n.startswith("_")),
    "bool": frozenset(n for n in dir(int) if not n.startswith("_")),
    "time": frozenset(n for n in dir(datetime) if not n.startswith("_")),
}
_KIND_NAMES = {"text": "text", "number": "a number", "bool": "true or false", "time": "a time"}


def _field_shape(annotation: Any, path: str) -> Shape:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _field_shape(options[0], path) if len(options) == 1 else Shape("any", path)
    if annotation is str:
        return Shape("text", path)
    if annotation is bool:
        return Shape("bool", path)
    if annotation in (int, float):
        return Shape("number", path)
    if annotation is datetime:
        return Shape("time", path)
    return Shape("json", path)


def model_shape(model: Any, path: str) -> Shape:
    """The fields of a SQLModel/pydantic class as a record shape named PATH."""
    return Shape(
        "record",
        path,
        {name: _field_shape(info.annotation, f"{path}.{name}") for name, info in model.model_fields.items()},
    )


ENTITY_MODELS = {"order": Order, "checkout": Checkout, "survey": SurveyResponse}


def variable_shapes(about: str | None) -> dict[str, Shape]:
    """The variables a template of a rule about ABOUT sees (every entity when ABOUT is None)."""
    shapes = {
        "customer": model_shape(Customer, "customer"),
        "rule": Shape(
            "record",
            "rule",
            {
                "name": Shape("text", "rule.name"),
                "about": Shape("text", "rule.about"),
                "channels": Shape("json", "rule.channels"),
                "template": Shape("text", "rule.template"),
                "description": Shape("text", "rule.description"),
            },
        ),
        "company": model_shape(CompanySettings, "company"),
        "unsubscribe_url": Shape("text", "unsubscribe_url"),
        "now": Shape("time", "now"),
        "lang": Shape("text", "lang"),
        "dir": Shape("text", "dir"),
        "step": Shape(
            "record", "step", {"number": Shape("number", "step.number"), "of": Shape("number", "step.of")}
        ),
        # The records a grouped message is about: one for a rule that does not group.
        "matches": Shape("list", "matches", {"item": ANY}),
    }
    assert set(shapes) == set(COMMON_VARIABLES)
    for entity, model in ENTITY_MODELS.items():
        if about is None or about == entity:
            shapes[entity] = model_shape(model, entity)
    item = (
        shapes.get(about) if about in ENTITY_MODELS else shapes["customer"] if about == "customer" else None
    )
    if item is not None:
        shapes["matches"] = Shape("list", "matches", {"item": Shape(item.kind, "matches[]", item.fields)})
    return shapes


_TAG = re.compile(r"\{[{%].*?(?:[}%]\}|$)")


def _column(line: str | None, patterns: Sequence[str]) -> int | None:
    """The 1-based column of the first match of PATTERNS inside a {{ }} or {% %} tag (else anywhere)."""
    if line is None:
        return None
    tags = [m.span() for m in _TAG.finditer(line)]
    fallback = None
    for pattern in patterns:
        for match in re.finditer(pattern, line):
            start = match.start(1) if match.groups() else match.start()
            if any(a <= start < b for a, b in tags):
                return start + 1
            fallback = fallback if fallback is not None else start + 1
    return fallback


class _Walk:
    """One template walked for one set of variables: problems found and paths referenced."""

    def __init__(
        self,
        f: TemplateFile,
        variables: dict[str, Shape],
        filters: Iterable[str],
        tests: Iterable[str],
        files: Iterable[str],
        *,
        about: str | None,
        rule: str | None,
        line_offset: int = 0,
    ) -> None:
        self.f = f
        self.variables = variables
        self.filters = {n for n in filters if not n.startswith("_")}
        self.tests = set(tests)
        self.files = set(files)
        self.about = about
        self.rule = rule
        self.line_offset = line_offset
        self.locals: dict[str, Shape] = {}
        self.problems: list[Problem] = []
        self.refs: set[str] = set()
        self.deps: set[str] = set()
        self.broken_deps = False

    # -- reporting ---------------------------------------------------------------------------

    def report(self, node: nodes.Node, message: str, patterns: Sequence[str] = ()) -> None:
        line = (node.lineno or 1) + self.line_offset
        text = self.f.line(line)
        self.problems.append(
            Problem(self.f.display, line, _column(text, patterns), message, rule=self.rule, source_line=text)
        )

    # -- locals ------------------------------------------------------------------------------

    def collect_locals(self, tree: nodes.Template) -> None:
        def bind(target: nodes.Node, shape: Shape) -> None:
            names = [target] if isinstance(target, nodes.Name) else list(target.find_all(nodes.Name))
            for name in names:
                single = shape if isinstance(target, nodes.Name) else ANY
                previous = self.locals.get(name.name)
                self.locals[name.name] = single if previous in (None, single) else ANY

        for node in tree.find_all(
            (
                nodes.Assign,
                nodes.AssignBlock,
                nodes.For,
                nodes.Macro,
                nodes.CallBlock,
                nodes.With,
                nodes.Import,
                nodes.FromImport,
            )
        ):
            if isinstance(node, nodes.Assign):
                bind(node.target, self.quiet_shape(node.node))
            elif isinstance(node, nodes.AssignBlock):
                bind(node.target, Shape("text"))
            elif isinstance(node, nodes.For):
                over = self.quiet_shape(node.iter)
                bind(node.target, over.fields.get("item", ANY) if over.kind == "list" else ANY)
            elif isinstance(node, nodes.Macro):
                self.locals[node.name] = ANY
                for arg in node.args:
                    bind(arg, ANY)
            elif isinstance(node, nodes.CallBlock):
                for arg in node.args:
                    bind(arg, ANY)
            elif isinstance(node, nodes.With):
                for target, value in zip(node.targets, node.values, strict=False):
                    bind(target, self.quiet_shape(value))
            elif isinstance(node, nodes.Import):
                self.locals[node.target] = ANY
            elif isinstance(node, nodes.FromImport):
                for item in node.names:
                    self.locals[item[1] if isinstance(item, tuple) else item] = ANY

    def quiet_shape(self, node: nodes.Node) -> Shape:
        """The shape of a plain path (`order`, `order.attributes`), without reporting anything."""
        if isinstance(node, nodes.Name):
            return self.variables.get(node.name, ANY)
        if isinstance(node, nodes.Getattr):
            base = self.quiet_shape(node.node)
            return base.fields.get(node.attr, ANY) if base.kind == "record" else ANY
        return ANY

    # -- the walk ----------------------------------------------------------------------------

    def visit(self, node: nodes.Node) -> Shape:
        if isinstance(node, nodes.Name):
            return self.name(node) if node.ctx == "load" else ANY
        if isinstance(node, nodes.Getattr):
            return self.attribute(self.visit(node.node), node.attr, node)
        if isinstance(node, nodes.Getitem):
            base = self.visit(node.node)
            if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                return self.attribute(base, node.arg.value, node)
            self.visit(node.arg)
            return ANY
        if isinstance(node, nodes.Filter):
            self.check_named(node, node.name, self.filters, "filter")
        elif isinstance(node, nodes.Test):
            self.check_named(node, node.name, self.tests, "test")
        elif isinstance(node, (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
            self.reference(node)
        for child in node.iter_child_nodes():
            if (
                isinstance(node, (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport))
                and child is node.template
            ):
                continue
            self.visit(child)
        return ANY

    def name(self, node: nodes.Name) -> Shape:
        name = node.name
        self.refs.add(name)
        if name in self.locals:
            return self.locals[name]
        if name in self.variables:
            return self.variables[name]
        if name in _JINJA_NAMES:
            return ANY
        pattern = [rf"(?<![\w.])({re.escape(name)})(?!\w)"]
        if name in ENTITY_VARIABLES.values() and self.about is not None:
            entity = [n for n in self.variables if n in ENTITY_MODELS]
            seen = ", ".join(["customer", *entity, *(n for n in COMMON_VARIABLES if n != "customer")])
            self.report(
                node,
                f"{name!r} is not available here: the rule is about {self.about}, "
                f"so its templates see {seen}",
                pattern,
            )
        else:
            known = set(self.variables) | set(self.locals)
            self.report(node, f"unknown variable {name!r}{did_you_mean(name, known)}", pattern)
        return ANY

    def attribute(self, base: Shape, attr: str, node: nodes.Node) -> Shape:
        patterns = [rf"\.\s*({re.escape(attr)})(?!\w)", rf"\[\s*['\"]({re.escape(attr)})['\"]"]
        if base.kind == "record":
            path = f"{base.path}.{attr}"
            self.refs.add(path)
            if attr in base.fields:
                return base.fields[attr]
            self.report(node, f"{base.path} has no field {attr!r}{did_you_mean(attr, base.fields)}", patterns)
            return ANY
        allowed = _SCALAR_ATTRIBUTES.get(base.kind)
        if allowed is not None and attr not in allowed:
            what = (
                f"{base.path} is {_KIND_NAMES[base.kind]}"
                if base.path
                else f"this is {_KIND_NAMES[base.kind]}"
            )
            self.report(node, f"{what}: it has no attribute {attr!r}{did_you_mean(attr, allowed)}", patterns)
        return ANY

    def check_named(self, node: nodes.Node, name: str, known: set[str], what: str) -> None:
        if name in known or name in (LOOP_GUARD, VALUE_GUARD):
            return
        patterns = [rf"\|\s*({re.escape(name)})(?!\w)", rf"\bis\s+(?:not\s+)?({re.escape(name)})(?!\w)"]
        if what == "filter" and name in REMOVED_FILTERS:
            self.report(node, f"the {name!r} filter is not available: {REMOVED_FILTERS[name]}", patterns)
        else:
            self.report(node, f"unknown {what} {name!r}{did_you_mean(name, known)}", patterns)

    def reference(self, node: nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport) -> None:
        verb = {nodes.Extends: "extend", nodes.Include: "include"}.get(type(node), "import")
        names: list[Any] = []
        if isinstance(node.template, nodes.Const):
            names = [node.template.value]
        elif isinstance(node.template, (nodes.List, nodes.Tuple)) and all(
            isinstance(item, nodes.Const) for item in node.template.items
        ):
            names = [item.value for item in node.template.items]  # type: ignore[attr-defined]  # all Const, checked above
        else:
            self.report(
                node,
                f"write the name of the template to {verb} in quotes, "
                f'e.g. {{% {verb} "_layout/email.en.html" %}}',
            )
            return
        missing_ok = isinstance(node, nodes.Include) and node.ignore_missing
        for name in names:
            if isinstance(name, str) and name in self.files:
                self.deps.add(name)
                if self.f.name.endswith(".html") and not name.endswith(".html"):
                    # Escaping follows the included file's name: a .txt would print customer data raw.
                    self.report(
                        node,
                        f"HTML can only {verb} HTML templates: {name!r} would not be escaped",
                        [rf"['\"]({re.escape(name)})['\"]"],
                    )
            elif not missing_ok:
                self.broken_deps = True
                self.report(
                    node,
                    f"no template {name!r} to {verb}{did_you_mean(str(name), self.files)}",
                    [rf"['\"]({re.escape(str(name))})['\"]"],
                )


@dataclass
class _FileFacts:
    refs: set[str] = field(default_factory=set)
    deps: set[str] = field(default_factory=set)
    complete: bool = True  # False when a part did not parse or a file it uses is missing


class _Linter:
    def __init__(self, settings: Settings, compiled: CompiledTemplates) -> None:
        self.settings = settings
        self.compiled = compiled
        self.catalog = compiled.catalog
        self.env = compiled.environment
        self.trees: dict[tuple[str, bool], nodes.Template | None] = {}
        self.facts: dict[str, _FileFacts] = {}

    def tree(self, f: TemplateFile, subject: bool) -> nodes.Template | None:
        key = (f.name, subject)
        if key not in self.trees:
            source = f.subject if subject else f.body
            try:
                self.trees[key] = self.env.parse(source or "", name=f.name, filename=str(f.path))
            except (TemplateSyntaxError, RecursionError):
                self.trees[key] = None  # reported by compile_templates
        return self.trees[key]

    def walk(self, f: TemplateFile, about: str | None, rule: str | None) -> list[Problem]:
        """Problems of F's variables for a rule about ABOUT (any entity when None)."""
        problems: list[Problem] = []
        facts = _FileFacts()
        parts = [(False, 0)]
        if f.subject is not None:
            parts.append((True, (f.subject_line or 1) - 1))
        for subject, offset in parts:
            tree = self.tree(f, subject)
            if tree is None:
                facts.complete = False
                continue
            walk = _Walk(
                f,
                variable_shapes(about),
                self.env.filters,
                self.env.tests,
                self.catalog.files,
                about=about,
                rule=rule,
                line_offset=offset,
            )
            try:
                walk.collect_locals(tree)
                walk.visit(tree)
            except RecursionError:
                facts.complete = False  # too deep to walk: compile_templates says so if it failed too
                continue
            problems.extend(walk.problems)
            facts.refs |= walk.refs
            facts.deps |= walk.deps
            facts.complete = facts.complete and not walk.broken_deps
        self.facts[f.name] = facts
        return problems

    def refs_with_deps(self, f: TemplateFile) -> set[str] | None:
        """The paths F and every file it extends, includes or imports refer to; None if unknown."""
        seen: set[str] = set()
        refs: set[str] = set()
        pending = [f.name]
        while pending:
            name = pending.pop()
            if name in seen or name not in self.catalog.files:
                continue
            seen.add(name)
            if name not in self.facts:
                self.walk(self.catalog.files[name], None, None)
            if not self.facts[name].complete:
                return None
            refs |= self.facts[name].refs
            pending.extend(self.facts[name].deps)
        return refs

    # -- checks of one message file -------------------------------------------------------------

    def message_checks(self, f: TemplateFile) -> list[Problem]:
        problems: list[Problem] = []
        refs = self.refs_with_deps(f)
        if refs is None:
            return problems  # its syntax or a missing layout is reported; what it says is unknown
        if f.kind in (KIND_EMAIL_HTML, KIND_EMAIL_TEXT) and "unsubscribe_url" not in refs:
            problems.append(
                Problem(
                    f.display,
                    None,
                    None,
                    (
                        'the email has no unsubscribe link: add <a href="{{ unsubscribe_url }}">…</a>'
                        if f.kind == KIND_EMAIL_HTML
                        else "the text part has no unsubscribe link: add {{ unsubscribe_url }}"
                    ),
                )
            )
        company = self.settings.company
        reachable = [name for name in CONTACT_FIELDS if f"company.{name}" in refs and getattr(company, name)]
        if not reachable:
            problems.append(
                Problem(
                    f.display,
                    None,
                    None,
                    "the message offers no way to reach a person: add {{ company.support_phone }}, "
                    "{{ company.support_url }} or {{ company.support_email }} (set in settings [company])",
                    severity="warning",
                )
            )
        if f.kind == KIND_SMS and f.locale and not has_opt_out_line(f.locale):
            problems.append(
                Problem(
                    f.display,
                    None,
                    None,
                    f"no opt-out line is written in the language of {f.locale!r}: "
                    "the SMS will end with the default language's",
                    severity="warning",
                )
            )
        return problems

    # -- checks of one rule ----------------------------------------------------------------------

    def rule_checks(self, rule: RuleInfo) -> list[Problem]:
        problems: list[Problem] = []
        if rule.template not in self.catalog.templates:
            where = f"{self._display_root()}/{rule.template}"
            problems.append(
                Problem(
                    where,
                    None,
                    None,
                    f"no template {rule.template!r}{did_you_mean(rule.template, self.catalog.templates)}",
                    rule=rule.name,
                )
            )
            return problems
        for channel in rule.channels:
            kind = {"email": KIND_EMAIL_HTML, "sms": KIND_SMS}.get(channel)
            if kind is None:
                continue  # the rules loader reports unknown channels
            filename = "email.{}.html" if channel == "email" else "sms.{}.txt"
            for locale in self.settings.delivery.locales:
                if self.catalog.file_for(rule.template, kind, locale) is None:
                    path = f"{self._display_root()}/{rule.template}/{filename.format(locale)}"
                    sender = "the rule" if rule.step[0] == 1 else f"step {rule.step[0]} of the rule"
                    problems.append(
                        Problem(
                            path,
                            None,
                            None,
                            f"missing: {sender} sends {channel} and delivery.locales lists {locale!r}",
                            rule=rule.name,
                        )
                    )
        for f in self.catalog.files.values():
            if f.template == rule.template:
                problems.extend(self.walk(f, rule.about, rule.name))
        problems.extend(self.sample_renders(rule))
        return problems

    def _display_root(self) -> str:
        root = self.catalog.root
        try:
            return root.relative_to(self.settings.base_dir).as_posix()
        except ValueError:
            return str(root)

    def sample_renders(self, rule: RuleInfo) -> list[Problem]:
        try:
            renderer = Renderer.from_compiled(self.settings, self.compiled)
        except ConfigError:
            return []  # the settings are reported by whoever loads them
        problems: list[Problem] = []
        for channel in rule.channels:
            if channel not in ("email", "sms"):
                continue
            kind = KIND_EMAIL_HTML if channel == "email" else KIND_SMS
            for locale in dict.fromkeys(
                [*self.settings.delivery.locales, *self.catalog.locales_of(rule.template, kind)]
            ):
                if not renderer.exists(rule.template, channel, locale):
                    continue
                try:
                    message = renderer.render_located(
                        template=rule.template,
                        channel=channel,
                        customer=sample_customer(locale),
                        about=rule.about,
                        entity=sample_entity(rule.about, locale),
                        rule=rule,
                        now=SAMPLE_NOW,
                        step=rule.step,
                        matches=sample_matches(rule.about, locale, rule.group_size),
                    )
                except RenderFailure as failure:
                    found = failure.problem
                    problems.append(
                        Problem(
                            found.file,
                            found.line,
                            found.col,
                            f"{_SAMPLE}{found.message}",
                            rule=rule.name,
                            source_line=found.source_line,
                            severity="error" if failure.too_long else "warning",
                        )
                    )
                except KeyError:
                    continue  # a file that did not compile, already reported
                else:
                    sms_file = self.catalog.file_for(rule.template, KIND_SMS, message.locale)
                    if message.sms is not None and sms_file is not None:
                        problems.extend(self.ucs2_problems(sms_file, message.sms, rule.name))
        return problems

    def ucs2_problems(self, f: TemplateFile, sms: str, rule: str) -> list[Problem]:
        """A warning for each character that alone makes the SMS UCS-2, placed where F writes it."""
        smart = self.settings.twilio.smart_encoding
        avoidable = avoidable_ucs2(sms, smart_encoding=smart)
        if avoidable is None:
            return []
        now = count_segments(sms, smart_encoding=smart)
        cost = (
            f"70 characters a segment instead of 160 ({now.count} segment{'s' if now.count > 1 else ''} "
            f"here, {avoidable.gsm7.count} in GSM-7)"
        )
        problems = []
        for character in avoidable.characters:
            line, col = _find(f, character)
            if character in avoidable.replacements:
                fix = f"write {avoidable.replacements[character]!r} instead, or set twilio.smart_encoding = true"
            else:
                fix = "leave it out: no GSM-7 character stands for it"
            origin = "" if line is not None else " (it comes from the data or a filter)"
            problems.append(
                Problem(
                    f.display,
                    line,
                    col,
                    f"{_SAMPLE}{describe(character)} makes the SMS UCS-2{origin}: {cost}; {fix}",
                    rule=rule,
                    source_line=f.line(line),
                    severity="warning",
                )
            )
        return problems

    def settings_checks(self) -> list[Problem]:
        company = self.settings.company
        if any(getattr(company, name) for name in CONTACT_FIELDS):
            return []
        return [
            Problem(
                "settings [company]",
                None,
                None,
                "no support_phone, support_url or support_email: messages cannot offer a "
                "way to reach a person",
                severity="warning",
            )
        ]


def _find(f: TemplateFile, character: str) -> tuple[int | None, int | None]:
    """The 1-based line and column where F's source first writes CHARACTER."""
    for number, text in enumerate(f.source.splitlines(), 1):
        at = text.find(character)
        if at >= 0:
            return number, at + 1
    return None, None


def sample_matches(about: str, locale: str, size: int) -> list[Any] | None:
    """SIZE sample records for a grouped message (None: the one sample entity)."""
    if size <= 1:
        return None
    first = sample_entity(about, locale)
    if first is None:
        return None
    records = [first]
    for n in range(2, size + 1):
        copy = first.model_copy(update={"id": f"{first.id}-{n}"}) if hasattr(first, "model_copy") else first
        records.append(copy)
    return records


def lint_templates(
    settings: Settings, rules: Sequence[RuleInfo], compiled: CompiledTemplates | None = None
) -> list[Problem]:
    """Every problem of the templates folder for these RULES, errors and warnings, sorted by place.

    COMPILED, when given, is the templates folder already compiled (the renderer will use it).
    """
    compiled = compiled if compiled is not None else compile_templates(settings)
    linter = _Linter(settings, compiled)
    problems: list[Problem] = list(compiled.problems)
    used: set[str] = set()
    for rule in rules:
        used.add(rule.template)
        problems.extend(linter.rule_checks(rule))
    for f in compiled.catalog.files.values():
        if f.kind == KIND_SHARED or f.template not in used:
            problems.extend(linter.walk(f, None, None))
        if f.kind != KIND_SHARED:
            problems.extend(linter.message_checks(f))
    problems.extend(linter.settings_checks())
    # A template two steps (or rules) send is checked for each: report each problem once.
    return sorted_problems(list(dict.fromkeys(_without_echoes(problems, set(compiled.problems)))))


def _without_echoes(problems: list[Problem], compiled: set[Problem]) -> list[Problem]:
    """PROBLEMS without the ones another problem already explains.

    Jinja's compiler stops at the first unknown filter that the walk reports with its rule;
    and a sample render fails for the very mistakes the walk found in that file.
    """
    walked = {(p.file, p.line) for p in problems if p not in compiled and p.rule is not None}
    erroneous = {p.file for p in problems if p.severity == "error" and not p.message.startswith(_SAMPLE)}
    kept = []
    for p in problems:
        if p in compiled and (p.file, p.line) in walked:
            continue
        if p.message.startswith(_SAMPLE) and p.severity == "warning" and p.file in erroneous:
            continue
        kept.append(p)
    return kept

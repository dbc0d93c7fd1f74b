"""What the studio shows: every rule and template, rendered as a chosen customer at a chosen instant.

A `Studio` reads the rules and templates folders afresh whenever a file in them changes (its
`fingerprint`), so an edit shows on the next look without a restart. It renders with the same
`Renderer` as delivery and reports the same problems as `outreach check` (`lint_templates`), so
what the page shows is what would be sent and what `check` would say.

Customers come from three places, looked up in this order by id:
- the database (`customer_source` "database");
- the bundled sample customers of `outreach demo` (`outreach/sample`, "bundled"), their records
  timed relative to the chosen instant as the demo times them;
- "sample": the long-valued customer `outreach check` renders every template with.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from outreach import locales
from outreach.app import App
from outreach.clock import utcnow
from outreach.errors import ConfigError, InputError, OutreachError, Problem, did_you_mean
from outreach.rendering import RuleInfo
from outreach.rendering.lint import lint_templates
from outreach.rendering.loader import KIND_EMAIL_HTML, KIND_SHARED, KIND_SMS, TemplateFile
from outreach.rendering.renderer import (
    CompiledTemplates,
    RenderedMessage,
    Renderer,
    RenderFailure,
    compile_templates,
)
from outreach.rendering.samples import sample_customer, sample_entity
from outreach.rendering.sms import (
    GSM7,
    GSM7_EXTENSION,
    avoidable_ucs2,
    clusters,
    count_segments,
    describe,
    forces_ucs2,
    split_segments,
)
from outreach.rules.evaluate import condition_holds
from outreach.rules.loader import Rule
from outreach.sample import sample_rows
from outreach.settings import Settings
from outreach.state import records
from outreach.state.models import entity_table
from outreach.vocabulary import About

SAMPLE = "sample"  # the id of lint's sample customer
_ENTITY_PATH = re.compile(r"\b(order|checkout|survey)\s*\.")

Record = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """What a marketer picks: a rule (its template, as the rule sends it) or a bare template."""

    kind: str  # "rule" | "template"
    name: str
    template: str
    about: str
    channels: tuple[str, ...]
    description: str = ""
    rule: Rule | None = None

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    def info(self) -> RuleInfo:
        return RuleInfo(self.name, self.about, self.channels, self.template, self.description)


@dataclass(frozen=True)
class Person:
    """A customer to render as, and where they come from."""

    customer: Record
    source: str  # "database" | "bundled" | "sample"


@dataclass(frozen=True)
class Chosen:
    """The record a message is about: one of the customer's, or a sample one when they have none."""

    entity: Record | None
    record_id: str | None
    choices: tuple[str, ...]
    note: str = ""


@dataclass
class _Loaded:
    """The rules and templates as of one fingerprint."""

    fingerprint: str
    settings: Settings
    compiled: CompiledTemplates
    renderer: Renderer | None
    targets: dict[str, Target]
    rules: list[RuleInfo]
    renderer_error: str = ""
    rules_problems: list[Problem] = field(default_factory=list)

    @cached_property
    def problems(self) -> list[Problem]:
        """The rules files', then the templates', as `outreach check` lists them (computed once)."""
        return self.rules_problems + lint_templates(self.settings, self.rules)


def _walk(folder: Path) -> Iterable[tuple[str, int, int]]:
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        try:
            stat = path.stat()
        except OSError:
            continue  # removed while we looked: the next look sees the new state
        yield str(path), stat.st_mtime_ns, stat.st_size


def _problem_json(problem: Problem) -> dict[str, Any]:
    where = problem.file + "".join(f":{n}" for n in (problem.line, problem.col) if n is not None)
    return {
        "where": where,
        "file": problem.file,
        "line": problem.line,
        "col": problem.col,
        "severity": problem.severity,
        "rule": problem.rule,
        "message": problem.message,
        "source_line": problem.source_line,
        "text": problem.format(),
    }


def _plain(value: Any) -> Record:
    """A customer or record as a plain dict (SQLModel instances from the samples included)."""
    if isinstance(value, dict):
        return dict(value)
    dumped: Record = value.model_dump()
    return dumped


class Studio:
    """The studio's model: catalog, customers, previews and test sends; no HTTP in here."""

    def __init__(self, app: App, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.app = app
        self.settings = app.settings
        self.clock = clock
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None

    # -- reading the folders ------------------------------------------------------------------

    def fingerprint(self) -> str:
        """Changes whenever a file under the rules or templates folder is added, removed or saved."""
        digest = hashlib.sha256()
        for folder in (self.app.rules_dir, self.app.templates_dir):
            for name, mtime, size in _walk(folder):
                digest.update(f"{name}\0{mtime}\0{size}\n".encode())
        return digest.hexdigest()[:16]

    def loaded(self) -> _Loaded:
        """The rules and templates as they are on disk now (read again only after a change)."""
        fingerprint = self.fingerprint()
        with self._lock:
            if self._loaded is None or self._loaded.fingerprint != fingerprint:
                self._loaded = self._load(fingerprint)
            return self._loaded

    def _load(self, fingerprint: str) -> _Loaded:
        rules, rules_problems = self.app.check_rules()
        compiled = compile_templates(self.settings)
        renderer: Renderer | None = None
        renderer_error = ""
        try:
            renderer = Renderer.from_compiled(self.settings, compiled)
        except ConfigError as exc:
            renderer_error = str(exc)
        infos = [RuleInfo(r.name, r.about, r.channels, r.template, r.description) for r in rules]
        targets: dict[str, Target] = {}
        for rule in rules:
            target = Target(
                "rule", rule.name, rule.template, rule.about, rule.channels, rule.description, rule
            )
            targets[target.id] = target
        for name in compiled.catalog.templates:
            files = [f for f in compiled.catalog.files.values() if f.template == name]
            channels = tuple(
                c
                for c, kind in (("email", KIND_EMAIL_HTML), ("sms", KIND_SMS))
                if any(f.kind == kind for f in files)
            )
            used = [r for r in rules if r.template == name]
            about = used[0].about if used else self._guess_about(files)
            target = Target("template", name, name, about, channels or ("email", "sms"))
            targets[target.id] = target
        return _Loaded(
            fingerprint, self.settings, compiled, renderer, targets, infos, renderer_error, rules_problems
        )

    @staticmethod
    def _guess_about(files: list[TemplateFile]) -> str:
        """The record a template no rule uses reads (`order.…` → order), else the customer alone."""
        for f in files:
            found = _ENTITY_PATH.search(f.source)
            if found:
                return found.group(1)
        return About.CUSTOMER.value

    def target(self, target_id: str) -> Target:
        """The rule or template TARGET_ID (`rule:NAME`, `template:NAME`, or a bare rule or template name)."""
        targets = self.loaded().targets
        if target_id in targets:
            return targets[target_id]
        for prefix in ("rule:", "template:"):
            if prefix + target_id in targets:
                return targets[prefix + target_id]
        names = sorted({t.name for t in targets.values()})
        raise InputError(
            f'no rule or template named "{target_id}"{did_you_mean(target_id.split(":")[-1], names)}; '
            f"there are: {', '.join(names) or 'none'}"
        )

    # -- the catalog ---------------------------------------------------------------------------

    def catalog(self) -> dict[str, Any]:
        """Everything the page lists: rules, templates, locales, sample customers, test recipients."""
        loaded = self.loaded()
        catalog = loaded.compiled.catalog
        counts: dict[str, dict[str, int]] = {}
        root = self._templates_display()
        for problem in loaded.problems:
            for target in loaded.targets.values():
                if problem.file.startswith(f"{root}/{target.template}/"):
                    tally = counts.setdefault(target.template, {"error": 0, "warning": 0})
                    tally[problem.severity] = tally.get(problem.severity, 0) + 1
        known_locales = list(self.settings.delivery.locales)
        for f in catalog.files.values():
            if f.locale and f.locale not in known_locales:
                known_locales.append(f.locale)

        def entry(target: Target) -> dict[str, Any]:
            files = [
                f.display
                for f in catalog.files.values()
                if f.template == target.template and f.kind != KIND_SHARED
            ]
            return {
                "id": target.id,
                "kind": target.kind,
                "name": target.name,
                "template": target.template,
                "about": target.about,
                "channels": list(target.channels),
                "description": target.description,
                "used_by": sorted(
                    t.name
                    for t in loaded.targets.values()
                    if t.kind == "rule" and t.template == target.template
                ),
                "files": sorted(files),
                "problems": counts.get(target.template, {"error": 0, "warning": 0}),
            }

        return {
            "fingerprint": loaded.fingerprint,
            "company": self.settings.company.name,
            "mode": self.settings.delivery.mode,
            "smart_encoding": self.settings.twilio.smart_encoding,
            "default_locale": self.settings.delivery.default_locale,
            "locales": known_locales,
            "rules": [entry(t) for t in loaded.targets.values() if t.kind == "rule"],
            "templates": [entry(t) for t in loaded.targets.values() if t.kind == "template"],
            "samples": self.sample_customers(),
            "test_recipients": list(self.settings.studio.test_recipients),
            "rules_problems": [_problem_json(p) for p in loaded.rules_problems],
            "render_error": loaded.renderer_error,
        }

    def _templates_display(self) -> str:
        root = self.app.templates_dir
        try:
            return root.relative_to(self.settings.base_dir).as_posix()
        except ValueError:
            return str(root)

    # -- customers -----------------------------------------------------------------------------

    def sample_customers(self) -> list[dict[str, Any]]:
        """The customers that need no database: lint's sample, and `outreach demo`'s."""
        found = [
            {"id": SAMPLE, "name": "Sample customer (long names and links)", "locale": None, "source": SAMPLE}
        ]
        for row in sample_rows(self.clock())["customers"]:
            found.append({"id": row["id"], "name": row["name"], "locale": row["locale"], "source": "bundled"})
        return found

    def search_customers(self, query: str, limit: int = 20) -> list[dict[str, Any]]:
        """Customers of the database whose id, name or email contains QUERY (any case)."""
        text = query.strip().lower()
        if not text:
            return []
        table = entity_table(About.CUSTOMER)
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        condition = sa.or_(
            *(
                sa.func.lower(column).like(pattern, escape="\\")
                for column in (table.c.id, table.c.name, table.c.email)
            )
        )
        select = (
            sa.select(table.c.id, table.c.name, table.c.locale)
            .where(condition)
            .order_by(table.c.id)
            .limit(limit)
        )
        try:
            with self.app.engine.connect() as connection:
                rows = connection.execute(select).mappings().all()
        except (SQLAlchemyError, OutreachError) as exc:
            raise InputError(f"the database cannot be searched: {exc}") from None
        return [{"id": r["id"], "name": r["name"], "locale": r["locale"], "source": "database"} for r in rows]

    def person(self, customer_id: str | None, locale: str | None, at: datetime) -> Person:
        """The customer CUSTOMER_ID from the database, else the bundled samples, else lint's sample."""
        if not customer_id or customer_id == SAMPLE:
            return Person(_plain(sample_customer(locale or self.settings.delivery.default_locale)), SAMPLE)
        try:
            with self.app.engine.connect() as connection:
                row = records.rows_by_id(connection, About.CUSTOMER, [customer_id]).get(customer_id)
        except (SQLAlchemyError, OutreachError):
            row = None  # no database at hand: the bundled customers still work
        if row is not None:
            return Person(row, "database")
        for bundled in sample_rows(at)["customers"]:
            if bundled["id"] == customer_id:
                return Person(bundled, "bundled")
        raise InputError(
            f'no customer "{customer_id}" in the database or among the bundled samples '
            f"({', '.join(c['id'] for c in self.sample_customers())})"
        )

    def _records_of(self, person: Person, about: str, at: datetime) -> list[Record]:
        customer_id = person.customer["id"]
        if person.source == "database":
            with self.app.engine.connect() as connection:
                return records.records_of_customer(connection, about, customer_id)
        if person.source == "bundled":
            table = entity_table(about).name
            return sorted(
                (r for r in sample_rows(at)[table] if r["customer_id"] == customer_id), key=lambda r: r["id"]
            )
        return []

    def choose(
        self, target: Target, person: Person, locale: str, at: datetime, record_id: str | None
    ) -> Chosen:
        """The record to render TARGET with: RECORD_ID, else the first for which the rule holds, else the first."""
        if target.about == About.CUSTOMER:
            return Chosen(None, None, ())
        found = self._records_of(person, target.about, at)
        ids = tuple(r["id"] for r in found)
        if record_id:
            for row in found:
                if row["id"] == record_id:
                    return Chosen(row, row["id"], ids)
            raise InputError(
                f'customer {person.customer["id"]} has no {target.about} "{record_id}"'
                + (f" (their {target.about}s: {', '.join(ids)})" if ids else "")
            )
        if found:
            if target.rule is not None:
                for row in found:
                    if condition_holds(
                        target.rule.condition, {"customer": person.customer, target.about: row}, at
                    ):
                        return Chosen(row, row["id"], ids)
            return Chosen(found[0], found[0]["id"], ids)
        sample = _plain(sample_entity(target.about, locale, at))
        sample["customer_id"] = person.customer["id"]
        note = (
            ""
            if person.source == SAMPLE
            else f"{person.customer['id']} has no {target.about}: a sample one is shown"
        )
        return Chosen(sample, None, (), note)

    # -- previews ------------------------------------------------------------------------------

    def render(
        self, target: Target, channel: str, person: Person, chosen: Chosen, locale: str | None, at: datetime
    ) -> RenderedMessage:
        """TARGET's CHANNEL message as PERSON in LOCALE (the customer's own when None); RenderFailure says why not."""
        loaded = self.loaded()
        if loaded.renderer is None:
            raise InputError(loaded.renderer_error)
        customer = dict(person.customer)
        if locale:
            customer["locale"] = locale
        try:
            return loaded.renderer.render_located(
                template=target.template,
                channel=channel,
                customer=customer,
                about=target.about,
                entity=chosen.entity,
                rule=target.info(),
                now=at,
            )
        except KeyError:
            # A file of this template did not compile: `problems` says where.
            raise RenderFailure(
                Problem(
                    f"{self._templates_display()}/{target.template}",
                    None,
                    None,
                    "the template does not compile",
                )
            ) from None

    def preview(
        self,
        target_id: str,
        *,
        locale: str | None = None,
        customer_id: str | None = None,
        at: datetime | None = None,
        record_id: str | None = None,
    ) -> dict[str, Any]:
        """Everything the page shows for one target, locale, customer and instant."""
        when = at or self.clock()
        loaded = self.loaded()
        target = self.target(target_id)
        person = self.person(customer_id, locale, when)
        wanted = locale or str(person.customer.get("locale") or self.settings.delivery.default_locale)
        chosen = self.choose(target, person, wanted, when, record_id)
        messages: dict[str, Any] = {}
        for channel in ("email", "sms"):
            messages[channel] = self._message(loaded, target, channel, person, chosen, wanted, when)
        root = self._templates_display()
        problems = [
            _problem_json(p)
            for p in loaded.problems
            if p.file.startswith(f"{root}/{target.template}/")
            or p.file.startswith(f"{root}/_")
            or (target.rule is not None and p.rule == target.name)
        ]
        customer = person.customer
        return {
            "fingerprint": loaded.fingerprint,
            "target": {
                "id": target.id,
                "kind": target.kind,
                "name": target.name,
                "template": target.template,
                "about": target.about,
                "channels": list(target.channels),
            },
            "locale": wanted,
            "dir": "rtl" if locales.babel_locale(wanted).text_direction == "rtl" else "ltr",
            "now": when.isoformat().replace("+00:00", "Z"),
            "customer": {
                "id": customer.get("id"),
                "name": customer.get("name"),
                "email": customer.get("email"),
                "phone": customer.get("phone"),
                "locale": customer.get("locale"),
                "timezone": customer.get("timezone"),
                "source": person.source,
            },
            "record": {"id": chosen.record_id, "choices": list(chosen.choices), "note": chosen.note},
            "email": messages["email"],
            "sms": messages["sms"],
            "problems": problems,
            "sender": {"name": self.settings.sendgrid.from_name, "email": self.settings.sendgrid.from_email},
        }

    def _message(
        self,
        loaded: _Loaded,
        target: Target,
        channel: str,
        person: Person,
        chosen: Chosen,
        locale: str,
        at: datetime,
    ) -> dict[str, Any] | None:
        kind = KIND_EMAIL_HTML if channel == "email" else KIND_SMS
        if not loaded.compiled.catalog.locales_of(target.template, kind):
            return None  # the template has no file for this channel
        sent = channel in target.channels
        try:
            message = self.render(target, channel, person, chosen, locale, at)
        except RenderFailure as failure:
            return {"error": failure.problem.format(), "sent_by_rule": sent}
        except InputError as exc:
            return {"error": str(exc), "sent_by_rule": sent}
        if channel == "email":
            return {
                "locale": message.locale,
                "subject": message.subject,
                "html": message.html,
                "text": message.text,
                "sent_by_rule": sent,
            }
        return {"locale": message.locale, "sent_by_rule": sent, **self.sms_view(message.sms or "")}

    def sms_view(self, body: str) -> dict[str, Any]:
        """An SMS as the page draws it: each character marked, the segments and what forces UCS-2."""
        smart = self.settings.twilio.smart_encoding
        counted = count_segments(body, smart_encoding=smart)
        # When only punctuation, symbols or emoji make it UCS-2 they are what to fix, in red; in a
        # message whose script is UCS-2 anyway (Arabic) nothing is, and nothing shouts.
        avoidable = avoidable_ucs2(body, smart_encoding=smart)
        runs: list[dict[str, str]] = []
        for cluster in clusters(body):
            if forces_ucs2(cluster, smart_encoding=smart):
                kind = "ucs2" if avoidable is not None else "script"
            elif smart and forces_ucs2(cluster):
                kind = "replaced"  # Smart Encoding sends a GSM-7 look-alike
            elif counted.encoding == GSM7 and cluster in GSM7_EXTENSION:
                kind = "extension"  # two septets
            else:
                kind = "gsm7"
            if runs and runs[-1]["kind"] == kind and kind != "ucs2":
                runs[-1]["text"] += cluster
            else:
                runs.append({"text": cluster, "kind": kind})
        return {
            "body": body,
            "runs": runs,
            "encoding": counted.encoding,
            "segments": counted.count,
            "units": counted.units,
            "per_segment": (160 if counted.count == 1 else 153)
            if counted.encoding == GSM7
            else (70 if counted.count == 1 else 67),
            "parts": split_segments(body, smart_encoding=smart),
            "ucs2": [{"character": c, "name": describe(c)} for c in counted.ucs2_characters],
            "avoidable": None
            if avoidable is None
            else {
                "characters": [
                    {"character": c, "name": describe(c), "replacement": avoidable.replacements.get(c)}
                    for c in avoidable.characters
                ],
                "gsm7_segments": avoidable.gsm7.count,
            },
            "smart_encoding": smart,
        }

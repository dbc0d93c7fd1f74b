"""Render one message for one customer: the API delivery and `outreach preview --render` call."""

from __future__ import annotations

import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Template, TemplateSyntaxError
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.exceptions import SecurityError, UndefinedError

from outreach import locales
from outreach.clock import to_utc
from outreach.errors import (
    ConfigError,
    Problem,
    RenderError,
    TemplateError,
    did_you_mean,
)
from outreach.rendering.environment import (
    REMOVED_FILTERS,
    Budget,
    Limits,
    Record,
    RenderScope,
    SafeEnvironment,
    record_of,
    to_view,
)
from outreach.rendering.filters import Formatting
from outreach.rendering.loader import (
    KIND_EMAIL_HTML,
    KIND_EMAIL_TEXT,
    KIND_SMS,
    Catalog,
    TemplateFile,
    load_catalog,
    sorted_problems,
)
from outreach.rendering.sms import count_segments, plain_spaces, with_opt_out
from outreach.rendering.text import html_to_text
from outreach.settings import Settings
from outreach.state.models import Customer

# `about` → the variable the rule's entity is known by in templates.
ENTITY_VARIABLES: dict[str, str | None] = {
    "order": "order",
    "checkout": "checkout",
    "survey": "survey",
    "customer": None,
}
COMMON_VARIABLES = ("customer", "rule", "company", "unsubscribe_url", "now", "lang", "dir", "step", "matches")


@dataclass(frozen=True)
class RuleInfo:
    """What templates see as `rule`, and what lint needs to know about a rule."""

    name: str
    about: str  # "order" | "checkout" | "survey" | "customer"
    channels: tuple[str, ...]
    template: str
    description: str = ""
    # For lint: the journey step this template renders (number, of) and how many records a
    # grouped message is checked with.
    step: tuple[int, int] = (1, 1)
    group_size: int = 1


@dataclass(frozen=True)
class RenderedMessage:
    """One message exactly as the customer will receive it."""

    channel: str  # "email" | "sms"
    locale: str  # the template locale used, after fallback
    subject: str | None = None  # email only
    text: str | None = None  # email plain-text part
    html: str | None = None  # email HTML part
    sms: str | None = None  # SMS body including the opt-out line
    segments: int | None = None  # SMS segments
    encoding: str | None = None  # "GSM-7" | "UCS-2" for SMS
    ucs2_characters: tuple[str, ...] = ()  # SMS: the characters that made it UCS-2

    def to_dict(self) -> dict[str, Any]:
        """The message as JSON-ready data (for `preview --json` and the outbox)."""
        return {
            "channel": self.channel,
            "locale": self.locale,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "sms": self.sms,
            "segments": self.segments,
            "encoding": self.encoding,
        }


class RenderFailure(Exception):
    """Why one message could not be rendered, located in its template; becomes a RenderError."""

    def __init__(self, problem: Problem, *, too_long: bool = False) -> None:
        super().__init__(problem.format())
        self.problem = problem
        self.too_long = too_long


@dataclass(frozen=True)
class CompiledTemplates:
    """A templates folder read and compiled, with every problem found on the way."""

    catalog: Catalog
    environment: SafeEnvironment
    bodies: Mapping[str, Template]
    subjects: Mapping[str, Template]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


_NO_SUCH = re.compile(r"^No (filter|test) named '([^']*)'\.?$")


def _compile_message(env: SafeEnvironment, message: str) -> str:
    """Jinja's compile message, with the reason a filter is missing or a close match."""
    match = _NO_SUCH.match(message)
    if match is None:
        return message
    what, name = match.groups()
    if what == "filter" and name in REMOVED_FILTERS:
        return f"the {name!r} filter is not available: {REMOVED_FILTERS[name]}"
    known = [n for n in (env.filters if what == "filter" else env.tests) if not n.startswith("_")]
    return f"unknown {what} {name!r}{did_you_mean(name, known)}"


def _syntax_problem(
    env: SafeEnvironment, f: TemplateFile, exc: TemplateSyntaxError, line_offset: int = 0
) -> Problem:
    line = (exc.lineno or 1) + line_offset
    message = _compile_message(env, exc.message or str(exc))
    return Problem(f.display, line, None, message, source_line=f.line(line))


def _too_deep(f: TemplateFile, line: int | None = None) -> Problem:
    # Jinja's parser and compiler recurse once per level of nesting (parentheses, blocks).
    return Problem(
        f.display,
        line,
        None,
        "the template nests too deeply to compile (brackets or blocks inside each other by the "
        "hundred): write it more simply",
        source_line=f.line(line),
    )


def compile_subject(env: SafeEnvironment, f: TemplateFile) -> Template:
    """The subject line of F as a template of its own (text, never HTML-escaped)."""
    assert f.subject is not None
    code = env.compile(f.subject, name=f"{f.name}#subject", filename=f"{f.path}#subject")
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def compile_templates(settings: Settings, limits: Limits = Limits()) -> CompiledTemplates:
    """Read and compile every file of the templates folder, collecting every problem."""
    catalog, problems = load_catalog(settings.path(settings.paths.templates), settings.base_dir)
    env = SafeEnvironment(catalog.jinja_loader(), limits)
    bodies: dict[str, Template] = {}
    subjects: dict[str, Template] = {}
    for name, f in sorted(catalog.files.items()):
        try:
            bodies[name] = env.get_template(name)
        except TemplateSyntaxError as exc:
            problems.append(_syntax_problem(env, f, exc))
        except RecursionError:
            problems.append(_too_deep(f))
        if f.subject is not None:
            try:
                subjects[name] = compile_subject(env, f)
            except TemplateSyntaxError as exc:
                problems.append(_syntax_problem(env, f, exc, (f.subject_line or 1) - 1))
            except RecursionError:
                problems.append(_too_deep(f, f.subject_line))
    return CompiledTemplates(
        catalog,
        env,
        types.MappingProxyType(bodies),
        types.MappingProxyType(subjects),
        tuple(sorted_problems(problems)),
    )


def _unsubscribe_url(settings: Settings, customer_id: str) -> str:
    return settings.company.unsubscribe_url.format(customer_id=quote(customer_id, safe=""))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UndefinedError):
        return str(exc)
    if isinstance(exc, SecurityError):
        return f"stopped: {exc}"
    if isinstance(exc, (JinjaTemplateError, ValueError)):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "stopped: a macro calls itself without end"
    return f"{type(exc).__name__}: {exc}"


class Renderer:
    """Every template of the templates folder, compiled once and ready to render.

    Construction fails with TemplateError listing every broken file, so a broken edit is
    reported when templates are (re)loaded, never for one customer at send time.
    """

    def __init__(self, settings: Settings, *, limits: Limits = Limits()) -> None:
        compiled = compile_templates(settings, limits)
        if compiled.errors:
            raise TemplateError(problems=compiled.errors)
        self._init(settings, compiled)

    @classmethod
    def from_compiled(cls, settings: Settings, compiled: CompiledTemplates) -> Renderer:
        """A renderer over templates already compiled (lint renders them with sample data)."""
        renderer = cls.__new__(cls)
        renderer._init(settings, compiled)
        return renderer

    def _init(self, settings: Settings, compiled: CompiledTemplates) -> None:
        try:
            _unsubscribe_url(settings, "customer-id")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"company.unsubscribe_url {settings.company.unsubscribe_url!r} cannot be filled in "
                f"({exc!r}): write it with {{customer_id}}, "
                "e.g. https://example.com/unsubscribe/{customer_id}"
            ) from None
        self._settings = settings
        self._compiled = compiled
        self._catalog = compiled.catalog
        self._env = compiled.environment
        self._limits = compiled.environment.limits
        self._company = record_of(settings.company, "company")  # read-only, the same for every message

    @property
    def templates(self) -> tuple[str, ...]:
        """The names of the message templates (the folders of the templates folder)."""
        return tuple(self._catalog.templates)

    def exists(self, template: str, channel: str, locale: str) -> bool:
        """Whether TEMPLATE has a CHANNEL file in exactly LOCALE (no fallback)."""
        kind = KIND_EMAIL_HTML if channel == "email" else KIND_SMS if channel == "sms" else None
        return kind is not None and self._catalog.file_for(template, kind, locale) is not None

    def resolve_locale(self, template: str, channel: str, locale: str | None) -> str | None:
        """The locale a customer with LOCALE gets TEMPLATE in, after fallback; None if in none."""
        found = self._catalog.resolve(template, channel, locale, self._settings.delivery.default_locale)
        return found.locale if found is not None else None

    def render(
        self,
        *,
        template: str,
        channel: str,
        customer: Customer | Mapping[str, Any],
        about: str,
        entity: object | None,
        rule: RuleInfo,
        now: datetime,
        step: tuple[int, int] = (1, 1),
        matches: Sequence[object] | None = None,
    ) -> RenderedMessage:
        """The message TEMPLATE makes on CHANNEL for CUSTOMER; RenderError says what failed where.

        STEP is (number, of) of the rule's journey; MATCHES the records a grouped message is
        about (default: the one ENTITY)."""
        try:
            return self.render_located(
                template=template,
                channel=channel,
                customer=customer,
                about=about,
                entity=entity,
                rule=rule,
                now=now,
                step=step,
                matches=matches,
            )
        except RenderFailure as failure:
            who = getattr(customer, "id", None) or (
                customer.get("id") if isinstance(customer, Mapping) else None
            )
            raise RenderError(
                f"{failure.problem.format()} (rule {rule.name}, customer {who})"
            ) from failure.__cause__

    def render_located(
        self,
        *,
        template: str,
        channel: str,
        customer: Customer | Mapping[str, Any],
        about: str,
        entity: object | None,
        rule: RuleInfo,
        now: datetime,
        step: tuple[int, int] = (1, 1),
        matches: Sequence[object] | None = None,
    ) -> RenderedMessage:
        """Like `render`, raising RenderFailure with the failing file and line."""
        if channel not in ("email", "sms"):
            raise self._failure(template, f"unknown channel {channel!r}: templates exist for email and sms")
        customer_view = self._record(customer, "customer", template)
        customer_locale = (
            customer_view.get("locale") if isinstance(customer_view.get("locale"), str) else None
        )
        main = self._catalog.resolve(
            template, channel, customer_locale, self._settings.delivery.default_locale
        )
        if main is None:
            tried = ", ".join(locales.candidates(customer_locale, self._settings.delivery.default_locale))
            raise self._failure(template, f"no {channel} template {template!r} in any of: {tried}")
        assert main.locale is not None
        formatting = self._formatting(main, customer_view)
        variables = self._variables(
            customer_view, about, entity, rule, now, main.locale, formatting, template
        )
        number, of = step
        variables["step"] = Record("step", {"number": number, "of": of}, free_form=False)
        name = ENTITY_VARIABLES.get(about)
        given = list(matches) if matches is not None else [entity if name is not None else customer]
        variables["matches"] = [self._record(item, name or "customer", template) for item in given]
        scope = RenderScope(Budget(self._limits), formatting)
        if channel == "sms":
            return self._render_sms(main, variables, scope)
        return self._render_email(main, variables, scope)

    # --- parts ----------------------------------------------------------------------------

    def _render_email(
        self, main: TemplateFile, variables: dict[str, Any], scope: RenderScope
    ) -> RenderedMessage:
        assert main.locale is not None
        subject = " ".join(
            self._run(main, self._compiled.subjects[main.name], variables, scope, subject=True).split()
        )
        if not subject:
            raise self._failure(main.display, "the subject is empty", line=main.subject_line)
        html = self._run(main, self._compiled.bodies[main.name], variables, scope).strip()
        if not html:
            raise self._failure(main.display, "the email body is empty")
        text_file = self._catalog.file_for(main.template, KIND_EMAIL_TEXT, main.locale)
        if text_file is not None:
            text = self._run(text_file, self._compiled.bodies[text_file.name], variables, scope).strip()
            if not text:
                raise self._failure(text_file.display, "the text part is empty")
        else:
            text = html_to_text(html).strip()
        return RenderedMessage(
            channel="email", locale=main.locale, subject=subject, text=text + "\n", html=html + "\n"
        )

    def _render_sms(
        self, main: TemplateFile, variables: dict[str, Any], scope: RenderScope
    ) -> RenderedMessage:
        assert main.locale is not None
        body = self._run(main, self._compiled.bodies[main.name], variables, scope)
        body = "\n".join(line.rstrip() for line in body.strip().splitlines())
        if not body:
            raise self._failure(main.display, "the SMS is empty")
        sms = plain_spaces(with_opt_out(body, main.locale, self._settings.delivery.default_locale))
        segments = count_segments(sms, smart_encoding=self._settings.twilio.smart_encoding)
        limit = self._settings.delivery.sms_max_segments
        if segments.count > limit:
            raise RenderFailure(
                Problem(
                    main.display,
                    None,
                    None,
                    f"the SMS is {segments.count} segments ({segments.encoding}, {len(sms)} characters "
                    f"with the opt-out line), more than delivery.sms_max_segments = {limit}",
                ),
                too_long=True,
            )
        return RenderedMessage(
            channel="sms",
            locale=main.locale,
            sms=sms,
            segments=segments.count,
            encoding=segments.encoding,
            ucs2_characters=segments.ucs2_characters,
        )

    def _run(
        self,
        f: TemplateFile,
        compiled: Template,
        variables: dict[str, Any],
        scope: RenderScope,
        *,
        subject: bool = False,
    ) -> str:
        try:
            return self._env.render_template(compiled, variables, scope)
        except Exception as exc:  # anything a template does wrong fails this message only
            raise self._locate(f, exc, subject) from exc

    def _locate(self, f: TemplateFile, exc: BaseException, subject: bool) -> RenderFailure:
        """The failure of EXC, placed at the innermost template line the traceback passes."""
        where, line = f, None
        tb = exc.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            in_subject = filename.endswith("#subject")
            found = self._catalog.by_path(filename.removesuffix("#subject"))
            if found is not None:
                where = found
                line = tb.tb_lineno + ((found.subject_line or 1) - 1 if in_subject else 0)
            tb = tb.tb_next
        if line is None and subject:
            line = f.subject_line
        return RenderFailure(Problem(where.display, line, None, _reason(exc), source_line=where.line(line)))

    def _failure(self, where: str, message: str, line: int | None = None) -> RenderFailure:
        return RenderFailure(Problem(where, line, None, message))

    # --- variables ------------------------------------------------------------------------

    def _record(self, value: Any, path: str, template: str) -> Record:
        if value is None:
            raise self._failure(template, f"no {path} was given to render {template!r}")
        try:
            return record_of(value, path)
        except TypeError as exc:
            raise self._failure(template, str(exc)) from None

    def _formatting(self, main: TemplateFile, customer: Record) -> Formatting:
        """The customer's own locale when it is a variant of the template's language, else the template's."""
        assert main.locale is not None
        template_locale = main.locale
        wanted = customer.get("locale")
        chosen = template_locale
        if isinstance(wanted, str) and wanted:
            try:
                if locales.babel_locale(wanted).language == locales.babel_locale(template_locale).language:
                    chosen = locales.canonical(wanted)
            except ValueError:
                pass
        zone = customer.get("timezone") or "UTC"
        try:
            return Formatting.of(chosen, str(zone))
        except ValueError as exc:
            raise self._failure(main.display, f"customer {customer.get('id')}: {exc}") from None

    def _variables(
        self,
        customer: Record,
        about: str,
        entity: object | None,
        rule: RuleInfo,
        now: datetime,
        locale: str,
        formatting: Formatting,
        template: str,
    ) -> dict[str, Any]:
        if about not in ENTITY_VARIABLES:
            raise self._failure(template, f"unknown about {about!r}: one of {', '.join(ENTITY_VARIABLES)}")
        variables: dict[str, Any] = {
            "customer": customer,
            "rule": Record(
                "rule",
                {
                    "name": rule.name,
                    "about": rule.about,
                    "channels": tuple(rule.channels),
                    "template": rule.template,
                    "description": rule.description,
                },
                free_form=False,
            ),
            "company": self._company,
            "unsubscribe_url": _unsubscribe_url(self._settings, str(customer.get("id", ""))),
            "now": to_view(to_utc(now), "now"),
            "lang": locale,
            "dir": "rtl" if formatting.right_to_left else "ltr",
        }
        name = ENTITY_VARIABLES[about]
        if name is not None:
            variables[name] = self._record(entity, name, template)
        return variables

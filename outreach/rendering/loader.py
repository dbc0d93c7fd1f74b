"""The templates folder: which files exist, their front matter, and locale fallback.

    templates/
      NAME/email.LOCALE.html     YAML front matter (`subject:`), then the HTML body
      NAME/email.LOCALE.txt      optional plain-text part (else derived from the HTML)
      NAME/sms.LOCALE.txt        the SMS body (the opt-out line is added when rendering)
      _NAME/…                    shared files (layouts, macros) for {% extends %} / {% include %}

Problems are collected, never raised one at a time, so `outreach check` and a reload can report
every broken file at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml
from jinja2 import BaseLoader, Environment, TemplateNotFound

from outreach import locales, safe_yaml
from outreach.errors import Problem, did_you_mean

FRONT_MATTER_KEYS = ("subject",)
MAX_TEMPLATE_BYTES = 64 * 1024

_FILE = re.compile(
    r"^(?P<channel>email|sms)\.(?P<locale>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*)\.(?P<ext>html|txt)$"
)
_FENCE = "---"
_FRONT_MATTER_END = ("---", "...")

KIND_EMAIL_HTML = "email.html"
KIND_EMAIL_TEXT = "email.txt"
KIND_SMS = "sms.txt"
KIND_SHARED = "shared"


@dataclass(frozen=True)
class TemplateFile:
    """One file of the templates folder, read and split into what Jinja compiles."""

    name: str  # Jinja's name for it: "late_delivery/email.en.html"
    path: Path
    display: str  # as people see it: "templates/late_delivery/email.en.html"
    template: str  # the folder: "late_delivery" (or "_layout" for shared files)
    kind: str
    locale: str | None
    source: str  # the whole file
    body: str  # what Jinja compiles: the front matter blanked out, line numbers kept
    subject: str | None = None
    subject_line: int | None = None  # 1-based line, and column, of the subject's first character
    subject_col: int | None = None

    @property
    def channel(self) -> str | None:
        return self.kind.split(".")[0] if self.kind != KIND_SHARED else None

    def line(self, number: int | None) -> str | None:
        """The text of line NUMBER (1-based) of the file."""
        lines = self.source.splitlines()
        if number is None or not 1 <= number <= len(lines):
            return None
        return lines[number - 1]


@dataclass(frozen=True)
class Catalog:
    """Every file of a templates folder, by Jinja name, and how to find one for a customer."""

    root: Path
    files: dict[str, TemplateFile]

    @property
    def templates(self) -> list[str]:
        """The message templates (folders not starting with `_`), sorted."""
        return sorted({f.template for f in self.files.values() if f.kind != KIND_SHARED})

    @cached_property
    def _by_key(self) -> dict[tuple[str, str, str | None], TemplateFile]:
        return {(f.template, f.kind, f.locale): f for f in self.files.values()}

    @cached_property
    def _by_path(self) -> dict[str, TemplateFile]:
        return {str(f.path): f for f in self.files.values()}

    def file_for(self, template: str, kind: str, locale: str) -> TemplateFile | None:
        """The file of KIND for TEMPLATE in exactly LOCALE, if there is one."""
        return self._by_key.get((template, kind, locales.canonical(locale)))

    def locales_of(self, template: str, kind: str) -> list[str]:
        """The locales TEMPLATE has a KIND file in."""
        return sorted(
            f.locale for f in self.files.values() if f.template == template and f.kind == kind and f.locale
        )

    def resolve(
        self, template: str, channel: str, locale: str | None, default_locale: str
    ) -> TemplateFile | None:
        """The file a customer with LOCALE gets for CHANNEL: their locale, its language, the default."""
        kind = KIND_EMAIL_HTML if channel == "email" else KIND_SMS
        for candidate in locales.candidates(locale, default_locale):
            found = self.file_for(template, kind, candidate)
            if found is not None:
                return found
        return None

    def by_path(self, filename: str) -> TemplateFile | None:
        return self._by_path.get(filename)

    def jinja_loader(self) -> BaseLoader:
        return _CatalogLoader(self)


class _CatalogLoader(BaseLoader):
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        found = self._catalog.files.get(template)
        if found is None:
            raise TemplateNotFound(template)
        # A catalog never changes: a reload builds a new one.
        return found.body, str(found.path), lambda: True


def _display(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _front_matter(text: str, display: str) -> tuple[str, str | None, int | None, int | None, list[Problem]]:
    """(body with the front matter blanked, subject, its line and column, problems)."""
    lines = text.splitlines(keepends=True)
    example = 'start the file with three lines: ---, subject: "…", ---'
    if not lines or lines[0].strip() != _FENCE:
        return (
            text,
            None,
            None,
            None,
            [
                Problem(
                    display,
                    1,
                    1,
                    f"email HTML must begin with front matter: {example}",
                    source_line=lines[0] if lines else "",
                )
            ],
        )
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in _FRONT_MATTER_END), None)
    if end is None:
        return (
            text,
            None,
            None,
            None,
            [
                Problem(
                    display,
                    1,
                    1,
                    "front matter is not closed: add a line with --- after it",
                    source_line=lines[0],
                )
            ],
        )
    # Blank lines keep the body's line numbers equal to the file's for every error message.
    body = "\n" * (end + 1) + "".join(lines[end + 1 :])
    raw = "".join(lines[1:end])
    try:
        node = safe_yaml.compose(raw)
    except safe_yaml.YamlRefused as exc:
        where = exc.located
        line = where.line + 1 if where.line is not None else 2
        col = where.col
        reason = where.message.removeprefix("not valid YAML: ")
        return (
            body,
            None,
            None,
            None,
            [
                Problem(
                    display,
                    line,
                    col,
                    f"front matter is not valid YAML: {reason} "
                    "(put the subject in quotes when it contains {{ … }} or a colon)",
                    source_line=lines[line - 1] if line - 1 < len(lines) else None,
                )
            ],
        )
    if not isinstance(node, yaml.MappingNode):
        return (
            body,
            None,
            None,
            None,
            [
                Problem(
                    display,
                    2,
                    1,
                    f"front matter must be keys and values: {example}",
                    source_line=lines[1] if len(lines) > 1 else None,
                )
            ],
        )
    problems: list[Problem] = []
    subject: str | None = None
    subject_line = subject_col = None
    for key_node, value_node in node.value:
        key = key_node.value
        line = key_node.start_mark.line + 2
        if key not in FRONT_MATTER_KEYS:
            hint = (
                did_you_mean(str(key), FRONT_MATTER_KEYS) or f"; the keys are: {', '.join(FRONT_MATTER_KEYS)}"
            )
            problems.append(
                Problem(
                    display,
                    line,
                    key_node.start_mark.column + 1,
                    f"unknown front matter key {key!r}{hint}",
                    source_line=lines[line - 1],
                )
            )
            continue
        if not isinstance(value_node, yaml.ScalarNode) or value_node.tag != "tag:yaml.org,2002:str":
            problems.append(
                Problem(
                    display,
                    line,
                    value_node.start_mark.column + 1,
                    f'{key} must be text, e.g. subject: "Your order is on its way"',
                    source_line=lines[line - 1],
                )
            )
            continue
        subject = value_node.value
        subject_line = value_node.start_mark.line + 2
        subject_col = value_node.start_mark.column + 1
        if value_node.style in ("'", '"'):
            subject_col += 1
    if subject is None and not problems:
        problems.append(
            Problem(
                display,
                2,
                1,
                'front matter has no subject: add subject: "…"',
                source_line=lines[1] if len(lines) > 1 else None,
            )
        )
    elif subject is not None and not subject.strip():
        problems.append(
            Problem(
                display,
                subject_line,
                subject_col,
                "the subject is empty",
                source_line=lines[subject_line - 1] if subject_line else None,
            )
        )
        subject = None
    return body, subject, subject_line, subject_col, problems


def _read(path: Path, display: str) -> tuple[str | None, list[Problem]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [Problem(display, None, None, f"cannot read the file: {exc.strerror}")]
    if len(data) > MAX_TEMPLATE_BYTES:
        return None, [
            Problem(
                display,
                None,
                None,
                f"the file is {len(data)} bytes, more than a template may be ({MAX_TEMPLATE_BYTES})",
            )
        ]
    try:
        return safe_yaml.decode(data, "a template"), []
    except safe_yaml.YamlRefused as exc:
        where = exc.located
        return None, [Problem(display, where.line, where.col, where.message)]


def _walk(root: Path) -> Iterable[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield path


def load_catalog(root: Path, base_dir: Path) -> tuple[Catalog, list[Problem]]:
    """Read every template under ROOT; paths in problems are shown relative to BASE_DIR."""
    files: dict[str, TemplateFile] = {}
    problems: list[Problem] = []
    if not root.is_dir():
        shown = _display(root, base_dir)
        return Catalog(root, files), [
            Problem(shown, None, None, "the templates folder does not exist (settings paths.templates)")
        ]
    for path in _walk(root):
        relative = path.relative_to(root)
        display = _display(path, base_dir)
        parts = relative.parts
        if len(parts) == 1:
            continue  # README and such beside the template folders
        folder = parts[0]
        text, read_problems = _read(path, display)
        problems.extend(read_problems)
        if text is None:
            continue
        name = relative.as_posix()
        if folder.startswith("_"):
            files[name] = TemplateFile(name, path, display, folder, KIND_SHARED, None, text, text)
            continue
        match = _FILE.match(path.name) if len(parts) == 2 else None
        if match is None:
            problems.append(
                Problem(
                    display,
                    None,
                    None,
                    f"unexpected file in template {folder!r}: template files are "
                    "email.LOCALE.html, email.LOCALE.txt and sms.LOCALE.txt (e.g. sms.en.txt)",
                )
            )
            continue
        channel, locale, ext = (
            match.group("channel"),
            locales.canonical(match.group("locale")),
            match.group("ext"),
        )
        if channel == "sms" and ext != "txt":
            problems.append(
                Problem(display, None, None, f"an SMS is plain text: rename it to sms.{locale}.txt")
            )
            continue
        try:
            locales.babel_locale(locale)
        except ValueError:
            problems.append(
                Problem(
                    display, None, None, f"unknown locale {locale!r} in the file name (e.g. en, ar, ar-EG)"
                )
            )
            continue
        if channel == "email" and ext == "html":
            body, subject, line, col, fm_problems = _front_matter(text, display)
            problems.extend(fm_problems)
            files[name] = TemplateFile(
                name, path, display, folder, KIND_EMAIL_HTML, locale, text, body, subject, line, col
            )
        else:
            kind = KIND_EMAIL_TEXT if channel == "email" else KIND_SMS
            files[name] = TemplateFile(name, path, display, folder, kind, locale, text, text)
    catalog = Catalog(root, files)
    for f in files.values():
        if (
            f.kind == KIND_EMAIL_TEXT
            and catalog.file_for(f.template, KIND_EMAIL_HTML, f.locale or "") is None
        ):
            problems.append(
                Problem(
                    f.display, None, None, f"a text part needs its HTML: add email.{f.locale}.html beside it"
                )
            )
    return catalog, problems


def sorted_problems(problems: Sequence[Problem]) -> list[Problem]:
    """PROBLEMS without duplicates, ordered by file, line and column."""
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.file, p.line or 0, p.col or 0, p.message))

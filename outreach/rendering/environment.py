"""The Jinja2 environment templates render in: sandboxed, strict, and bounded in CPU and memory.

Jinja2's immutable sandbox stops templates from reaching Python internals (`__class__`,
`str.format` tricks, mutating lists), but it does not bound the work a template does:
`'a' * 10**9`, `10**100000` or nested loops run until the machine gives up. Every operation that
can grow a value or loop is therefore routed through a per-message `Budget`:

- `*`, `**`, `+` and `%` are intercepted and refuse results over `Limits.max_string` characters
  (or `Limits.max_int_bits` bits) *before* computing them; lists count what they hold, so a
  list of a thousand references to one long string is as large as its text would be;
- string methods and filters that pad or repeat (`center`, `replace`, `join`, `format`, …) are
  checked on their arguments first, every other call and filter on its result;
- every list, tuple and dict a template writes is weighed the same way;
- every `for` loop and `range` counts against `Limits.max_iterations`;
- every join of output (`~`, `{% set %}` blocks, macros, the message itself) counts against
  `Limits.max_output`;
- CPU time of the rendering thread is checked every few dozen operations against
  `Limits.cpu_seconds`.

Values reach templates as `Record`s: read-only views that expose fields only (never methods),
so `checkout.items` is the field, not `dict.items`, and a missing field is an error that names
its path. A printed `None` is an error too: a message never says "Dear ,".
"""

from __future__ import annotations

import functools
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as clock_time
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, Template, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from outreach.errors import did_you_mean
from outreach.rendering import filters as fmt
from outreach.rendering.filters import Formatting

LOOP_GUARD = "_bounded_loop"
VALUE_GUARD = "_bounded_value"

# Filters templates do not get: `random` makes the preview differ from what is sent; `safe`
# would let customer data reach the HTML unescaped.
REMOVED_FILTERS: dict[str, str] = {
    "random": "it would make the preview differ from what the customer receives",
    "safe": "customer data must stay escaped in HTML",
}
REMOVED_GLOBALS = ("lipsum",)

# String methods a template may call; the rest (`translate`, `expandtabs`, `encode`, …) can
# grow a string without bound or are of no use in a message.
STR_METHODS = frozenset(
    [
        "capitalize",
        "casefold",
        "center",
        "count",
        "endswith",
        "find",
        "format",
        "format_map",
        "index",
        "isalnum",
        "isalpha",
        "isascii",
        "isdecimal",
        "isdigit",
        "islower",
        "isnumeric",
        "isspace",
        "istitle",
        "isupper",
        "join",
        "ljust",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "replace",
        "rfind",
        "rindex",
        "rjust",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
        "zfill",
    ]
)

_PRINTF_WIDTH = re.compile(r"%[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_STRFTIME_WIDTH = re.compile(r"%[-_0^#]*(\d+)")


@dataclass(frozen=True)
class Limits:
    """What rendering one message may cost; far above any real message, far below harm."""

    cpu_seconds: float = 1.0
    max_string: int = 100_000  # characters and items of any one value a template builds (`weight`)
    max_output: int = 200_000  # characters of the rendered text, and of any captured block
    max_iterations: int = 10_000  # loop iterations for the whole message
    max_int_bits: int = 4_096


class LimitExceeded(SecurityError):
    """The template tried to do more work than one message may."""


class Budget:
    """What one message has spent so far, against its `Limits`.

    CPU time is read from the rendering thread's own CPU clock: it measures the work done,
    whatever else the machine is busy with, and is not the wall clock decisions use. Reading
    that clock is a system call (its cost shows in a dispatcher sending hundreds of messages a
    second), and a thread cannot have used more CPU time than has passed: so it is read at the
    start and then only once the wall clock (`wall`) says the limit could have been reached.
    """

    CHECK_EVERY = 64

    def __init__(
        self,
        limits: Limits,
        meter: Callable[[], float] = time.thread_time,
        wall: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.limits = limits
        self._meter = meter
        self._wall = wall
        self._start = meter()
        self._wall_start = wall()
        self._operations = 0
        self._iterations = 0

    def tick(self) -> None:
        self._operations += 1
        if self._operations % self.CHECK_EVERY == 0:
            self.check_time()

    def check_time(self) -> None:
        if self._wall() - self._wall_start <= self.limits.cpu_seconds:
            return
        if self._meter() - self._start > self.limits.cpu_seconds:
            raise LimitExceeded(
                f"rendering used more than {self.limits.cpu_seconds:g}s of CPU time; "
                "look for loops that run too often"
            )

    def iterate(self) -> None:
        self._iterations += 1
        if self._iterations > self.limits.max_iterations:
            raise LimitExceeded(f"loops ran more than {self.limits.max_iterations} times in one message")
        self.tick()

    def allow_size(self, size: int, what: str = "a value") -> None:
        if size > self.limits.max_string:
            raise LimitExceeded(f"{what} would be {size} characters long, more than {self.limits.max_string}")

    def bounded(self, value: Any) -> Any:
        if isinstance(value, (str, list, tuple, dict, set, frozenset)):
            self.allow_size(self.weight(value))
        elif isinstance(value, int) and value.bit_length() > self.limits.max_int_bits:
            raise LimitExceeded(f"a number would have more than {self.limits.max_int_bits} bits")
        return value

    def weight(self, value: Any) -> int:
        """What turning VALUE into text could cost: its characters and items, nested ones included.

        A list of 1,000 references to one long string is cheap to build and huge to print
        (`|string`, `|tojson`, `~`), so lists count what they hold, not their length. Counting
        stops as soon as the limit is passed.
        """
        limit = self.limits.max_string
        total = 0
        pending: list[tuple[Any, int]] = [(value, 0)]
        while pending:
            item, depth = pending.pop()
            if isinstance(item, str):
                total += len(item)
            elif isinstance(item, (list, tuple, set, frozenset, dict)):
                if depth > 32:
                    raise LimitExceeded("values are nested more than 32 deep")
                total += len(item)
                members = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
                pending.extend((member, depth + 1) for member in members)
            else:
                total += 1
            if total > limit:
                return total
        return total

    def allow_output(self, size: int) -> None:
        if size > self.limits.max_output:
            raise LimitExceeded(
                f"the text would be {size} characters long, more than {self.limits.max_output}"
            )


@dataclass(frozen=True)
class RenderScope:
    """Everything a render needs besides its variables: the budget and the customer's formatting."""

    budget: Budget
    formatting: Formatting


_SCOPE: ContextVar[RenderScope | None] = ContextVar("outreach_render_scope", default=None)


def active_scope() -> RenderScope:
    """The scope of the render in progress.

    Raising outside a render also keeps Jinja's compiler from folding guarded filters and
    printed constants at compile time: they are evaluated, and checked, when rendering.
    """
    scope = _SCOPE.get()
    if scope is None:
        raise RuntimeError("templates render only through SafeEnvironment.render_template")
    return scope


class Record(Mapping[str, Any]):
    """A read-only view of a row or a JSON object as templates see it; fields only, never methods."""

    __slots__ = ("_free_form", "_path", "_values")

    def __init__(self, path: str, values: Mapping[str, Any], *, free_form: bool) -> None:
        self._path = path
        self._values = dict(values)
        self._free_form = free_form

    @property
    def path(self) -> str:
        return self._path

    @property
    def free_form(self) -> bool:
        return self._free_form

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<{self._path}>"

    def field(self, name: Any, undefined: Callable[..., Undefined]) -> Any:
        """The field NAME, or an undefined value whose error names the path and a close match."""
        if isinstance(name, str) and name in self._values:
            return self._values[name]
        if self._free_form:
            hint = f"{self._path} has no key {name!r}; use |default(…) where it may be missing"
        else:
            hint = f"{self._path} has no field {name!r}{did_you_mean(str(name), self._values)}"
        return undefined(hint=hint, name=str(name))


class Blank(str):
    """Text that is empty or only spaces, as stored: printing it is printing a missing value."""

    _path: str

    def __new__(cls, value: str, path: str) -> Blank:
        blank = super().__new__(cls, value)
        blank._path = path  # underscore: out of the sandbox's reach
        return blank


# Values templates see as they are: checked by exact type first, the common case of a field.
_PLAIN: frozenset[type] = frozenset({int, float, bool, type(None), datetime, date, clock_time})


def to_view(value: Any, path: str) -> Any:
    """VALUE as templates see it: JSON objects become free-form Records, lists become tuples,
    blank text becomes `Blank` (falsy, and an error when printed)."""
    kind = type(value)
    if kind in _PLAIN or (kind is str and value and not value.isspace()):
        return value
    if isinstance(value, Record):
        return value
    if isinstance(value, str) and not value.strip():
        return Blank(value, path)
    if isinstance(value, Mapping):
        return Record(path, _views(value.items(), path, str), free_form=True)
    if isinstance(value, (list, tuple)):
        return tuple(to_view(v, f"{path}[{i}]") for i, v in enumerate(value))
    return value


def _views(items: Iterable[tuple[Any, Any]], path: str, key: Callable[[Any], str]) -> dict[str, Any]:
    """The fields of a record as templates see them; a field's path is built only when its view
    needs one (a nested record, a list, blank text)."""
    views: dict[str, Any] = {}
    for name, value in items:
        kind = type(value)
        if kind in _PLAIN or (kind is str and value and not value.isspace()):
            views[key(name)] = value
        else:
            views[key(name)] = to_view(value, f"{path}.{name}")
    return views


def _same(name: str) -> str:
    return name


def record_of(entity: Any, path: str) -> Record:
    """A SQLModel/pydantic row (its declared fields) or a mapping, as a Record named PATH."""
    fields = getattr(type(entity), "model_fields", None)
    if fields is not None:
        values = {name: getattr(entity, name) for name in fields}
    elif isinstance(entity, Mapping):
        values = dict(entity)
    else:
        raise TypeError(f"{path}: cannot show a {type(entity).__name__} to templates")
    return Record(path, _views(values.items(), path, _same), free_form=False)


def _check_printf(fmt_string: str, budget: Budget) -> None:
    """Refuse `%`-formats whose width or precision would build a huge string (`%999999999d`)."""
    for match in _PRINTF_WIDTH.finditer(fmt_string):
        for part in match.groups():
            if part == "*":
                raise LimitExceeded("a width taken from the arguments (`%*d`) is not allowed")
            if part is not None:
                budget.allow_size(int(part), "a formatted field")


def _check_format_spec(fmt_string: str, budget: Budget) -> None:
    """Refuse `str.format` specs with a huge or computed width (`{:>999999999}`, `{:{}}`)."""
    try:
        parsed = list(string.Formatter().parse(fmt_string))
    except ValueError:
        return  # str.format will raise the same error, with its own message
    for _literal, _name, spec, _conversion in parsed:
        if not spec:
            continue
        if "{" in spec:
            raise LimitExceeded("a width taken from the arguments (`{:{}}`) is not allowed")
        for number in re.findall(r"\d+", spec):
            budget.allow_size(int(number), "a formatted field")


def _check_strftime(fmt_string: str, budget: Budget) -> None:
    for match in _STRFTIME_WIDTH.finditer(fmt_string):
        budget.allow_size(int(match.group(1)), "a formatted date")


def _joined_size(items: list[Any], separator: str) -> int:
    return sum(len(x) if isinstance(x, str) else len(str(x)) for x in items) + len(separator) * max(
        len(items) - 1, 0
    )


def _replaced_size(text: str, old: str, new: str, count: int | None) -> int:
    occurrences = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    return len(text) + occurrences * (len(new) - len(old))


# --- checks on arguments, before the call -------------------------------------------------


def _precheck_method(
    budget: Budget, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", "")
    if isinstance(owner, str):
        if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
            budget.allow_size(args[0], f"str.{name}()")
        elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            count = args[2] if len(args) > 2 and isinstance(args[2], int) else None
            budget.allow_size(_replaced_size(owner, args[0], args[1], count), "str.replace()")
        elif name == "join" and args:
            items = list(args[0])
            budget.allow_size(_joined_size(items, owner), "str.join()")
            args = (items, *args[1:])
    elif (
        isinstance(owner, (date, datetime, clock_time))
        and name == "strftime"
        and args
        and isinstance(args[0], str)
    ):
        _check_strftime(args[0], budget)
    return args, kwargs


def _pre_center(budget: Budget, args: list[Any], kwargs: dict[str, Any]) -> None:
    width = args[1] if len(args) > 1 else kwargs.get("width", 80)
    if isinstance(width, int):
        budget.allow_size(width, "center()")


def _pre_indent(budget: Budget, args: list[Any], kwargs: dict[str, Any]) -> None:
    text = str(args[0]) if args else ""
    width = args[1] if len(args) > 1 else kwargs.get("width", 4)
    pad = width if isinstance(width, int) else len(str(width))
    budget.allow_size(len(text) + (text.count("\n") + 1) * max(pad, 0), "indent()")


def _pre_replace(budget: Budget, args: list[Any], kwargs: dict[str, Any]) -> None:
    if len(args) >= 3:
        text, old, new = str(args[0]), str(args[1]), str(args[2])
        count = args[3] if len(args) > 3 else kwargs.get("count")
        budget.allow_size(
            _replaced_size(text, old, new, count if isinstance(count, int) else None), "replace()"
        )


def _pre_join(budget: Budget, args: list[Any], kwargs: dict[str, Any]) -> None:
    if args and not isinstance(args[0], Undefined):
        args[0] = list(args[0])
        separator = args[1] if len(args) > 1 else kwargs.get("d", "")
        budget.allow_size(_joined_size(args[0], str(separator)), "join()")


def _pre_format(budget: Budget, args: list[Any], kwargs: dict[str, Any]) -> None:
    if args and isinstance(args[0], str):
        _check_printf(args[0], budget)


def _pre_count(position: int, keyword: str) -> Callable[[Budget, list[Any], dict[str, Any]], None]:
    def check(budget: Budget, args: list[Any], kwargs: dict[str, Any]) -> None:
        value = args[position] if len(args) > position else kwargs.get(keyword)
        if isinstance(value, int) and value > budget.limits.max_iterations:
            raise LimitExceeded(f"{keyword} {value} is more than {budget.limits.max_iterations}")

    return check


def _pre_tojson(budget: Budget, args: list[Any], kwargs: dict[str, Any]) -> None:
    indent = args[1] if len(args) > 1 else kwargs.get("indent")
    if isinstance(indent, int) and indent > 16:
        raise LimitExceeded("tojson indent is at most 16")


_FILTER_PRECHECKS: dict[str, Callable[[Budget, list[Any], dict[str, Any]], None]] = {
    "center": _pre_center,
    "indent": _pre_indent,
    "replace": _pre_replace,
    "join": _pre_join,
    "format": _pre_format,
    "batch": _pre_count(1, "linecount"),
    "slice": _pre_count(1, "slices"),
    "tojson": _pre_tojson,
}


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """FUNC, checked against the budget before (where its arguments tell) and after the call."""
    precheck = _FILTER_PRECHECKS.get(name)
    # Filters marked pass_context/pass_eval_context/pass_environment get that object first.
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = active_scope().budget
        budget.tick()
        if precheck is not None:
            values = list(args[offset:])
            precheck(budget, values, kwargs)
            args = (*args[:offset], *values)
        return budget.bounded(func(*args, **kwargs))

    return guarded


def _bounded_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = active_scope().budget
    return _counted(iterable, budget)


def _counted(iterable: Iterable[Any], budget: Budget) -> Iterator[Any]:
    for item in iterable:
        budget.iterate()
        yield item


def _bounded_value(value: Any) -> Any:
    return active_scope().budget.bounded(value)


def _bounded_range(*args: int) -> range:
    budget = active_scope().budget
    numbers = range(*args)
    if len(numbers) > budget.limits.max_iterations:
        raise LimitExceeded(f"range of {len(numbers)} numbers is more than {budget.limits.max_iterations}")
    return numbers


def _bounded_concat(pieces: Iterable[str]) -> str:
    parts = list(pieces)
    active_scope().budget.allow_output(sum(len(p) for p in parts))
    return "".join(parts)


# What a template prints as it is, without the checks below (`Blank` is a subclass of str).
_PRINTABLE: frozenset[type] = frozenset({str, int, float})


def _finalize(value: Any) -> Any:
    active_scope()
    if type(value) in _PRINTABLE:
        return value
    if value is None:
        raise TemplateRuntimeError(
            "prints an empty value (None): guard it with {% if … %} "
            "or give a fallback with |default('…', true)"
        )
    if isinstance(value, Blank):
        raise TemplateRuntimeError(
            f"prints {value._path}, which is empty: guard it with {{% if {value._path} %}} "
            "or give a fallback with |default('…', true)"
        )
    if isinstance(value, Record):
        example = next(iter(value), "id")
        raise TemplateRuntimeError(
            f"prints the whole of {value.path}: print one of its fields, e.g. {value.path}.{example}"
        )
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        raise TemplateRuntimeError("prints a whole list: loop over it, or use |join(', ')")
    return value


def _scoped(func: Callable[..., str]) -> Callable[..., str]:
    """A formatting function as a filter that reads the customer's formatting from the render."""

    @functools.wraps(func)
    def template_filter(value: Any, *args: Any) -> str:
        scope = active_scope()
        scope.budget.tick()
        text: str = scope.budget.bounded(func(value, scope.formatting, *args))
        return text

    return template_filter


def _money(amount: Any, formatting: Formatting, currency: Any = None) -> str:
    return fmt.format_money(amount, currency, formatting)


LOCALE_FILTERS: dict[str, Callable[..., str]] = {
    "money": _scoped(_money),
    "number": _scoped(fmt.format_number),
    "date": _scoped(fmt.format_date),
    "time": _scoped(fmt.format_time),
    "datetime": _scoped(fmt.format_datetime),
    "timespan": _scoped(fmt.format_timespan),
    "ltr": _scoped(fmt.isolate_ltr),
}


class _Guards(NodeTransformer):
    """Route every loop, and every list, tuple and dict a template writes, through the budget."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment

    def _wrap(self, node: nodes.Expr, name: str) -> nodes.Filter:
        guarded = nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)
        guarded.set_environment(self.environment)
        return guarded

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._wrap(node.iter, LOOP_GUARD)  # type: ignore[arg-type]  # jinja2 types `For.iter` as Node
        return node

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        if getattr(node, "ctx", "load") != "load":
            return node  # an assignment target such as `{% for a, b in … %}`
        return self._wrap(node, VALUE_GUARD)

    visit_List = visit_Tuple = visit_Dict = _literal


class _GuardedCodeGenerator(CodeGenerator):
    """Jinja's compiler, with every loop, literal and `~` join routed through the budget."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Guards(self.environment).visit(node)
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_join(")
        super().visit_Concat(node, frame)
        self.write(")")

    def visit_EvalContextModifier(self, node: nodes.EvalContextModifier, frame: Frame) -> None:
        for keyword in node.options:
            if keyword.key != "autoescape" or not frame.eval_ctx.autoescape:
                continue
            try:
                keep = keyword.value.as_const(frame.eval_ctx)
            except nodes.Impossible:
                keep = False
            if not keep:
                self.fail(
                    "escaping cannot be turned off in HTML: customer data would reach the HTML unescaped",
                    node.lineno,
                )
        super().visit_EvalContextModifier(node, frame)


def _autoescape(name: str | None) -> bool:
    # The email HTML (and layouts it extends) is HTML; subjects, text parts and SMS are text.
    return bool(name) and str(name).endswith(".html")


class SafeEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox every template renders in; use `render_template`, never `Template.render`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _GuardedCodeGenerator
    concat = staticmethod(_bounded_concat)

    def __init__(self, loader: BaseLoader | None = None, limits: Limits = Limits()) -> None:
        super().__init__(
            loader=loader,
            undefined=StrictUndefined,
            autoescape=_autoescape,
            finalize=_finalize,
            # Block tags on lines of their own leave no blank lines behind: SMS and text parts
            # come out as they read in the template.
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.limits = limits
        for name in REMOVED_FILTERS:
            self.filters.pop(name, None)
        for name in REMOVED_GLOBALS:
            self.globals.pop(name, None)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters.update(LOCALE_FILTERS)
        self.filters[LOOP_GUARD] = _bounded_loop
        self.filters[VALUE_GUARD] = _bounded_value
        self.globals["range"] = _bounded_range

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one plain dict rather than Jinja's chain over the
        environment's: every render copies them, and the globals never change once templates
        are compiled."""
        return {**self.globals, **(d or {})}

    # --- what templates may touch -------------------------------------------------------

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, Record):
            return False  # fields are read through getattr/getitem below, never attributes
        if isinstance(obj, str) and callable(value):
            return attr in STR_METHODS
        return super().is_safe_attribute(obj, attr, value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        active_scope().budget.tick()
        if isinstance(obj, Record):
            values = obj._values  # a field that is there, read at once: every `{{ a.b }}` comes here
            return values[attribute] if attribute in values else obj.field(attribute, self.undefined)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        active_scope().budget.tick()
        if isinstance(obj, Record):
            return obj.field(argument, self.undefined)
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_spec(value.__self__, active_scope().budget)
        return wrapped

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = active_scope().budget
        budget.tick()
        args, kwargs = _precheck_method(budget, __obj, args, kwargs)
        return budget.bounded(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        budget = active_scope().budget
        budget.tick()
        sized = (str, list, tuple)
        if operator == "*":
            if isinstance(left, sized) and isinstance(right, int):
                budget.allow_size(budget.weight(left) * max(right, 0), "a repeated value")
            elif isinstance(right, sized) and isinstance(left, int):
                budget.allow_size(budget.weight(right) * max(left, 0), "a repeated value")
            elif isinstance(left, int) and isinstance(right, int):
                self._allow_bits(left.bit_length() + right.bit_length())
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                self._allow_bits(max(left.bit_length(), 1) * right)
        elif operator == "+":
            if isinstance(left, sized) and isinstance(right, sized):
                budget.allow_size(budget.weight(left) + budget.weight(right), "a joined value")
        elif operator == "%" and isinstance(left, str):
            _check_printf(left, budget)
        return budget.bounded(super().call_binop(context, operator, left, right))

    def _allow_bits(self, bits: int) -> None:
        if bits > self.limits.max_int_bits:
            raise LimitExceeded(
                f"a number would have about {bits} bits, more than {self.limits.max_int_bits}"
            )

    def bounded_join(self, value: Any) -> Any:
        """The result of `a ~ b`, refused when longer than one value may be."""
        return active_scope().budget.bounded(value)

    # --- rendering ----------------------------------------------------------------------

    def render_template(self, template: Template, variables: Mapping[str, Any], scope: RenderScope) -> str:
        """TEMPLATE rendered with VARIABLES inside SCOPE's budget and formatting."""
        token = _SCOPE.set(scope)
        try:
            pieces: list[str] = []
            size = 0
            limit = scope.budget.limits.max_output
            for piece in template.generate(dict(variables)):
                size += len(piece)
                if size > limit:
                    scope.budget.allow_output(size)
                pieces.append(piece)
            scope.budget.check_time()
            return "".join(pieces)
        finally:
            _SCOPE.reset(token)

"""Templates run sandboxed: no code execution, no internals, bounded CPU and memory, strict values."""

from __future__ import annotations

import time
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateSyntaxError
from jinja2.exceptions import SecurityError, TemplateRuntimeError, UndefinedError

from outreach.rendering.environment import (
    Budget,
    LimitExceeded,
    Limits,
    RenderScope,
    SafeEnvironment,
    record_of,
)
from outreach.rendering.filters import Formatting

ENV = SafeEnvironment()


def render(source: str, limits: Limits = Limits(), **variables: Any) -> str:
    scope = RenderScope(Budget(limits), Formatting.of("en", "UTC"))
    return ENV.render_template(ENV.from_string(source), variables, scope)


def people() -> dict[str, Any]:
    return {
        "customer": record_of(
            {"id": "c-1", "name": "Sam", "attributes": {"tier": "gold", "items": ["x"]}}, "customer"
        ),
        "checkout": record_of({"id": "k-1", "items": [{"name": "Tea"}], "currency": "GBP"}, "checkout"),
    }


SSTI_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''['__class__'] }}",
    "{{ ''|attr('__class__') }}",
    "{{ customer.__class__ }}",
    "{{ customer|attr('_values') }}",
    "{{ customer.attributes.__class__.__init__ }}",
    "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "{{ joiner.__init__.__globals__['os'].system('touch MARKER') }}",
    "{{ namespace.__init__.__globals__.os.system('touch MARKER') }}",
    "{{ range.__globals__['os'].system('touch MARKER') }}",
    "{{ lipsum.__globals__.os.system('touch MARKER') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{0[__class__]}'.format(customer) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ '%s'|format(''.__class__) }}",
    "{{ ''.join.__self__ }}",
    "{{ ''.translate({97: 'b'}) }}",
    "{{ [].append(1) }}",
    "{{ {}.update(a=1) }}",
    "{{ customer.attributes.items.pop() }}",
    "{{ config }}",
    "{{ request.application }}",
]


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
def test_a_template_cannot_execute_code_or_read_internals(payload: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises((SecurityError, UndefinedError)):
        render(payload.replace("MARKER", str(marker)), **people())
    assert not marker.exists()


def test_str_format_in_a_template_reads_fields_only_through_the_sandbox() -> None:
    assert render("{{ 'Hi {0.name}, {1}'.format(customer, 2) }}", **people()) == "Hi Sam, 2"


RESOURCE_BOMBS = [
    "{{ 'a' * 10**9 }}",
    "{{ 10**9 * 'a' }}",
    "{{ [1] * 10**9 }}",
    "{{ 10 ** 100000 }}",
    "{{ (2 ** 4000) * (2 ** 4000) }}",
    "{{ ('a' * 60000) + ('a' * 60000) }}",
    "{{ ('a' * 60000) ~ ('a' * 60000) }}",
    "{% for i in range(10**9) %}{% endfor %}",
    "{{ range(10**9)|list|length }}",
    "{% for i in range(5000) %}{% for j in range(5000) %}{% endfor %}{% endfor %}",
    "{% for c in 'a' * 90000 %}{% for d in 'b' * 90000 %}{% endfor %}{% endfor %}",
    "{{ 'a'.center(10**9) }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ 'a'.zfill(10**9) }}",
    "{{ 'a'|center(10**9) }}",
    "{{ 'a'|indent(10**9, true) }}",
    "{{ ('a' * 90000)|replace('a', 'aa') }}",
    "{{ ('a' * 90000).replace('a', 'aa') }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{:{}}'.format(1, 999999999) }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '%*d' % (999999999, 1) }}",
    "{{ '%999999999d'|format(1) }}",
    "{{ now.strftime('%999999999Y') }}",
    "{{ (['a' * 90000] * 100)|join }}",
    "{{ ('a' * 90000).join(['b'] * 100) }}",
    "{{ [1]|batch(10**9, 'x')|list }}",
    "{{ [1]|slice(10**9)|list }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set ns = namespace(s='x' * 1000) %}{% for i in range(20) %}"
    "{% set block %}{{ ns.s }}{{ ns.s }}{% endset %}{% set ns.s = block %}{% endfor %}",
    "{% for i in range(10000) %}{{ 'a' * 1000 }}{% endfor %}",
    "{{ lipsum(10**6) }}",
]


@pytest.mark.parametrize("bomb", RESOURCE_BOMBS)
def test_a_template_cannot_exhaust_memory_or_cpu(bomb: str) -> None:
    from datetime import datetime

    started = time.perf_counter()
    with pytest.raises((LimitExceeded, UndefinedError)):
        render(bomb, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert time.perf_counter() - started < 1.0


def test_a_render_is_stopped_when_it_uses_more_cpu_than_allowed() -> None:
    endless = (
        "{% macro both(n) %}{% if n %}{{ both(n - 1) }}{{ both(n - 1) }}{% endif %}{% endmacro %}"
        "{{ both(60) }}"
    )
    started = time.perf_counter()
    with pytest.raises(LimitExceeded, match="CPU time"):
        render(endless, Limits(cpu_seconds=0.1))
    assert time.perf_counter() - started < 2.0


def test_the_cpu_budget_is_measured_by_the_meter_it_is_given() -> None:
    readings = iter(range(10_000))
    budget = Budget(
        Limits(cpu_seconds=5), meter=lambda: float(next(readings)), wall=lambda: float(next(readings))
    )
    with pytest.raises(LimitExceeded):
        for _ in range(Budget.CHECK_EVERY * 10):
            budget.tick()


def test_the_cpu_clock_is_read_only_once_the_limit_could_have_been_reached() -> None:
    wall = [0.0]
    cpu_reads: list[float] = []

    def meter() -> float:
        cpu_reads.append(wall[0])
        return wall[0] / 4  # a loaded machine: the thread runs a quarter of the time

    budget = Budget(Limits(cpu_seconds=1), meter=meter, wall=lambda: wall[0])
    for wall[0] in (0.2, 0.9, 1.0):
        budget.check_time()
    assert cpu_reads == [0.0], "read at the start only: no more CPU than wall time can have passed"
    wall[0] = 3.0
    budget.check_time()  # three seconds have passed, but only 0.75 s of CPU time: no error
    assert cpu_reads == [0.0, 3.0]
    wall[0] = 4.4
    with pytest.raises(LimitExceeded, match="CPU time"):
        budget.check_time()


def test_ordinary_templates_stay_well_within_the_limits() -> None:
    source = (
        "{% for item in checkout['items'] * 50 %}{{ loop.index }}. {{ item.name|upper }} {% endfor %}"
        "{{ range(100)|sum }} {{ '%05.1f' % 3.14159 }} {{ '{:>8}'.format('x') }}"
    )
    assert render(source, **people()).endswith("4950 003.1        x")


def test_a_missing_variable_stops_the_render() -> None:
    with pytest.raises(UndefinedError, match="'nobody' is undefined"):
        render("Dear {{ nobody }},")


def test_a_missing_field_names_its_path_and_a_close_match() -> None:
    with pytest.raises(UndefinedError, match=r"customer has no field 'nmae' \(did you mean 'name'\?\)"):
        render("Dear {{ customer.nmae }},", **people())


def test_a_missing_json_key_suggests_a_default() -> None:
    with pytest.raises(UndefinedError, match=r"customer.attributes has no key 'first_name'; use \|default"):
        render("{{ customer.attributes.first_name }}", **people())


def test_optional_json_keys_can_be_tested_and_defaulted() -> None:
    source = "{{ customer.attributes.vip|default('no') }} {{ customer.attributes.tier is defined }}"
    assert render(source, **people()) == "no True"


def test_record_fields_win_over_mapping_methods() -> None:
    assert render("{{ checkout.items[0].name }} {{ customer.attributes['items'][0] }}", **people()) == "Tea x"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Dear {{ customer.phone }},", "prints an empty value"),
        ("Dear {{ customer.email }},", r"prints customer.email, which is empty"),
        ("{{ customer }}", "prints the whole of customer"),
        ("{{ checkout['items'] }}", "prints a whole list"),
    ],
)
def test_printing_an_empty_value_a_record_or_a_list_stops_the_render(source: str, message: str) -> None:
    values = {**people(), "customer": record_of({"id": "c-1", "phone": None, "email": "  "}, "customer")}
    with pytest.raises(TemplateRuntimeError, match=message):
        render(source, **values)


def test_empty_values_are_falsy_so_templates_can_guard_them() -> None:
    customer = record_of({"name": "", "phone": None}, "customer")
    source = (
        "{% if customer.name %}Hi {{ customer.name }}{% else %}Hello{% endif %}{{ customer.phone or '' }}"
    )
    assert render(source, customer=customer) == "Hello"


def test_escaping_cannot_be_turned_off_in_html() -> None:
    with pytest.raises(TemplateSyntaxError, match="escaping cannot be turned off"):
        ENV.compile("{% autoescape false %}{{ x }}{% endautoescape %}", name="x/email.en.html")


@pytest.mark.parametrize("name", ["safe", "random"])
def test_filters_that_would_unescape_or_randomise_are_not_available(name: str) -> None:
    with pytest.raises(TemplateSyntaxError, match=f"No filter named '{name}'"):
        ENV.from_string(f"{{{{ 'x'|{name} }}}}")


def test_templates_can_only_render_inside_a_budget() -> None:
    with pytest.raises(RuntimeError, match="render_template"):
        ENV.from_string("{{ 'a' * 2 }}").render()


CONTAINER_BOMBS = [
    "{{ (['a' * 90000] * 1000)|string|length }}",
    "{{ (['a' * 90000] * 1000)|tojson|length }}",
    "{{ ((['a' * 90000] * 2) + (['a' * 90000] * 2))|pprint|length }}",
    "{% set s = 'a' * 60000 %}{{ [s, s, s, s]|string|length }}",
    "{% set s = 'a' * 60000 %}{{ (s, s)|length }}",
    "{% set s = 'a' * 60000 %}{{ {'a': s, 'b': s}|length }}",
    "{{ [1]|batch(9000, 'x' * 1000)|list|length }}",
    "{{ {}.fromkeys(range(9000), 'x' * 1000)|length }}",
    "{% set ns = namespace(l=[]) %}{% for i in range(100) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l|length }}",
]


@pytest.mark.parametrize("bomb", CONTAINER_BOMBS)
def test_lists_are_weighed_by_what_they_hold_not_by_their_length(bomb: str) -> None:
    with pytest.raises(LimitExceeded):
        render(bomb)


def test_lists_of_ordinary_size_are_fine() -> None:
    assert (
        render("{% set s = 'ab' * 100 %}{{ ([s] * 100)|string|length }} {{ {'a': [1, 2]}|length }}")
        == "20400 1"
    )

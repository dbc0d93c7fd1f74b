"""lint_templates reports every mistake in the templates, located, before a customer could see one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from outreach.errors import Problem
from outreach.rendering import RuleInfo, lint_templates
from outreach.settings import CompanySettings, PathSettings, Settings
from tests.unit.rendering.builders import COMMON_RULES, EMAIL_FOOTER, LATE, STALLED

Build = Callable[..., Settings]
DATA = Path(__file__).resolve().parents[2] / "data"

BAD_RULES = [*COMMON_RULES, RuleInfo("typo", "order", ("email",), "late_delivry")]

# (file under tests/data, line, column, severity, rule, what the message says)
PLANTED = [
    (
        "templates_bad/_layout/email.en.html",
        5,
        15,
        "error",
        None,
        "company has no field 'support_phon' (did you mean 'support_phone'?)",
    ),
    (
        "templates_bad/detractor_apology/email.ar.html",
        None,
        None,
        "error",
        "detractor-follow-up",
        "missing: the rule sends email and delivery.locales lists 'ar'",
    ),
    (
        "templates_bad/detractor_apology/email.en.html",
        None,
        None,
        "error",
        None,
        "the email has no unsubscribe link",
    ),
    (
        "templates_bad/detractor_apology/email.en.html",
        None,
        None,
        "warning",
        None,
        "the message offers no way to reach a person",
    ),
    (
        "templates_bad/late_delivery/email.ar.html",
        4,
        13,
        "error",
        "late-delivery",
        "no template '_layout/emial.ar.html' to extend (did you mean '_layout/email.en.html'?)",
    ),
    (
        "templates_bad/late_delivery/email.ar.html",
        6,
        27,
        "error",
        "late-delivery",
        "the 'safe' filter is not available",
    ),
    (
        "templates_bad/late_delivery/email.ar.html",
        7,
        19,
        "error",
        "late-delivery",
        "unknown filter 'monney' (did you mean 'money'?)",
    ),
    (
        "templates_bad/late_delivery/email.en.html",
        2,
        26,
        "error",
        "late-delivery",
        "order has no field 'idd' (did you mean 'id'?)",
    ),
    (
        "templates_bad/late_delivery/email.en.html",
        6,
        24,
        "error",
        "late-delivery",
        "customer.name is text: it has no attribute 'uper' (did you mean 'upper'?)",
    ),
    (
        "templates_bad/late_delivery/email.en.html",
        9,
        24,
        "error",
        "late-delivery",
        "order has no field 'tracking_ur' (did you mean 'tracking_url'?)",
    ),
    (
        "templates_bad/late_delivery/emial.en.html",
        None,
        None,
        "error",
        None,
        "unexpected file in template 'late_delivery'",
    ),
    ("templates_bad/late_delivery/sms.ar.txt", 3, None, "error", None, "unexpected '}'"),
    (
        "templates_bad/late_delivery/sms.en.txt",
        2,
        19,
        "error",
        "late-delivery",
        "order has no field 'carier' (did you mean 'carrier'?)",
    ),
    (
        "templates_bad/late_delivery/sms.en.txt",
        4,
        31,
        "error",
        "late-delivery",
        "unknown test 'defind' (did you mean 'defined'?)",
    ),
    (
        "templates_bad/late_delivery/sms.en.txt",
        5,
        112,
        "error",
        "late-delivery",
        "order.total is a number: it has no attribute 'format'",
    ),
    (
        "templates_bad/late_delivry",
        None,
        None,
        "error",
        "typo",
        "no template 'late_delivry' (did you mean 'late_delivery'?)",
    ),
    ("templates_bad/old_promo/email.en.html", 4, None, "error", None, "Encountered unknown tag 'endfor'"),
    ("templates_bad/old_promo/sms.en.txt", 1, 16, "error", None, "customer has no field 'first_name'"),
    (
        "templates_bad/stalled_checkout/email.ar.html",
        4,
        None,
        "error",
        None,
        "escaping cannot be turned off in HTML",
    ),
    (
        "templates_bad/stalled_checkout/email.en.html",
        2,
        1,
        "error",
        None,
        "unknown front matter key 'subjet' (did you mean 'subject'?)",
    ),
    (
        "templates_bad/stalled_checkout/email.en.html",
        4,
        10,
        "error",
        "stalled-checkout",
        "unknown variable 'custmer' (did you mean 'customer'?)",
    ),
    (
        "templates_bad/stalled_checkout/email.en.html",
        4,
        41,
        "error",
        "stalled-checkout",
        "'order' is not available here: the rule is about checkout",
    ),
    (
        "templates_bad/stalled_checkout/email.en.html",
        8,
        16,
        "error",
        "stalled-checkout",
        "checkout has no field 'cart_valu' (did you mean 'cart_value'?)",
    ),
    (
        "templates_bad/stalled_checkout/sms.en.txt",
        None,
        None,
        "error",
        "stalled-checkout",
        "with sample data: the SMS is 9 segments (GSM-7, 1235 characters with the opt-out line), "
        "more than delivery.sms_max_segments = 4",
    ),
]


@pytest.fixture(scope="module")
def bad_problems() -> list[Problem]:
    settings = Settings(
        base_dir=DATA,
        paths=PathSettings(templates="templates_bad"),
        company=CompanySettings(
            name="Shop", support_phone="+44 20 7946 0000", support_url="https://example.com/help"
        ),
    )
    return lint_templates(settings, BAD_RULES)


@pytest.mark.parametrize(
    ("file", "line", "col", "severity", "rule", "message"),
    PLANTED,
    ids=[f"{p[0]}:{p[1]}:{p[5][:30]}" for p in PLANTED],
)
def test_lint_reports_each_planted_mistake_at_its_place(
    bad_problems: list[Problem],
    file: str,
    line: int | None,
    col: int | None,
    severity: str,
    rule: str | None,
    message: str,
) -> None:
    found = [
        p
        for p in bad_problems
        if (p.file, p.line, p.col, p.severity, p.rule) == (file, line, col, severity, rule)
    ]
    assert any(message in p.message for p in found), [p.message for p in found]


def test_lint_reports_nothing_but_the_planted_mistakes_in_file_order(bad_problems: list[Problem]) -> None:
    assert [(p.file, p.line, p.col) for p in bad_problems] == [(f, line, col) for f, line, col, *_ in PLANTED]


def test_a_located_problem_shows_the_line_and_a_caret(bad_problems: list[Problem]) -> None:
    typo = next(p for p in bad_problems if "carier" in p.message)
    assert typo.format() == (
        'templates_bad/late_delivery/sms.en.txt:2:19: rule "late-delivery": '
        "order has no field 'carier' (did you mean 'carrier'?)\n"
        "    Carrier: {{ order.carier }}\n"
        "                      ^"
    )


def test_an_optional_attribute_used_without_a_default_is_a_warning(templates: Build) -> None:
    files = {
        "late_delivery/sms.en.txt": "Hi {{ customer.attributes.first_name }} {{ company.support_phone }}\n"
    }
    problems = lint_templates(
        templates(files, locales=("en",)), [RuleInfo("r", "order", ("sms",), "late_delivery")]
    )
    assert [(p.line, p.severity, p.message) for p in problems] == [
        (
            1,
            "warning",
            "with sample data: customer.attributes has no key 'first_name'; use |default(…) where it may be missing",
        ),
    ]


def test_variables_assigned_in_the_template_are_known_and_checked_through_their_aliases(
    templates: Build,
) -> None:
    files = {
        "late_delivery/sms.en.txt": (
            "{% set o = order %}{% set label = 'x' %}{% macro line(text) %}{{ text }}{% endmacro %}"
            "{% for item in [1, 2] %}{{ loop.index }}{% endfor %}{{ line(label) }}{{ o.status }}{{ o.sttus }}"
            "{{ company.support_phone }}\n"
        )
    }
    problems = lint_templates(
        templates(files, locales=("en",)), [RuleInfo("r", "order", ("sms",), "late_delivery")]
    )
    assert [p.message for p in problems] == ["order has no field 'sttus' (did you mean 'status'?)"]


def test_a_rule_about_the_customer_sees_no_other_record(templates: Build) -> None:
    files = {"welcome/sms.en.txt": "{{ customer.name }} {{ order.id }} {{ company.support_phone }}\n"}
    problems = lint_templates(
        templates(files, locales=("en",)), [RuleInfo("w", "customer", ("sms",), "welcome")]
    )
    assert [(p.col, p.message.split(":")[0]) for p in problems] == [(24, "'order' is not available here")]


def test_every_configured_locale_needs_a_template_for_every_channel_of_the_rule(templates: Build) -> None:
    files = {"late_delivery/sms.en.txt": "Late. {{ company.support_phone }}\n"}
    problems = lint_templates(templates(files, locales=("en", "ar", "fr")), [LATE])
    assert [p.file for p in problems] == [
        "templates/late_delivery/email.ar.html",
        "templates/late_delivery/email.en.html",
        "templates/late_delivery/email.fr.html",
        "templates/late_delivery/sms.ar.txt",
        "templates/late_delivery/sms.fr.txt",
    ]


def test_a_way_to_reach_a_person_counts_only_when_it_is_set_in_settings(templates: Build) -> None:
    files = {
        "late_delivery/sms.en.txt": "Late. {{ company.support_phone }}\n",
        "late_delivery/email.en.html": '---\nsubject: "Late"\n---\n' + EMAIL_FOOTER,
    }
    settings = templates(files, locales=("en",))
    silent = settings.model_copy(update={"company": CompanySettings(support_url="https://example.com/help")})
    assert lint_templates(settings, [LATE]) == []
    warnings = lint_templates(silent, [LATE])
    assert {(p.file, p.severity) for p in warnings if "reach a person" in p.message} == {
        ("templates/late_delivery/email.en.html", "warning"),
        ("templates/late_delivery/sms.en.txt", "warning"),
    }


def test_a_written_text_part_needs_its_own_unsubscribe_link(templates: Build) -> None:
    files = {
        "late_delivery/email.en.html": '---\nsubject: "Late"\n---\n' + EMAIL_FOOTER,
        "late_delivery/email.en.txt": "Late. Call {{ company.support_phone }}\n",
    }
    problems = lint_templates(
        templates(files, locales=("en",)), [RuleInfo("r", "order", ("email",), "late_delivery")]
    )
    assert [(p.file, p.message) for p in problems] == [
        (
            "templates/late_delivery/email.en.txt",
            "the text part has no unsubscribe link: add {{ unsubscribe_url }}",
        )
    ]


def test_an_sms_in_a_language_without_an_opt_out_line_is_a_warning(templates: Build) -> None:
    files = {
        "late_delivery/sms.sw.txt": "{{ company.support_phone }}\n",
        "late_delivery/sms.en.txt": "{{ company.support_phone }}\n",
    }
    problems = lint_templates(
        templates(files, locales=("en", "sw")), [RuleInfo("r", "order", ("sms",), "late_delivery")]
    )
    assert [(p.file, p.severity) for p in problems] == [("templates/late_delivery/sms.sw.txt", "warning")]


def test_company_settings_without_any_contact_are_a_warning(templates: Build) -> None:
    settings = templates({"x/sms.en.txt": "x\n"}, locales=("en",))
    bare = settings.model_copy(update={"company": CompanySettings()})
    assert any(p.file == "settings [company]" for p in lint_templates(bare, []))


def test_templates_no_rule_uses_are_checked_against_every_record(templates: Build) -> None:
    files = {
        "spare/sms.en.txt": "{{ order.id }} {{ checkout.id }} {{ survey.scor }} {{ company.support_phone }}\n"
    }
    problems = lint_templates(templates(files, locales=("en",)), [STALLED])
    assert [p.message for p in problems if p.file.startswith("templates/spare")] == [
        "survey has no field 'scor' (did you mean 'score'?)"
    ]


def test_html_cannot_include_a_text_template_that_would_print_customer_data_unescaped(
    templates: Build,
) -> None:
    files = {
        "_parts/greeting.txt": "Hi {{ customer.name }}\n",
        "late_delivery/email.en.html": (
            '---\nsubject: "Late"\n---\n{% include "_parts/greeting.txt" %}\n' + EMAIL_FOOTER
        ),
    }
    problems = lint_templates(
        templates(files, locales=("en",)), [RuleInfo("r", "order", ("email",), "late_delivery")]
    )
    assert [(p.line, p.col, p.message) for p in problems] == [
        (4, 13, "HTML can only include HTML templates: '_parts/greeting.txt' would not be escaped")
    ]


def test_sms_in_extra_locales_are_measured_too(templates: Build) -> None:
    files = {
        "late_delivery/sms.en.txt": "Late. {{ company.support_phone }}\n",
        "late_delivery/sms.ar-EG.txt": "تأخر " * 60 + "{{ company.support_phone }}\n",
    }
    problems = lint_templates(
        templates(files, locales=("en",)), [RuleInfo("r", "order", ("sms",), "late_delivery")]
    )
    assert [(p.file, p.severity) for p in problems] == [("templates/late_delivery/sms.ar-EG.txt", "error")]
    assert "the SMS is 6 segments (UCS-2" in problems[0].message


def test_lint_names_each_character_that_alone_makes_an_sms_ucs2_where_the_template_writes_it(
    templates: Build,
) -> None:
    files = {
        "late_delivery/sms.en.txt": (
            "Order {{ order.id }}: it’s late 🙁\nWe are sorry, and we are on it: call us any day.\n"
            "{{ company.support_phone }}\n"
        )
    }
    problems = lint_templates(
        templates(files, locales=("en",)), [RuleInfo("r", "order", ("sms",), "late_delivery")]
    )
    assert [(p.line, p.col, p.severity) for p in problems] == [(1, 25, "warning"), (1, 33, "warning")]
    assert problems[0].message == (
        "with sample data: ’ U+2019 RIGHT SINGLE QUOTATION MARK makes the SMS UCS-2: 70 characters a "
        'segment instead of 160 (2 segments here, 1 in GSM-7); write "\'" instead, or set '
        "twilio.smart_encoding = true"
    )
    assert "U+1F641 SLIGHTLY FROWNING FACE makes the SMS UCS-2" in problems[1].message
    assert problems[1].message.endswith("leave it out: no GSM-7 character stands for it")


def test_with_smart_encoding_only_what_twilio_cannot_replace_is_named(templates: Build) -> None:
    files = {"late_delivery/sms.en.txt": "It’s late 🙁 {{ company.support_phone }}\n"}
    settings = templates(files, locales=("en",))
    smart = settings.model_copy(
        update={"twilio": settings.twilio.model_copy(update={"smart_encoding": True})}
    )
    problems = lint_templates(smart, [RuleInfo("r", "order", ("sms",), "late_delivery")])
    assert ["🙁" in p.message for p in problems] == [True]


def test_arabic_is_ucs2_without_a_warning(templates: Build) -> None:
    files = {"late_delivery/sms.ar.txt": "تأخر طلبك! {{ company.support_phone|ltr }}\n"}
    problems = lint_templates(
        templates(files, locales=("ar",), default_locale="ar"),
        [RuleInfo("r", "order", ("sms",), "late_delivery")],
    )
    assert problems == []

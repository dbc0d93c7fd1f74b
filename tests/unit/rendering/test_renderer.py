"""Renderer.render gives exactly what the customer receives, or a RenderError saying what failed where."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from outreach.errors import ConfigError, RenderError, TemplateError
from outreach.rendering import Limits, RenderedMessage, Renderer, RuleInfo
from outreach.settings import CompanySettings, Settings, TwilioSettings
from tests.unit.rendering.builders import (
    EMAIL_FOOTER,
    LATE,
    NOW,
    STALLED,
    checkout,
    customer,
    order,
)

Build = Callable[..., Settings]

LATE_FILES = {
    "late_delivery/email.en.html": (
        '---\nsubject: "Your order {{ order.id }} is late"\n---\n'
        '<html lang="{{ lang }}" dir="{{ dir }}"><body>\n'
        "<p>Hi {{ customer.name }},</p>\n"
        "<p>We promised {{ order.promised_at|date('long') }}. Total {{ order.total|money(order.currency) }}.</p>\n"
        '<p><a href="{{ order.tracking_url }}">Track it</a></p>\n' + EMAIL_FOOTER + "</body></html>\n"
    ),
    "late_delivery/email.ar.html": (
        '---\nsubject: "تأخر طلبك {{ order.id|ltr }}"\n---\n'
        '<html lang="{{ lang }}" dir="{{ dir }}"><body>\n'
        "<p>مرحبًا {{ customer.name }}،</p>\n"
        "<p>وعدناك بحلول {{ order.promised_at|date('long') }}. المبلغ {{ order.total|money(order.currency) }}.</p>\n"
        + EMAIL_FOOTER
        + "</body></html>\n"
    ),
    "late_delivery/sms.en.txt": "{{ company.name }}: order {{ order.id }} is late.\n{{ order.tracking_url }}\n",
    "late_delivery/sms.ar.txt": "{{ company.name }}: تأخر طلبك {{ order.id|ltr }}.\n",
}


def render(
    settings: Settings, channel: str = "email", rule: RuleInfo = LATE, **kwargs: object
) -> RenderedMessage:
    values: dict[str, object] = {"customer": customer(), "about": rule.about, "entity": order()}
    values.update(kwargs)
    return Renderer(settings).render(template=rule.template, channel=channel, rule=rule, now=NOW, **values)  # type: ignore[arg-type]


def test_an_email_has_its_subject_html_and_a_text_part_written_from_the_html(templates: Build) -> None:
    message = render(templates(LATE_FILES))
    assert message.channel == "email" and message.locale == "en"
    assert message.subject == "Your order A-1042 is late"
    assert "<p>Hi Sam Carter,</p>" in (message.html or "")
    assert "We promised November 21, 2026. Total EGP1,249.50." in (message.text or "")
    assert "Track it (https://track.example.com/A-1042)" in (message.text or "")
    assert (message.sms, message.segments, message.encoding) == (None, None, None)


def test_a_written_text_part_is_used_instead_of_the_derived_one(templates: Build) -> None:
    files = {**LATE_FILES, "late_delivery/email.en.txt": "Hi {{ customer.name }}. {{ unsubscribe_url }}\n"}
    assert render(templates(files)).text == "Hi Sam Carter. https://example.com/unsubscribe/c-1\n"


def test_an_sms_ends_with_the_opt_out_line_and_carries_its_segments(templates: Build) -> None:
    message = render(templates(LATE_FILES), "sms")
    assert message.sms == (
        "Souq Example: order A-1042 is late.\nhttps://track.example.com/A-1042\nReply STOP to opt out."
    )
    assert (message.segments, message.encoding, message.subject, message.html) == (1, "GSM-7", None, None)


def test_an_arabic_email_is_right_to_left_with_arabic_formatting(templates: Build) -> None:
    message = render(templates(LATE_FILES), customer=customer(locale="ar-EG", timezone="Africa/Cairo"))
    assert message.locale == "ar"
    assert '<html lang="ar" dir="rtl">' in (message.html or "")
    assert "وعدناك بحلول ٢٢ نوفمبر ٢٠٢٦" in (message.html or "")  # 23:30 UTC is the next day in Cairo
    assert "١٬٢٤٩٫٥٠" in (message.html or "")
    assert message.subject == "تأخر طلبك \u2066A-1042\u2069"


def test_an_arabic_sms_is_ucs2_with_an_arabic_opt_out_line(templates: Build) -> None:
    message = render(templates(LATE_FILES), "sms", customer=customer(locale="ar"))
    assert message.encoding == "UCS-2"
    assert (message.sms or "").endswith("\nلإيقاف الرسائل أرسل إيقاف أو STOP")


@pytest.mark.parametrize(("locale", "used"), [("ar-EG", "ar"), ("fr-CA", "en"), ("", "en")])
def test_the_template_locale_falls_back_and_is_reported(templates: Build, locale: str, used: str) -> None:
    assert render(templates(LATE_FILES), customer=customer(locale=locale)).locale == used


def test_a_missing_value_stops_the_message_and_names_the_file_line_and_path(templates: Build) -> None:
    files = {**LATE_FILES, "late_delivery/sms.en.txt": "Hi {{ customer.attributes.first_name }}\n"}
    with pytest.raises(RenderError) as caught:
        render(templates(files), "sms")
    assert str(caught.value) == (
        "templates/late_delivery/sms.en.txt:1: customer.attributes has no key 'first_name'; "
        "use |default(…) where it may be missing (rule late-delivery, customer c-1)"
    )


def test_an_empty_name_stops_the_message_instead_of_sending_dear_comma(templates: Build) -> None:
    with pytest.raises(RenderError, match=r"email.en.html:5: prints customer.name, which is empty"):
        render(templates(LATE_FILES), customer=customer(name=""))


def test_a_null_field_printed_stops_the_message(templates: Build) -> None:
    with pytest.raises(RenderError, match=r"sms.en.txt:2: prints an empty value"):
        render(templates(LATE_FILES), "sms", entity=order(tracking_url=None))


def test_a_mistake_in_the_subject_is_placed_on_the_subjects_line(templates: Build) -> None:
    files = {**LATE_FILES, "late_delivery/email.en.html": '---\nsubject: "{{ order.nope }}"\n---\n<p>x</p>\n'}
    with pytest.raises(RenderError, match=r"email.en.html:2: order has no field 'nope'"):
        render(templates(files))


def test_a_mistake_in_a_layout_is_placed_in_the_layout(templates: Build) -> None:
    files = {
        "_layout/email.en.html": "<html>\n{% block content %}{% endblock %}\n{{ company.nope }}\n</html>\n",
        "late_delivery/email.en.html": (
            '---\nsubject: "x"\n---\n{% extends "_layout/email.en.html" %}{% block content %}x{% endblock %}\n'
        ),
    }
    with pytest.raises(RenderError, match=r"^templates/_layout/email.en.html:3: company has no field 'nope'"):
        render(templates(files))


def test_customer_data_is_rendered_as_inert_text(templates: Build) -> None:
    hostile = "{{ 7*7 }}{% for x in range(3) %}x{% endfor %}<script>alert(1)</script>"
    files = {
        **LATE_FILES,
        "late_delivery/email.en.html": (
            '---\nsubject: "For {{ customer.name }}"\n---\n<p>{{ customer.name }}</p>\n' + EMAIL_FOOTER
        ),
    }
    settings = templates(files)
    email = render(settings, customer=customer(name=hostile))
    sms = render(settings, "sms", entity=order(id=hostile))
    assert "<p>{{ 7*7 }}{% for x in range(3) %}x{% endfor %}&lt;script&gt;alert(1)&lt;/script&gt;</p>" in (
        email.html or ""
    )
    assert email.subject == f"For {hostile}"
    assert email.text is not None and hostile in email.text
    assert (sms.sms or "").startswith(f"Souq Example: order {hostile} is late.")


def test_a_hostile_field_cannot_break_the_subject_into_headers(templates: Build) -> None:
    files = {
        **LATE_FILES,
        "late_delivery/email.en.html": '---\nsubject: "For {{ customer.name }}"\n---\n<p>x</p>\n',
    }
    message = render(templates(files), customer=customer(name="Sam\r\nBcc: all@example.com"))
    assert message.subject == "For Sam Bcc: all@example.com"


def test_an_sms_over_the_segment_limit_is_never_sent(templates: Build) -> None:
    files = {**LATE_FILES, "late_delivery/sms.en.txt": "{{ 'word ' * 60 }}\n"}
    with pytest.raises(
        RenderError,
        match=r"the SMS is 3 segments \(GSM-7, 322 characters .*\), more than delivery.sms_max_segments = 2",
    ):
        render(templates(files, sms_max_segments=2), "sms")


def test_a_template_that_runs_away_fails_only_its_message(templates: Build) -> None:
    files = {**LATE_FILES, "late_delivery/sms.en.txt": "{% for i in range(10**6) %}.{% endfor %}\n"}
    with pytest.raises(RenderError, match=r"sms.en.txt:1: stopped: range of 1000000 numbers"):
        render(templates(files), "sms")


def test_a_macro_that_calls_itself_forever_fails_its_message(templates: Build) -> None:
    files = {**LATE_FILES, "late_delivery/sms.en.txt": "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}\n"}
    with pytest.raises(RenderError, match="stopped"):
        render(templates(files), "sms")


def test_the_variables_templates_see(templates: Build) -> None:
    files = {
        "late_delivery/sms.en.txt": (
            "{{ rule.name }}|{{ rule.about }}|{{ rule.channels|join(',') }}|{{ rule.description }}|"
            "{{ company.support_email }}|{{ unsubscribe_url }}|{{ now.isoformat() }}|{{ lang }}|{{ dir }}\n"
        )
    }
    message = render(templates(files), "sms", customer=customer(id="c/1 2"))
    assert (message.sms or "").splitlines()[0] == (
        "late-delivery|order|sms,email|Tell them first.|care@example.com|"
        "https://example.com/unsubscribe/c%2F1%202|2026-11-24T09:30:00+00:00|en|ltr"
    )


def test_a_rule_about_a_checkout_sees_the_checkout_and_not_an_order(templates: Build) -> None:
    files = {
        "stalled_checkout/sms.en.txt": "{{ checkout.items[0].name }} {{ checkout.cart_value|money(checkout.currency) }}\n"
    }
    settings = templates(files)
    assert (render(settings, "sms", STALLED, entity=checkout()).sms or "").startswith("Earl Grey tea £89.50")
    files["stalled_checkout/sms.ar.txt"] = "{{ order.id }}\n"
    with pytest.raises(RenderError, match="'order' is undefined"):
        render(templates(files), "sms", STALLED, entity=checkout(), customer=customer(locale="ar"))


def test_a_rule_about_the_customer_needs_no_other_record(templates: Build) -> None:
    files = {"welcome/sms.en.txt": "Welcome {{ customer.name }}\n"}
    rule = RuleInfo("welcome", "customer", ("sms",), "welcome")
    assert (render(templates(files), "sms", rule, entity=None).sms or "").startswith("Welcome Sam Carter")


def test_a_missing_template_or_time_zone_is_a_render_error(templates: Build) -> None:
    settings = templates(LATE_FILES)
    with pytest.raises(RenderError, match="no email template 'nope' in any of: en"):
        render(settings, rule=RuleInfo("x", "order", ("email",), "nope"))
    with pytest.raises(RenderError, match="'Mars/Base' is not an IANA time zone"):
        render(settings, customer=customer(timezone="Mars/Base"))


def test_exists_is_exact_and_resolve_locale_falls_back(templates: Build) -> None:
    renderer = Renderer(templates(LATE_FILES))
    assert renderer.exists("late_delivery", "sms", "ar") and not renderer.exists(
        "late_delivery", "sms", "ar-EG"
    )
    assert not renderer.exists("late_delivery", "fax", "en")
    assert renderer.resolve_locale("late_delivery", "sms", "ar-EG") == "ar"
    assert renderer.resolve_locale("nope", "sms", "ar-EG") is None
    assert renderer.templates == ("late_delivery",)


def test_a_broken_templates_folder_is_refused_whole_with_every_problem(templates: Build) -> None:
    files = {
        **LATE_FILES,
        "late_delivery/sms.en.txt": "{% if order.id %}unclosed\n",
        "other/email.en.html": "<p>no front matter</p>\n",
        "other/sms.en.txt": "{{ order.total|monney }}\n",
    }
    with pytest.raises(TemplateError) as caught:
        Renderer(templates(files))
    assert [(p.file, p.line) for p in caught.value.problems] == [
        ("templates/late_delivery/sms.en.txt", 1),
        ("templates/other/email.en.html", 1),
        ("templates/other/sms.en.txt", 1),
    ]
    assert "unknown filter 'monney' (did you mean 'money'?)" in str(caught.value)


def test_an_unsubscribe_url_that_cannot_be_filled_in_is_a_settings_error(templates: Build) -> None:
    settings = templates(LATE_FILES)
    with pytest.raises(ValidationError, match=r"the only placeholder is \{customer_id\}"):
        CompanySettings(unsubscribe_url="https://x/{id}")
    # Settings built around validation (model_copy) are still refused by the renderer.
    broken = settings.model_copy(
        update={"company": CompanySettings.model_construct(unsubscribe_url="https://x/{id}")}
    )
    with pytest.raises(ConfigError, match=r"write it with \{customer_id\}"):
        Renderer(broken)


def test_a_message_is_json_ready() -> None:
    message = RenderedMessage(channel="sms", locale="en", sms="Hi", segments=1, encoding="GSM-7")
    assert message.to_dict() == {
        "channel": "sms",
        "locale": "en",
        "subject": None,
        "text": None,
        "html": None,
        "sms": "Hi",
        "segments": 1,
        "encoding": "GSM-7",
    }


def test_render_limits_are_configurable_per_renderer(templates: Build) -> None:
    files = {**LATE_FILES, "late_delivery/sms.en.txt": "{% for c in 'x' * 30 %}.{% endfor %}\n"}
    settings = templates(files)
    renderer = Renderer(settings, limits=Limits(max_iterations=20))
    with pytest.raises(RenderError, match="loops ran more than 20 times"):
        renderer.render(
            template="late_delivery",
            channel="sms",
            customer=customer(),
            about="order",
            entity=order(),
            rule=LATE,
            now=NOW,
        )


def test_an_english_sms_with_a_time_stays_gsm7(templates: Build) -> None:
    # Babel writes "9:30 AM" with a narrow no-break space (U+202F): the SMS gets a plain one.
    files = {**LATE_FILES, "late_delivery/sms.en.txt": "Order {{ order.id }} arrives at {{ now|time }}.\n"}
    message = render(templates(files), "sms")
    assert message.sms == "Order A-1042 arrives at 9:30 AM.\nReply STOP to opt out."
    assert (message.encoding, message.segments, message.ucs2_characters) == ("GSM-7", 1, ())


def test_a_french_amount_in_an_sms_stays_gsm7(templates: Build) -> None:
    files = {**LATE_FILES, "late_delivery/sms.fr.txt": "Remboursement : {{ order.total|money('EUR') }}.\n"}
    message = render(templates(files), "sms", customer=customer(locale="fr", timezone="Europe/Paris"))
    assert message.sms is not None and message.sms.startswith("Remboursement : 1 249,50 €.")
    assert (message.encoding, message.segments) == ("GSM-7", 1)


def test_an_sms_that_is_ucs2_anyway_keeps_its_no_break_spaces_and_names_what_forced_it(
    templates: Build,
) -> None:
    files = {**LATE_FILES, "late_delivery/sms.en.txt": "It’s late: {{ now|time }}.\n"}
    message = render(templates(files), "sms")
    assert "\u202f" in (message.sms or "")
    assert (message.encoding, message.ucs2_characters) == ("UCS-2", ("’", "\u202f"))


def test_with_smart_encoding_the_count_follows_twilios_replacements(templates: Build) -> None:
    files = {**LATE_FILES, "late_delivery/sms.en.txt": "It’s late – sorry… " + "x" * 100 + "\n"}
    settings = templates(files)
    plain = render(settings, "sms")
    smart = render(settings.model_copy(update={"twilio": TwilioSettings(smart_encoding=True)}), "sms")
    assert plain.sms == smart.sms  # Twilio replaces the characters; outreach sends them as written
    assert (plain.encoding, plain.segments) == ("UCS-2", 3)
    assert (smart.encoding, smart.segments, smart.ucs2_characters) == ("GSM-7", 1, ())

"""The templates shipped in templates/ pass lint and render what a good CX team would send."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from outreach.rendering import RenderedMessage, Renderer, RuleInfo, lint_templates
from outreach.rendering.samples import SAMPLE_NOW, sample_customer, sample_entity
from outreach.rendering.sms import GSM7_BASIC, GSM7_EXTENSION
from outreach.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
CANONICAL = [
    RuleInfo("late-delivery", "order", ("sms", "email"), "late_delivery"),
    RuleInfo("stalled-checkout", "checkout", ("email", "sms"), "stalled_checkout"),
    RuleInfo("detractor-follow-up", "survey", ("email",), "detractor_apology"),
]
BY_TEMPLATE = {r.template: r for r in CANONICAL}
CASES = [
    (r.template, channel, locale)
    for r in CANONICAL
    for channel in ("email", "sms")
    for locale in ("en", "ar", "ar-EG")
]
LATIN_DIGIT = re.compile(r"[0-9]")


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(REPO / "settings.toml")


@pytest.fixture(scope="module")
def renderer(settings: Settings) -> Renderer:
    return Renderer(settings)


def render(renderer: Renderer, template: str, channel: str, locale: str, **changes: Any) -> RenderedMessage:
    rule = BY_TEMPLATE[template]
    entity = sample_entity(rule.about, locale)
    for name, value in changes.items():
        setattr(entity, name, value)
    return renderer.render(
        template=template,
        channel=channel,
        customer=sample_customer(locale),
        about=rule.about,
        entity=entity,
        rule=rule,
        now=SAMPLE_NOW,
    )


def test_the_bundled_templates_pass_lint_without_a_warning(settings: Settings) -> None:
    assert [p.format() for p in lint_templates(settings, CANONICAL)] == []


def test_every_bundled_template_exists_in_every_configured_locale(
    renderer: Renderer, settings: Settings
) -> None:
    for template in BY_TEMPLATE:
        for channel in ("email", "sms"):
            assert all(renderer.exists(template, channel, locale) for locale in settings.delivery.locales)


@pytest.mark.parametrize(("template", "channel", "locale"), CASES)
def test_every_message_offers_a_person_and_a_way_out(
    renderer: Renderer, settings: Settings, template: str, channel: str, locale: str
) -> None:
    message = render(renderer, template, channel, locale)
    body = message.html if channel == "email" else message.sms
    assert body is not None and settings.company.support_phone in body
    if channel == "email":
        assert f'href="{settings.company.unsubscribe_url.format(customer_id="C-100482")}"' in (
            message.html or ""
        )
        assert "unsubscribe/C-100482" in (message.text or "")
    else:
        assert message.segments is not None and message.segments <= settings.delivery.sms_max_segments


@pytest.mark.parametrize("template", list(BY_TEMPLATE))
def test_arabic_email_reads_right_to_left_with_arabic_digits(renderer: Renderer, template: str) -> None:
    message = render(renderer, template, "email", "ar-EG")
    html = message.html or ""
    assert message.locale == "ar"
    assert '<html lang="ar" dir="rtl">' in html
    assert re.search(r"[٠-٩]", html)


def test_arabic_late_delivery_writes_the_promised_date_in_arabic(renderer: Renderer) -> None:
    message = render(renderer, "late_delivery", "email", "ar")
    assert "بحلول ٢٢ نوفمبر ٢٠٢٦" in (message.html or "")
    assert "\u2066A-104217\u2069" in (message.subject or "")


def test_arabic_sms_is_ucs2_and_english_sms_is_gsm7(renderer: Renderer) -> None:
    for template in BY_TEMPLATE:
        assert render(renderer, template, "sms", "ar").encoding == "UCS-2"
        assert render(renderer, template, "sms", "en").encoding == "GSM-7"


def test_english_sms_templates_use_only_gsm7_characters() -> None:
    for path in sorted((REPO / "templates").glob("*/sms.en.txt")):
        odd = {ch for ch in path.read_text(encoding="utf-8") if ch not in GSM7_BASIC | GSM7_EXTENSION}
        assert not odd, f"{path.name} in {path.parent.name} would be sent as UCS-2 because of {odd}"


def test_late_delivery_is_specific_order_date_carrier_and_link(renderer: Renderer) -> None:
    text = render(renderer, "late_delivery", "email", "en").text or ""
    assert "A-104217" in text and "November 22, 2026" in text and "Aramex" in text
    assert "Track your parcel (https://track.example.com/parcels/A-104217?utm_source=outreach)" in text


def test_late_delivery_gives_the_new_date_only_when_there_is_one(renderer: Renderer) -> None:
    assert "should now arrive" not in (render(renderer, "late_delivery", "email", "en").text or "")
    text = render(
        renderer, "late_delivery", "email", "en", attributes={"estimated_delivery": "2026-11-26"}
    ).text
    assert "It should now arrive by November 26, 2026." in (text or "")


def test_late_delivery_without_a_tracking_link_still_renders(renderer: Renderer) -> None:
    message = render(renderer, "late_delivery", "sms", "en", tracking_url=None, carrier=None)
    assert "Track it" not in (message.sms or "")


def test_stalled_checkout_lists_the_cart_and_the_way_back(renderer: Renderer) -> None:
    text = render(renderer, "stalled_checkout", "email", "en").text or ""
    assert "- Linen shirt, sand × 2, £39.50 each\n- Canvas tote bag, £110.00" in text
    assert "Basket total: £189.00" in text
    assert "Return to your basket (https://shop.example.com/cart/recover/K-55120?token=8f3a2c91)" in text


def test_stalled_checkout_copes_with_long_and_plain_item_lists(renderer: Renderer) -> None:
    items = ["Gift card"] + [{"name": f"Item {n}", "quantity": 1} for n in range(7)]
    text = render(renderer, "stalled_checkout", "email", "en", items=items).text or ""
    assert "- Gift card\n- Item 0\n" in text and "- and 3 more" in text


def test_detractor_apology_quotes_the_customer_and_offers_a_person(
    renderer: Renderer, settings: Settings
) -> None:
    comment = "<b>Awful</b> {{ 7*7 }} " + "very " * 100
    message = render(renderer, "detractor_apology", "email", "en", comment=comment)
    html = message.html or ""
    assert "A 3 out of 10 tells us we fell short" in html
    assert "&lt;b&gt;Awful&lt;/b&gt; {{ 7*7 }} very" in html and "very " * 70 not in html
    assert settings.company.support_phone in html and settings.company.support_email in html


def test_a_customer_without_a_name_is_greeted_without_a_blank(renderer: Renderer) -> None:
    rule = BY_TEMPLATE["late_delivery"]
    customer = sample_customer("en")
    customer.name = ""
    message = renderer.render(
        template="late_delivery",
        channel="email",
        customer=customer,
        about="order",
        entity=sample_entity("order", "en"),
        rule=rule,
        now=SAMPLE_NOW,
    )
    assert "<p>Hello,</p>" in (message.html or "")


def test_dates_follow_the_customers_time_zone(renderer: Renderer) -> None:
    late_night = datetime(2026, 11, 21, 23, 30, tzinfo=UTC)
    text = render(renderer, "late_delivery", "email", "ar", promised_at=late_night).text or ""
    assert "بحلول ٢٢ نوفمبر ٢٠٢٦" in text  # 01:30 on the 22nd in Cairo
    text = (
        render(renderer, "late_delivery", "email", "en", promised_at=late_night - timedelta(hours=1)).text
        or ""
    )
    assert "by November 21, 2026" in text  # 22:30 on the 21st in London

"""The studio as a marketer uses it, in a real browser (headless chromium)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.studio_world import TEST_EMAIL, RunningStudio

SECONDS = 1000  # Playwright counts milliseconds


def open_studio(page: Page, studio: RunningStudio, view: str = "") -> None:
    page.goto(studio.url + (f"#{view}" if view else ""))
    expect(page.locator("#live")).to_have_class("live on", timeout=10 * SECONDS)  # following saves


def outbox(root: Path) -> list[dict[str, Any]]:
    path = root / "var" / "outbox.jsonl"
    return (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    )


def test_the_page_lists_every_rule_and_every_template(page: Page, studio: RunningStudio) -> None:
    open_studio(page, studio)
    expect(page.locator("#rules .name")).to_have_text(
        ["late-delivery", "stalled-checkout", "detractor-follow-up"]
    )
    expect(page.locator("#templates .name")).to_have_text(
        [
            "detractor_apology",
            "late_delivery",
            "pickup_ready",
            "stalled_checkout",
            "stalled_checkout_reminder",
        ]
    )
    expect(page.locator(".column[data-locale=en] .subject")).to_contain_text("is running late")


def test_switching_to_arabic_and_to_both_languages_shows_right_to_left_text(
    page: Page, studio: RunningStudio
) -> None:
    open_studio(page, studio, "target=rule:late-delivery&customer=sample")
    page.click("#locale-ar")
    column = page.locator(".column[data-locale=ar]")
    expect(column.locator(".subject")).to_contain_text("تأخّر طلبك")
    email = column.frame_locator("iframe.email-frame")
    expect(email.locator("html")).to_have_attribute("dir", "rtl")
    expect(email.locator("h1")).to_have_css("direction", "rtl")
    expect(column.locator(".sms-body")).to_have_css("direction", "rtl")
    expect(column.locator(".sms-encoding")).to_have_text("UCS-2")
    page.click("#locale-both")
    expect(page.locator(".column")).to_have_count(2)
    expect(page.locator(".column[data-locale=en] .sms-body")).to_have_css("direction", "ltr")
    expect(page.locator(".column[data-locale=ar] .sms-body")).to_have_css("direction", "rtl")


def test_an_sms_with_a_time_in_it_is_gsm7(page: Page, studio: RunningStudio) -> None:
    # Babel writes the time with U+202F before AM/PM; the SMS gets a plain space and stays GSM-7.
    open_studio(page, studio, "target=template:pickup_ready&locales=en")
    sms = page.locator(".column[data-locale=en] .sms-card")
    expect(sms.locator(".sms-body")).to_contain_text("ready to collect from")
    expect(sms.locator(".sms-encoding")).to_have_text("GSM-7")
    expect(sms.locator(".sms-segments")).to_have_text("1 segment")
    assert "\u202f" not in sms.locator(".sms-body").inner_text()


def test_saving_a_template_changes_the_open_page_within_seconds(page: Page, studio: RunningStudio) -> None:
    open_studio(page, studio, "target=rule:late-delivery&locales=en")
    body = page.locator(".column[data-locale=en] .sms-body")
    expect(body).to_contain_text("is running late")
    sms_file = studio.root / "templates" / "late_delivery" / "sms.en.txt"
    sms_file.write_text("{{ company.name }}: it’s late, and we’re on it.\n", encoding="utf-8")
    expect(body).to_contain_text("we’re on it", timeout=5 * SECONDS)
    expect(page.locator(".column[data-locale=en] .sms-encoding")).to_have_text("UCS-2")
    expect(body.locator("mark.run-ucs2").first).to_have_text("’")
    expect(page.locator("#problems")).to_contain_text("templates/late_delivery/sms.en.txt:1:")


def test_the_test_send_button_writes_one_line_marked_as_a_test_to_the_outbox(
    page: Page, studio: RunningStudio
) -> None:
    open_studio(page, studio, "target=rule:late-delivery&locales=en&customer=c-1001")
    page.fill("#send-to", TEST_EMAIL)
    page.click("#send-button")
    expect(page.locator("#send-result")).to_contain_text(f"Sent: email to {TEST_EMAIL} via outbox")
    [line] = outbox(studio.root)
    assert (line["test"], line["to"], line["customer_id"]) == (True, TEST_EMAIL, "c-1001")
    assert line["subject"].startswith("[TEST] Your order o-2001 is running late")
    expect(page.locator("#recent li").first).to_contain_text(f"late-delivery (email, en) → {TEST_EMAIL}")


def test_an_address_not_allow_listed_is_refused_with_a_message(page: Page, studio: RunningStudio) -> None:
    open_studio(page, studio, "target=rule:late-delivery&locales=en")
    page.fill("#send-to", "ceo@example.com")
    page.click("#send-button")
    expect(page.locator("#send-result")).to_contain_text(
        "ceo@example.com is not a test recipient: tests go only to the addresses in settings [studio] test_recipients"
    )
    assert outbox(studio.root) == []

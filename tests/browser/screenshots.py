"""Take the studio screenshots shown in templates/README.md (docs/studio-*.png).

    .venv/bin/python -m tests.browser.screenshots

Serves the studio on the shipped rules and templates (a copy, in a scratch folder), opens it in
Debian's chromium as the browser tests do, and saves each view under docs/.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from tests.browser.conftest import launch
from tests.studio_world import REPO, TEST_PHONE, serve_studio

DOCS = REPO / "docs"
AT = "2026-11-24T09:30:00.000Z"
SECONDS = 1000


def show(page: Page, url: str, view: str) -> None:
    page.goto("about:blank")  # a fresh page, not a change of the address's #fragment
    page.goto(f"{url}#{view}&at={AT}")
    expect(page.locator("#live")).to_have_class("live on", timeout=10 * SECONDS)
    expect(page.locator(".column").first).to_be_visible()
    page.wait_for_timeout(600)  # the e-mail frames lay out


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright:
        root = Path(scratch)
        studio = serve_studio(root / "workspace")
        context = launch(root / "profile", playwright)
        page = context.new_page()
        try:
            show(page, studio.url, "target=rule:late-delivery&locales=en&customer=c-1001")
            page.screenshot(path=DOCS / "studio.png", full_page=True)

            show(page, studio.url, "target=rule:stalled-checkout&locales=en,ar&customer=sample")
            page.screenshot(path=DOCS / "studio-side-by-side.png", full_page=True)

            # A draft with a curly apostrophe, an emoji and a typo: what the page says about it.
            sms = studio.root / "templates" / "late_delivery" / "sms.en.txt"
            sms.write_text(
                "{{ company.name }}: it’s running late 🙁 Your order {{ order.id }} is with "
                "{{ order.carier }}.\nTrack it: {{ order.tracking_url }}\n",
                encoding="utf-8",
            )
            show(page, studio.url, "target=rule:late-delivery&locales=en&customer=c-1001")
            page.screenshot(path=DOCS / "studio-check.png", full_page=True)
            sms.write_text(
                "{{ company.name }}: it’s running late 🙁 Your order {{ order.id }} is with "
                "{{ order.carrier }}.\nTrack it: {{ order.tracking_url }}\n",
                encoding="utf-8",
            )
            expect(page.locator(".sms-body")).to_contain_text("Royal Mail", timeout=5 * SECONDS)
            page.locator(".column .sms-card").screenshot(path=DOCS / "studio-sms-ucs2.png")

            page.fill("#send-to", TEST_PHONE)
            page.click("#send-button")
            expect(page.locator("#send-result")).to_contain_text("Sent")
            page.locator("#send-panel").screenshot(path=DOCS / "studio-test-send.png")
        finally:
            context.close()
            studio.stop()
    for image in sorted(DOCS.glob("studio*.png")):
        print(f"{image.relative_to(REPO)}  {image.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()

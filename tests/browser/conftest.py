"""A real browser for the studio's tests: Debian's chromium, driven by Playwright.

Chromium runs headless with a fresh profile and with its background networking (updates,
component downloads, sync) off: this machine has no network beyond loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.studio_world import RunningStudio, serve_studio

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(profile: Path, playwright: object) -> BrowserContext:
    """A headless chromium with a fresh profile in PROFILE."""
    context: BrowserContext = playwright.chromium.launch_persistent_context(  # type: ignore[attr-defined]
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1440, "height": 1000},
        locale="en-GB",
        timezone_id="Europe/London",
    )
    return context


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch(tmp_path_factory.mktemp("chromium-profile"), playwright)
        yield context
        context.close()


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[RunningStudio]:
    running = serve_studio(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    page.close()
    assert errors == [], f"the page's script failed: {errors}"

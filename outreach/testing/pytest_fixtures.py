"""pytest fixtures for the fake providers (loaded by tests/conftest.py through `pytest_plugins`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from outreach.testing.fakeproviders import FakeProviders

LOOPBACK = "127.0.0.1,localhost"


@pytest.fixture
def fake_providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProviders]:
    """A fake Twilio + SendGrid on 127.0.0.1 (ephemeral port) for one test, with no faults."""
    # Both SDKs honour *_proxy variables; loopback traffic must never be sent to a proxy.
    for name in ("no_proxy", "NO_PROXY"):
        existing = os.environ.get(name)
        monkeypatch.setenv(name, f"{existing},{LOOPBACK}" if existing else LOOPBACK)
    with FakeProviders() as fake:
        yield fake

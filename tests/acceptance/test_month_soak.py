"""A month of churning state through the real pipeline sends nothing it must not, and loses nothing.

The suite runs a short soak on each database; a long one is a matter of the environment:

    OUTREACH_SOAK_CUSTOMERS=500 OUTREACH_SOAK_DAYS=31 pytest tests/acceptance/test_month_soak.py -s

(`OUTREACH_SOAK_SEED`, `OUTREACH_SOAK_START` and `OUTREACH_SOAK_TICK_MINUTES` change the world,
its first instant and the time between ticks; `-s` prints what was measured as one JSON line).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import structlog
from sqlalchemy.engine import Engine

from outreach.testing.fakeproviders import FakeProviders
from tests.acceptance.month_soak import SoakConfig, iter_violations, run_soak


def soak_config() -> SoakConfig:
    """The short soak, or the one the environment asks for.

    The short one spans 27 March to 5 April 2027: clocks go forward in Berlin and London and back
    in Auckland, Chatham and Sydney. A soak of four weeks or more starts on 10 March, so New
    York's change is in it too.
    """
    env = os.environ.get
    days = float(env("OUTREACH_SOAK_DAYS", "9"))
    start = env(
        "OUTREACH_SOAK_START", "2027-03-10T00:00:00+00:00" if days >= 28 else "2027-03-27T00:00:00+00:00"
    )
    return SoakConfig(
        customers=int(env("OUTREACH_SOAK_CUSTOMERS", "30")),
        days=days,
        start=datetime.fromisoformat(start),
        tick_every=timedelta(minutes=float(env("OUTREACH_SOAK_TICK_MINUTES", "60"))),
        seed=int(env("OUTREACH_SOAK_SEED", "8")),
    )


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Warnings only while thousands of messages go out; the configuration as it was afterwards."""
    before = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.configure(**before)


def test_a_month_of_churn_sends_nothing_over_a_cap_at_night_withdrawn_stale_or_cleared_and_loses_nothing(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    fake_providers: FakeProviders,
    monkeypatch: pytest.MonkeyPatch,
    quiet_logs: None,
) -> None:
    for name, value in fake_providers.environ().items():
        monkeypatch.setenv(name, value)
    result = run_soak(tmp_path, database_url, fake_providers, soak_config())
    print(result.summary())
    assert result.total_sends > 0 and result.events["stop"] and result.events["bounce"]
    assert not result.violations, "\n".join(iter_violations(result))

"""The bundled sample: valid ingest data whose times follow `now`, so the canonical rules always match."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ColumnElement

from outreach.sample import ANCHOR, load_sample, sample_rows
from outreach.state.ingest import state_table

ORDERS, CHECKOUTS, SURVEYS, CUSTOMERS = (
    state_table(name) for name in ("orders", "checkouts", "survey_responses", "customers")
)


def canonical_conditions(now: datetime) -> dict[str, tuple[object, ColumnElement[bool]]]:
    """The `when` of each canonical rule in SPEC.md, written by hand."""
    return {
        "late-delivery": (
            ORDERS,
            and_(
                ORDERS.c.status != "cancelled",
                ORDERS.c.delivered_at.is_(None),
                ORDERS.c.promised_at < now - timedelta(days=1),
            ),
        ),
        "stalled-checkout": (
            CHECKOUTS,
            and_(
                CHECKOUTS.c.completed_at.is_(None),
                CHECKOUTS.c.cart_value > 0,
                CHECKOUTS.c.started_at < now - timedelta(hours=2),
                CHECKOUTS.c.started_at > now - timedelta(days=3),
            ),
        ),
        "detractor-follow-up": (
            SURVEYS,
            and_(
                SURVEYS.c.kind == "nps",
                SURVEYS.c.score <= 6,
                SURVEYS.c.responded_at > now - timedelta(days=7),
            ),
        ),
    }


EXPECTED = {
    "late-delivery": ["o-2001", "o-2002", "o-2003", "o-2004", "o-2005", "o-2006"],
    "stalled-checkout": ["k-3001", "k-3002", "k-3003", "k-3004", "k-3005"],
    "detractor-follow-up": ["s-4001", "s-4002", "s-4003", "s-4004"],
}


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
        datetime(2031, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_the_sample_matches_each_canonical_rule_whenever_it_is_loaded(engine: Engine, now: datetime) -> None:
    load_sample(engine, now)

    with engine.connect() as connection:
        for rule, (table, condition) in canonical_conditions(now).items():
            ids = sorted(connection.execute(select(table.c.id).where(condition)).scalars())  # type: ignore[attr-defined]
            assert ids == EXPECTED[rule], rule


def test_loading_the_sample_twice_upserts_rather_than_duplicates(engine: Engine) -> None:
    now = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    first = load_sample(engine, now)

    second = load_sample(engine, now + timedelta(days=1))

    assert first == second
    with engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(CUSTOMERS)).scalar_one()
            == first.customers
            == 12
        )


def test_the_sample_times_are_shifted_by_the_distance_from_the_anchor() -> None:
    now = ANCHOR + timedelta(days=365, minutes=7)

    orders = {row["id"]: row for row in sample_rows(now)["orders"]}

    assert orders["o-2001"]["promised_at"] == now - timedelta(days=2)


def test_the_sample_has_english_and_arabic_customers_across_time_zones_and_locales() -> None:
    customers = sample_rows(ANCHOR)["customers"]

    assert len(customers) == 12
    assert sum(any("\u0600" <= char <= "\u06ff" for char in c["name"]) for c in customers) >= 5
    assert sum(c["name"].isascii() for c in customers) >= 5
    assert {c["timezone"] for c in customers} == {
        "Europe/London",
        "America/New_York",
        "Asia/Riyadh",
        "Africa/Cairo",
        "Asia/Dubai",
    }
    assert {c["locale"] for c in customers} == {"en", "ar", "ar-EG"}
    assert {c["preferred_channel"] for c in customers} == {"email", "sms", None}
    assert all(c["email"].endswith("@example.com") for c in customers)

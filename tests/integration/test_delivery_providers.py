"""Delivery through the real Twilio and SendGrid SDKs against the fake providers, on both databases.

Provider trouble is scripted on the fake (429 with Retry-After, a refused number, a dropped
connection); the tests check what reached the provider and what the ledger says afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from outreach.channels import make_channels
from outreach.settings import Settings
from outreach.state import ledger
from outreach.state.models import Customer
from outreach.testing.fakeproviders import SENDGRID, TWILIO, FakeProviders
from tests.worlds import (
    NOON,
    World,
    build_world,
    contact_of,
    customer,
    late_order,
    stalled_checkout,
)

INVALID_NUMBER = "+15005550001"  # Twilio 21211
UNSUBSCRIBED_NUMBER = "+15005550004"  # Twilio 21610


@pytest.fixture
def world(
    tmp_path: Path, database_url: str, engine: Engine, fake_providers: FakeProviders
) -> Iterator[World]:
    """A deployment in live mode whose SDKs talk to the fake providers."""
    settings = Settings.model_validate(
        {
            "delivery": {"mode": "live"},
            "twilio": {
                "messaging_service_sid": "MG" + "3" * 32,
                "base_url": fake_providers.url,
                "timeout": 2.0,
            },
            "sendgrid": {"host": fake_providers.url, "timeout": 2.0},
        }
    )
    built = build_world(
        tmp_path, database_url, channels=make_channels(settings, environ=fake_providers.environ())
    )
    yield built
    built.app.close()


def accepted(fake: FakeProviders, provider: str) -> list[str]:
    return [r.provider_id or "" for r in fake.requests(provider) if r.outcome == "accepted"]


def suppressions(engine: Engine) -> set[tuple[str, str, str | None]]:
    with engine.connect() as connection:
        return {
            (r.customer_id, r.channel, r.code) for r in connection.execute(sa.select(ledger.suppressions))
        }


def sms_opt_in(engine: Engine, customer_id: str) -> bool:
    with engine.connect() as connection:
        table = Customer.__table__  # type: ignore[attr-defined]
        return bool(
            connection.execute(sa.select(table.c.sms_opt_in).where(table.c.id == customer_id)).scalar_one()
        )


def test_each_contact_is_sent_once_through_both_sdks_across_repeated_ticks(
    world: World, fake_providers: FakeProviders
) -> None:
    customer(world.engine, "by-sms")
    customer(world.engine, "by-email", sms_opt_in=False)
    late_order(world.engine, "o1", "by-sms")
    late_order(world.engine, "o2", "by-email")
    for minutes in (0, 15, 30):
        world.tick(NOON + timedelta(minutes=minutes))
    assert len(accepted(fake_providers, TWILIO)) == 1 and len(accepted(fake_providers, SENDGRID)) == 1
    assert contact_of(world.engine, "late-delivery", "o1").provider_id == accepted(fake_providers, TWILIO)[0]
    assert (
        contact_of(world.engine, "late-delivery", "o2").provider_id == accepted(fake_providers, SENDGRID)[0]
    )


def test_a_429_with_retry_after_is_retried_after_that_time_and_sent_exactly_once(
    world: World, fake_providers: FakeProviders
) -> None:
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    fake_providers.fail_next(TWILIO, status=429, headers={"Retry-After": "120"})
    stats = world.tick(NOON)
    row = contact_of(world.engine, "late-delivery", "o1")
    assert stats.retried == 1 and row.state == "pending"
    assert row.send_at is not None and row.send_at >= NOON + timedelta(seconds=120)
    world.dispatch(NOON + timedelta(seconds=60))
    assert accepted(fake_providers, TWILIO) == []
    world.dispatch(row.send_at)
    world.dispatch(row.send_at + timedelta(minutes=5))
    assert len(fake_providers.requests(TWILIO)) == 2 and len(accepted(fake_providers, TWILIO)) == 1
    assert contact_of(world.engine, "late-delivery", "o1").state == "sent"


@pytest.mark.parametrize(
    ("number", "code", "consent_withdrawn"),
    [(INVALID_NUMBER, "21211", False), (UNSUBSCRIBED_NUMBER, "21610", True)],
)
def test_a_refused_number_fails_the_contact_suppresses_sms_and_a_later_rule_falls_back_to_email(
    world: World, fake_providers: FakeProviders, number: str, code: str, consent_withdrawn: bool
) -> None:
    customer(world.engine, "c1", phone=number)
    late_order(world.engine, "o1", "c1")
    world.tick(NOON)
    row = contact_of(world.engine, "late-delivery", "o1")
    assert row.state == "failed" and code in (row.last_error or "")
    assert suppressions(world.engine) == {("c1", "sms", code)}
    assert sms_opt_in(world.engine, "c1") is not consent_withdrawn
    stalled_checkout(world.engine, "k1", "c1", NOON + timedelta(days=1))
    world.tick(NOON + timedelta(days=1))
    later = contact_of(world.engine, "stalled-checkout", "k1")
    assert (later.state, later.channel) == ("sent", "email")
    assert len(fake_providers.requests(TWILIO)) == 1 and len(accepted(fake_providers, SENDGRID)) == 1


def test_a_dropped_connection_is_recorded_unknown_and_not_resent(
    world: World, fake_providers: FakeProviders
) -> None:
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    fake_providers.drop_next(TWILIO)
    stats = world.tick(NOON)
    assert stats.unknown == 1
    assert contact_of(world.engine, "late-delivery", "o1").state == "unknown"
    world.tick(NOON + timedelta(minutes=15))
    world.dispatch(NOON + timedelta(hours=2))
    assert [r.outcome for r in fake_providers.requests(TWILIO)] == ["dropped"]
    assert contact_of(world.engine, "late-delivery", "o1").state == "unknown"


@pytest.mark.parametrize("provider", [TWILIO, SENDGRID])
def test_a_refusal_whose_text_neither_database_can_store_still_fails_the_contact(
    world: World, fake_providers: FakeProviders, provider: str
) -> None:
    # A NUL, which PostgreSQL's text refuses, and a lone surrogate, which neither database can
    # encode: the provider's words are kept with each replaced, in the contact and in the
    # suppression of the refused address, and the contact is not lost.
    customer(world.engine, "c1", sms_opt_in=provider == TWILIO)
    late_order(world.engine, "o1", "c1")
    fake_providers.fail_next(provider, status=400, twilio_code=21211, message="bad\x00request \ud83d here")
    world.tick(NOON)
    row = contact_of(world.engine, "late-delivery", "o1")
    assert row.state == "failed"
    assert "bad\ufffdrequest \ufffd here" in (row.last_error or "")
    with world.engine.connect() as connection:
        (reason,) = connection.execute(sa.select(ledger.suppressions.c.reason)).scalars()
    assert "bad\ufffdrequest \ufffd here" in reason
    world.tick(NOON + timedelta(minutes=15))
    assert len(fake_providers.requests(provider)) == 1


def test_a_twilio_refusal_without_twilios_code_fails_the_contact_and_suppresses_nothing(
    world: World, fake_providers: FakeProviders
) -> None:
    # A gateway's 400 carries no code of Twilio's: it says nothing about the customer's number,
    # and its status must not read as SendGrid's "invalid address" code.
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    fake_providers.fail_next(TWILIO, status=400)
    world.tick(NOON)
    row = contact_of(world.engine, "late-delivery", "o1")
    assert row.state == "failed" and "no Twilio error code" in (row.last_error or "")
    assert suppressions(world.engine) == set()
    assert sms_opt_in(world.engine, "c1")

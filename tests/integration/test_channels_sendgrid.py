"""The SendGrid channel, through the real sendgrid-python SDK, against the fake v3 mail/send."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from outreach.channels import OutgoingMessage, Receipt
from outreach.channels.sendgrid import SendGridChannel
from outreach.errors import PermanentDeliveryError, TransientDeliveryError, UnknownOutcomeError
from outreach.testing.fakeproviders import SENDGRID, FakeProviders

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
TIMEOUT = 0.5


def channel(fake: FakeProviders, **options: Any) -> SendGridChannel:
    settings: dict[str, Any] = {
        "api_key": fake.sendgrid_api_key,
        "from_email": "care@example.com",
        "from_name": "Souq Example",
        "host": fake.url,
        "unsubscribe_group_id": 4242,
        "categories": ("outreach", "transactional"),
        "timeout": TIMEOUT,
        "clock": lambda: NOW,
    }
    return SendGridChannel(**{**settings, **options})


def email(outbox_id: str = "ob-1", to: str = "ann@example.com") -> OutgoingMessage:
    return OutgoingMessage(
        outbox_id=outbox_id,
        channel="email",
        to=to,
        to_name="Ann Lee",
        customer_id="c-1",
        rule="late-delivery",
        locale="en",
        subject="Your parcel is late",
        text="Sorry, it is late.",
        html="<p>Sorry, it is late.</p>",
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_sent_email_returns_sendgrids_message_id(fake_providers: FakeProviders) -> None:
    receipt = channel(fake_providers).send(email())
    [request] = fake_providers.requests(SENDGRID)
    assert receipt == Receipt(provider="sendgrid", provider_id=request.provider_id)
    assert receipt.provider_id


def test_an_email_is_one_personalization_carrying_the_outbox_id_with_categories_and_the_unsubscribe_group(
    fake_providers: FakeProviders,
) -> None:
    channel(fake_providers).send(email())
    [request] = fake_providers.requests(SENDGRID)
    assert request.headers["authorization"] == f"Bearer {fake_providers.sendgrid_api_key}"
    assert request.json == {
        "from": {"email": "care@example.com", "name": "Souq Example"},
        "subject": "Your parcel is late",
        "personalizations": [
            {
                "to": [{"email": "ann@example.com", "name": "Ann Lee"}],
                "custom_args": {"outbox_id": "ob-1", "rule": "late-delivery", "customer_id": "c-1"},
            }
        ],
        "content": [
            {"type": "text/plain", "value": "Sorry, it is late."},
            {"type": "text/html", "value": "<p>Sorry, it is late.</p>"},
        ],
        "categories": ["late-delivery", "outreach", "transactional"],
        "asm": {"group_id": 4242},
    }


def test_without_an_unsubscribe_group_no_asm_is_sent(fake_providers: FakeProviders) -> None:
    channel(fake_providers, unsubscribe_group_id=None).send(email())
    [request] = fake_providers.requests(SENDGRID)
    assert "asm" not in request.json


def test_a_rate_limit_waits_until_x_ratelimit_reset(fake_providers: FakeProviders) -> None:
    reset = int(NOW.timestamp()) + 30
    fake_providers.fail_next(SENDGRID, status=429, headers={"X-RateLimit-Reset": str(reset)})
    with pytest.raises(TransientDeliveryError) as caught:
        channel(fake_providers).send(email())
    assert (caught.value.code, caught.value.retry_after) == ("429", 30.0)


def test_a_rate_limit_with_retry_after_honours_it(fake_providers: FakeProviders) -> None:
    fake_providers.fail_next(SENDGRID, status=429, headers={"Retry-After": "2"})
    with pytest.raises(TransientDeliveryError) as caught:
        channel(fake_providers).send(email())
    assert caught.value.retry_after == 2.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_is_transient(fake_providers: FakeProviders, status: int) -> None:
    fake_providers.fail_next(SENDGRID, status=status)
    with pytest.raises(TransientDeliveryError) as caught:
        channel(fake_providers).send(email())
    assert caught.value.code == str(status)


def test_an_address_sendgrid_refuses_is_a_permanent_400_naming_the_field(
    fake_providers: FakeProviders,
) -> None:
    with pytest.raises(PermanentDeliveryError, match=r"personalizations\.0\.to\.0\.email") as caught:
        channel(fake_providers).send(email(to="ann@example.invalid"))
    assert caught.value.code == "400"


@pytest.mark.parametrize("status", [400, 403])
def test_a_scripted_refusal_is_permanent_with_the_status_as_code(
    fake_providers: FakeProviders, status: int
) -> None:
    fake_providers.fail_next(SENDGRID, status=status)
    with pytest.raises(PermanentDeliveryError) as caught:
        channel(fake_providers).send(email())
    assert caught.value.code == str(status)


def test_a_wrong_api_key_is_transient_not_a_refusal_of_the_customer(fake_providers: FakeProviders) -> None:
    with pytest.raises(TransientDeliveryError, match="SENDGRID_API_KEY") as caught:
        channel(fake_providers, api_key="SG.revoked").send(email())
    assert caught.value.code == "401"


def test_an_answer_slower_than_the_timeout_is_an_unknown_outcome_though_sendgrid_took_the_message(
    fake_providers: FakeProviders,
) -> None:
    fake_providers.delay_next(SENDGRID, 5.0)
    with pytest.raises(UnknownOutcomeError) as caught:
        channel(fake_providers).send(email())
    assert caught.value.code == "timeout"
    assert [r.outcome for r in fake_providers.requests(SENDGRID)] == ["accepted"]


def test_a_connection_dropped_after_the_request_is_an_unknown_outcome(fake_providers: FakeProviders) -> None:
    fake_providers.drop_next(SENDGRID)
    with pytest.raises(UnknownOutcomeError) as caught:
        channel(fake_providers).send(email())
    assert caught.value.code == "connection-lost"


def test_a_refused_connection_is_transient_because_nothing_was_sent(fake_providers: FakeProviders) -> None:
    with pytest.raises(TransientDeliveryError, match="nothing was sent") as caught:
        channel(fake_providers, host=f"http://127.0.0.1:{closed_port()}").send(email())
    assert caught.value.code == "connect"


def test_content_the_sdk_refuses_to_send_is_permanent_and_never_reaches_sendgrid(
    fake_providers: FakeProviders,
) -> None:
    leaky = OutgoingMessage(
        outbox_id="ob-9",
        channel="email",
        to="ann@example.com",
        customer_id="c-1",
        rule="late-delivery",
        locale="en",
        subject="Keys",
        text="SG.abcdefgh.ijklmnop is a key",
    )
    with pytest.raises(PermanentDeliveryError) as caught:
        channel(fake_providers).send(leaky)
    assert caught.value.code == "content"
    assert fake_providers.requests(SENDGRID) == []

"""The Twilio channel, through the real twilio-python SDK, against the fake Messages API."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from outreach.channels import OutgoingMessage, Receipt, make_channels
from outreach.channels.twilio import TwilioChannel
from outreach.errors import PermanentDeliveryError, TransientDeliveryError, UnknownOutcomeError
from outreach.settings import Settings
from outreach.testing.fakeproviders import TWILIO, FakeProviders

SERVICE = "MG" + "5" * 32
TIMEOUT = 0.5


def channel(fake: FakeProviders, **options: Any) -> TwilioChannel:
    settings: dict[str, Any] = {
        "account_sid": fake.twilio_account_sid,
        "auth_token": fake.twilio_auth_token,
        "messaging_service_sid": SERVICE,
        "base_url": fake.url,
        "timeout": TIMEOUT,
        "public_url": "https://outreach.example.com",
    }
    return TwilioChannel(**{**settings, **options})


def sms(outbox_id: str = "ob-1", to: str = "+447700900123") -> OutgoingMessage:
    return OutgoingMessage(
        outbox_id=outbox_id,
        channel="sms",
        to=to,
        customer_id="c-1",
        rule="late-delivery",
        locale="en",
        sms="Your parcel is late. Reply STOP to opt out.",
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_sent_sms_returns_the_message_sid_twilio_assigned(fake_providers: FakeProviders) -> None:
    receipt = channel(fake_providers).send(sms())
    [request] = fake_providers.requests(TWILIO)
    assert receipt == Receipt(provider="twilio", provider_id=request.provider_id)
    assert receipt.provider_id is not None and receipt.provider_id.startswith("SM")


def test_an_sms_goes_through_the_messaging_service_with_a_status_callback_naming_the_outbox_id(
    fake_providers: FakeProviders,
) -> None:
    channel(fake_providers).send(sms("ob 7/ü"))
    [request] = fake_providers.requests(TWILIO)
    assert request.path == f"/2010-04-01/Accounts/{fake_providers.twilio_account_sid}/Messages.json"
    assert request.form == {
        "To": "+447700900123",
        "Body": "Your parcel is late. Reply STOP to opt out.",
        "MessagingServiceSid": SERVICE,
        "StatusCallback": "https://outreach.example.com/webhooks/twilio/status?outbox_id=ob+7%2F%C3%BC",
    }


def test_without_a_messaging_service_the_sms_comes_from_the_from_number(
    fake_providers: FakeProviders,
) -> None:
    channel(fake_providers, messaging_service_sid="", from_number="+447700900000").send(sms())
    [request] = fake_providers.requests(TWILIO)
    assert request.form["From"] == "+447700900000"
    assert "MessagingServiceSid" not in request.form


def test_without_a_public_url_no_status_callback_is_requested(fake_providers: FakeProviders) -> None:
    channel(fake_providers, public_url="").send(sms())
    [request] = fake_providers.requests(TWILIO)
    assert "StatusCallback" not in request.form


def test_with_smart_encoding_each_sms_asks_twilio_for_it(fake_providers: FakeProviders) -> None:
    channel(fake_providers, smart_encoded=True).send(sms())
    channel(fake_providers).send(sms())
    first, second = fake_providers.requests(TWILIO)
    assert first.form["SmartEncoded"] == "true"
    assert "SmartEncoded" not in second.form


def test_a_rate_limit_is_transient_and_honours_retry_after(fake_providers: FakeProviders) -> None:
    fake_providers.fail_next(TWILIO, status=429, headers={"Retry-After": "2"})
    with pytest.raises(TransientDeliveryError) as caught:
        channel(fake_providers).send(sms())
    assert (caught.value.code, caught.value.retry_after) == ("20429", 2.0)


def test_a_rate_limit_without_retry_after_leaves_the_delay_to_the_caller(
    fake_providers: FakeProviders,
) -> None:
    fake_providers.fail_next(TWILIO, status=429)
    with pytest.raises(TransientDeliveryError) as caught:
        channel(fake_providers).send(sms())
    assert caught.value.retry_after is None


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_transient(fake_providers: FakeProviders, status: int) -> None:
    fake_providers.fail_next(TWILIO, status=status)
    with pytest.raises(TransientDeliveryError):
        channel(fake_providers).send(sms())


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("+15005550001", "21211"),
        ("+15005550004", "21610"),
        ("+15005550009", "21614"),
        ("07700 900123", "21211"),
    ],
)
def test_a_number_twilio_refuses_is_a_permanent_error_with_twilios_code(
    fake_providers: FakeProviders, number: str, code: str
) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        channel(fake_providers).send(sms(to=number))
    assert caught.value.code == code


def test_a_scripted_twilio_error_code_reaches_the_caller(fake_providers: FakeProviders) -> None:
    fake_providers.fail_next(TWILIO, status=400, twilio_code=21610)
    with pytest.raises(PermanentDeliveryError, match="Twilio error 21610") as caught:
        channel(fake_providers).send(sms())
    assert caught.value.code == "21610"


def test_wrong_credentials_are_transient_not_a_refusal_of_the_customer(fake_providers: FakeProviders) -> None:
    with pytest.raises(TransientDeliveryError, match="TWILIO_AUTH_TOKEN") as caught:
        channel(fake_providers, auth_token="stale").send(sms())
    assert caught.value.code == "20003"


def test_an_answer_slower_than_the_timeout_is_an_unknown_outcome_though_twilio_took_the_message(
    fake_providers: FakeProviders,
) -> None:
    fake_providers.delay_next(TWILIO, 5.0)
    with pytest.raises(UnknownOutcomeError) as caught:
        channel(fake_providers).send(sms())
    assert caught.value.code == "timeout"
    assert [r.outcome for r in fake_providers.requests(TWILIO)] == ["accepted"]


def test_a_connection_dropped_after_the_request_is_an_unknown_outcome(fake_providers: FakeProviders) -> None:
    fake_providers.drop_next(TWILIO)
    with pytest.raises(UnknownOutcomeError) as caught:
        channel(fake_providers).send(sms())
    assert caught.value.code == "connection-lost"


def test_a_refused_connection_is_transient_because_nothing_was_sent(fake_providers: FakeProviders) -> None:
    with pytest.raises(TransientDeliveryError, match="nothing was sent") as caught:
        channel(fake_providers, base_url=f"http://127.0.0.1:{closed_port()}").send(sms())
    assert caught.value.code == "connect"


def test_the_channel_recovers_once_the_fault_has_passed(fake_providers: FakeProviders) -> None:
    twilio = channel(fake_providers)
    fake_providers.drop_next(TWILIO)
    with pytest.raises(UnknownOutcomeError):
        twilio.send(sms("ob-1"))
    assert twilio.send(sms("ob-2")).provider_id is not None


def test_concurrent_sends_each_get_their_own_sid_and_their_own_retry_after(
    fake_providers: FakeProviders,
) -> None:
    twilio = channel(fake_providers)
    fake_providers.fail_fraction(TWILIO, 0.3, status=429, headers={"Retry-After": "7"})

    def send(index: int) -> float | str | None:
        try:
            return twilio.send(sms(f"ob-{index}")).provider_id
        except TransientDeliveryError as error:
            return error.retry_after

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(send, range(200)))
    sids = [r for r in results if isinstance(r, str)]
    accepted = {r.provider_id for r in fake_providers.requests(TWILIO) if r.outcome == "accepted"}
    assert set(sids) == accepted and len(sids) == len(accepted)
    assert [r for r in results if not isinstance(r, str)] == [7.0] * (200 - len(sids))


def test_an_email_handed_to_twilio_is_refused_as_a_wiring_bug_before_any_request(
    fake_providers: FakeProviders,
) -> None:
    email = OutgoingMessage(
        outbox_id="ob-3",
        channel="email",
        to="ann@example.com",
        customer_id="c-1",
        rule="late-delivery",
        locale="en",
        subject="Late",
        text="Late.",
    )
    with pytest.raises(ValueError, match="the twilio channel sends sms, not email"):
        channel(fake_providers).send(email)
    assert fake_providers.requests() == []


def test_twilio_smart_encoding_in_settings_reaches_every_request(
    fake_providers: FakeProviders, tmp_path: Path
) -> None:
    settings = Settings.model_validate(
        {
            "base_dir": tmp_path,
            "delivery": {"mode": "live"},
            "twilio": {
                "messaging_service_sid": SERVICE,
                "base_url": fake_providers.url,
                "smart_encoding": True,
            },
            "sendgrid": {"host": fake_providers.url},
        }
    )
    make_channels(settings, environ=fake_providers.environ())["sms"].send(sms())
    [request] = fake_providers.requests(TWILIO)
    assert request.form["SmartEncoded"] == "true"

"""The fake providers behave like Twilio and SendGrid, in this process or another, and obey scripts."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from outreach.channels import OutgoingMessage, make_channels
from outreach.errors import TransientDeliveryError, UnknownOutcomeError
from outreach.settings import Settings
from outreach.testing.fakeproviders import (
    ANY,
    SENDGRID,
    TWILIO,
    FakeProviders,
    RemoteFakeProviders,
    spawn,
)

SMS = OutgoingMessage(
    outbox_id="ob-1",
    channel="sms",
    to="+447700900123",
    customer_id="c-1",
    rule="late-delivery",
    locale="en",
    sms="Your parcel is late.",
)
EMAIL = OutgoingMessage(
    outbox_id="ob-2",
    channel="email",
    to="ann@example.com",
    customer_id="c-1",
    rule="late-delivery",
    locale="en",
    subject="Late",
    text="Your parcel is late.",
)


def live_settings(fake: FakeProviders | RemoteFakeProviders) -> Settings:
    return Settings.model_validate(
        {
            "delivery": {"mode": "live"},
            "twilio": {"messaging_service_sid": "MG" + "3" * 32, "base_url": fake.url, "timeout": 0.5},
            "sendgrid": {"host": fake.url, "timeout": 0.5},
        }
    )


@pytest.fixture(scope="module")
def remote() -> Iterator[RemoteFakeProviders]:
    with pytest.MonkeyPatch.context() as patch, spawn() as fake:
        # The SDKs honour *_proxy variables; loopback traffic must never go to a proxy.
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield fake


def test_the_fake_runs_in_another_process_and_reports_what_it_received_over_http(
    remote: RemoteFakeProviders,
) -> None:
    remote.clear_requests()
    channels = make_channels(live_settings(remote), environ=remote.environ())
    receipt = channels["sms"].send(SMS)
    channels["email"].send(EMAIL)
    [twilio] = remote.requests(TWILIO)
    assert twilio.provider_id == receipt.provider_id and twilio.form["To"] == "+447700900123"
    assert [r.provider for r in remote.requests()] == [TWILIO, SENDGRID]


def test_faults_are_scriptable_over_http_in_another_process(remote: RemoteFakeProviders) -> None:
    channels = make_channels(live_settings(remote), environ=remote.environ())
    remote.fail_next(ANY, status=503, times=2)
    remote.drop_next(SENDGRID)
    with pytest.raises(TransientDeliveryError):
        channels["sms"].send(SMS)
    with pytest.raises(TransientDeliveryError):
        channels["email"].send(EMAIL)
    with pytest.raises(UnknownOutcomeError):
        channels["email"].send(EMAIL)
    assert channels["email"].send(EMAIL).provider_id


def test_the_environment_of_a_fake_points_a_live_outreach_at_it(fake_providers: FakeProviders) -> None:
    environ = fake_providers.environ()
    assert environ["OUTREACH_DELIVERY__MODE"] == "live"
    assert environ["OUTREACH_TWILIO__BASE_URL"] == environ["OUTREACH_SENDGRID__HOST"] == fake_providers.url
    assert fake_providers.url.startswith("http://127.0.0.1:")


def test_a_fraction_fault_hits_about_that_share_of_requests_until_cleared(
    fake_providers: FakeProviders,
) -> None:
    sms = make_channels(live_settings(fake_providers), environ=fake_providers.environ())["sms"]
    fake_providers.fail_fraction(TWILIO, 0.25, status=500)
    failures = 0
    for _ in range(200):
        try:
            sms.send(SMS)
        except TransientDeliveryError:
            failures += 1
    assert 25 <= failures <= 75
    fake_providers.clear_faults()
    sms.send(SMS)


def test_one_shot_faults_apply_in_order_to_their_provider_only(fake_providers: FakeProviders) -> None:
    channels = make_channels(live_settings(fake_providers), environ=fake_providers.environ())
    fake_providers.fail_next(TWILIO, status=429)
    fake_providers.fail_next(TWILIO, status=500)
    channels["email"].send(EMAIL)
    with pytest.raises(TransientDeliveryError, match="HTTP 429"):
        channels["sms"].send(SMS)
    with pytest.raises(TransientDeliveryError, match="HTTP 500"):
        channels["sms"].send(SMS)
    assert [(r.provider, r.outcome) for r in fake_providers.requests()] == [
        (SENDGRID, "accepted"),
        (TWILIO, "fault"),
        (TWILIO, "fault"),
    ]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"provider": "fax", "action": "fail"}, "fault provider must be one of"),
        ({"provider": "twilio", "action": "fail", "status": 200}, "needs a 4xx or 5xx status"),
        ({"provider": "twilio", "action": "explode"}, "action must be fail, delay or drop"),
        ({"provider": "twilio", "action": "drop", "fraction": 2}, "fraction must be between 0 and 1"),
    ],
)
def test_a_bad_fault_script_is_refused_with_the_reason(
    fake_providers: FakeProviders, spec: dict[str, object], error: str
) -> None:
    request = urllib.request.Request(
        fake_providers.url + "/_fake/faults", data=json.dumps(spec).encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    assert error in json.loads(caught.value.read())["message"]


def test_an_unknown_endpoint_is_a_404_and_still_recorded(fake_providers: FakeProviders) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(fake_providers.url + "/2010-04-01/Accounts.json", timeout=5)
    assert caught.value.code == 404
    [request] = fake_providers.requests()
    assert (request.provider, request.path) == ("unknown", "/2010-04-01/Accounts.json")

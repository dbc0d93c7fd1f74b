"""make_channels picks channels by delivery.mode and takes credentials from the environment only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from outreach.channels import ConsoleChannel, OutboxChannel, make_channels
from outreach.channels.sendgrid import SendGridChannel
from outreach.channels.twilio import TwilioChannel
from outreach.errors import ConfigError
from outreach.settings import Settings

CREDENTIALS = {
    "SENDGRID_API_KEY": "SG.key",
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_AUTH_TOKEN": "token",
}


def settings(tmp_path: Path, mode: str, **sections: Any) -> Settings:
    return Settings.model_validate({"base_dir": tmp_path, "delivery": {"mode": mode}, **sections})


def test_outbox_mode_sends_email_and_sms_to_one_outbox_file_under_the_settings_folder(tmp_path: Path) -> None:
    channels = make_channels(settings(tmp_path, "outbox"), environ={})
    assert channels["email"] is channels["sms"]
    assert isinstance(channels["email"], OutboxChannel)
    assert channels["email"].path == tmp_path / "var" / "outbox.jsonl"


def test_console_mode_prints_both_kinds(tmp_path: Path) -> None:
    channels = make_channels(settings(tmp_path, "console"), environ={})
    assert isinstance(channels["email"], ConsoleChannel) and channels["sms"] is channels["email"]


SERVICE = {"messaging_service_sid": "MG" + "2" * 32}


def test_live_mode_sends_email_with_sendgrid_and_sms_with_twilio(tmp_path: Path) -> None:
    channels = make_channels(settings(tmp_path, "live", twilio=SERVICE), environ=CREDENTIALS)
    assert isinstance(channels["email"], SendGridChannel)
    assert isinstance(channels["sms"], TwilioChannel)


def test_live_mode_without_credentials_names_every_missing_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        make_channels(settings(tmp_path, "live", twilio=SERVICE), environ={"TWILIO_ACCOUNT_SID": "AC1"})
    assert str(caught.value).startswith(
        "delivery.mode is 'live' but SENDGRID_API_KEY, TWILIO_AUTH_TOKEN are not set: export them"
    )


def test_a_blank_credential_counts_as_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="but SENDGRID_API_KEY is not set: export it"):
        make_channels(
            settings(tmp_path, "live", twilio=SERVICE), environ={**CREDENTIALS, "SENDGRID_API_KEY": " "}
        )


def test_live_mode_needs_a_messaging_service_or_a_from_number(tmp_path: Path) -> None:
    config = settings(tmp_path, "live", twilio={"messaging_service_sid": "", "from_number": ""})
    with pytest.raises(ConfigError, match=r"set twilio.messaging_service_sid \(or twilio.from_number\)"):
        make_channels(config, environ=CREDENTIALS)


def test_live_mode_refuses_an_empty_sender(tmp_path: Path) -> None:
    # Provider URLs are refused earlier, when the settings load (tests/unit/test_settings.py).
    config = settings(tmp_path, "live", twilio=SERVICE, sendgrid={"from_email": ""})
    with pytest.raises(ConfigError, match=r"sendgrid\.from_email is empty"):
        make_channels(config, environ=CREDENTIALS)


def test_live_mode_reports_every_settings_problem_at_once(tmp_path: Path) -> None:
    config = settings(tmp_path, "live", sendgrid={"from_email": ""}, twilio={"messaging_service_sid": ""})
    with pytest.raises(ConfigError) as caught:
        make_channels(config, environ={})
    assert [line.split(" ")[0] for line in str(caught.value).splitlines()] == [
        "delivery.mode",
        "sendgrid.from_email",
        "twilio:",
    ]

"""Delivery channels behind one small port (`Channel.send`), and the factory that picks them.

    delivery.mode   email              sms
    outbox          OutboxChannel      the same OutboxChannel (paths.outbox)
    console         ConsoleChannel     the same ConsoleChannel
    live            SendGridChannel    TwilioChannel

Credentials come from the environment only: SENDGRID_API_KEY, TWILIO_ACCOUNT_SID,
TWILIO_AUTH_TOKEN.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from outreach.channels.base import (
    CONNECT,
    CONNECTION_LOST,
    EMAIL,
    SMS,
    TIMEOUT,
    Channel,
    OutgoingMessage,
    Receipt,
    retry_after_seconds,
)
from outreach.channels.codes import SUPPRESSING_CODES, WITHDRAWS_SMS_CONSENT_CODES
from outreach.channels.console import ConsoleChannel
from outreach.channels.outbox import OutboxChannel
from outreach.errors import ConfigError
from outreach.settings import Settings

__all__ = [
    "CONNECT",
    "CONNECTION_LOST",
    "EMAIL",
    "SMS",
    "SUPPRESSING_CODES",
    "TIMEOUT",
    "WITHDRAWS_SMS_CONSENT_CODES",
    "Channel",
    "ConsoleChannel",
    "OutboxChannel",
    "OutgoingMessage",
    "Receipt",
    "make_channels",
    "retry_after_seconds",
]

CREDENTIALS = ("SENDGRID_API_KEY", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")


def make_channels(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, Channel]:
    """The channel for each kind of message, `{"email": …, "sms": …}`, as `delivery.mode` says."""
    mode = settings.delivery.mode
    if mode == "outbox":
        outbox = OutboxChannel(settings.path(settings.paths.outbox))
        return {EMAIL: outbox, SMS: outbox}
    if mode == "console":
        console = ConsoleChannel()
        return {EMAIL: console, SMS: console}
    return _live_channels(settings, os.environ if environ is None else environ)


def _live_channels(settings: Settings, environ: Mapping[str, str]) -> dict[str, Channel]:
    # Imported here so the outbox and console modes never load the provider SDKs.
    from outreach.channels.sendgrid import SendGridChannel
    from outreach.channels.twilio import TwilioChannel

    problems: list[str] = []
    missing = [name for name in CREDENTIALS if not environ.get(name, "").strip()]
    if missing:
        problems.append(
            f"delivery.mode is 'live' but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: export "
            f"{'it' if len(missing) == 1 else 'them'} in the environment "
            "(credentials are never read from settings.toml), or use mode 'outbox'"
        )
    credential = {name: environ.get(name, "").strip() for name in CREDENTIALS}
    email: Channel | None = None
    sms: Channel | None = None
    try:
        email = SendGridChannel(
            api_key=credential["SENDGRID_API_KEY"],
            from_email=settings.sendgrid.from_email,
            from_name=settings.sendgrid.from_name,
            host=settings.sendgrid.host,
            unsubscribe_group_id=settings.sendgrid.unsubscribe_group_id,
            categories=settings.sendgrid.categories,
            timeout=settings.sendgrid.timeout,
        )
    except ConfigError as exc:
        problems.append(str(exc))
    try:
        sms = TwilioChannel(
            account_sid=credential["TWILIO_ACCOUNT_SID"],
            auth_token=credential["TWILIO_AUTH_TOKEN"],
            messaging_service_sid=settings.twilio.messaging_service_sid,
            from_number=settings.twilio.from_number,
            base_url=settings.twilio.base_url,
            timeout=settings.twilio.timeout,
            public_url=settings.server.public_url,
            smart_encoded=settings.twilio.smart_encoding,
        )
    except ConfigError as exc:
        problems.append(str(exc))
    # Every problem at once: fixing settings one error per run is no way to spend a deploy.
    if problems or email is None or sms is None:
        raise ConfigError("\n".join(problems))
    return {EMAIL: email, SMS: sms}

"""Email through SendGrid's v3 mail/send with the official SDK (sendgrid-python).

The SDK's transport is python_http_client over urllib, with no timeout unless one is set on the
client (sendgrid-python#757). Its HTTPError subclasses carry the response headers, so a 429's
`X-RateLimit-Reset` is at hand. urllib raises `URLError` only while connecting or writing the
request; anything after that (a read timeout, a closed connection) surfaces raw, and means the
provider may have the message.
"""

from __future__ import annotations

import json
import socket
import urllib.error
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import (
    Asm,
    Category,
    CustomArg,
    From,
    GroupId,
    Mail,
    SendGridException,
    To,
)

from outreach.channels.base import (
    CONNECT,
    CONNECTION_LOST,
    CONTENT,
    EMAIL,
    TIMEOUT,
    Clock,
    OutgoingMessage,
    Receipt,
    require_channel,
    retry_after_seconds,
    scrubbed,
)
from outreach.clock import utcnow
from outreach.errors import (
    ConfigError,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnknownOutcomeError,
)

DEFAULT_HOST = "https://api.sendgrid.com"
RATE_LIMIT_RESET = "X-RateLimit-Reset"
MESSAGE_ID = "X-Message-Id"


class SendGridChannel:
    """Sends one email per message: one personalization, the outbox id in its custom_args."""

    name = "sendgrid"

    def __init__(
        self,
        *,
        api_key: str,
        from_email: str,
        from_name: str = "",
        host: str = DEFAULT_HOST,
        unsubscribe_group_id: int | None = None,
        categories: Sequence[str] = (),
        timeout: float = 10.0,
        clock: Clock = utcnow,
    ) -> None:
        target = urlsplit(host)
        if target.scheme not in ("http", "https") or not target.netloc:
            raise ConfigError(f"sendgrid.host {host!r} is not an http(s) URL (e.g. https://api.sendgrid.com)")
        if not from_email:
            raise ConfigError("sendgrid.from_email is empty: set the sender address in settings.toml")
        self._from = From(from_email, from_name or None)
        self._unsubscribe_group_id = unsubscribe_group_id
        self._categories = tuple(categories)
        self._clock = clock
        self._client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        # Inherited by every per-call client python_http_client builds from this one.
        self._client.client.timeout = timeout

    def mail(self, message: OutgoingMessage) -> dict[str, Any]:
        """The v3 mail/send request body for one message."""
        mail = Mail(
            from_email=self._from,
            to_emails=To(message.to, message.to_name or None),
            subject=message.subject,
            plain_text_content=message.text,
            html_content=message.html,
            is_multiple=True,
        )
        # custom_args on the personalization come back on every event-webhook event for it.
        for key, value in (
            ("outbox_id", message.outbox_id),
            ("rule", message.rule),
            ("customer_id", message.customer_id),
        ):
            mail.add_custom_arg(CustomArg(key, value, p=0))
        # The rule name first: SendGrid's statistics are broken down by category.
        for category in reversed((message.rule, *self._categories)):
            mail.add_category(Category(category))  # add_category prepends
        if self._unsubscribe_group_id is not None:
            mail.asm = Asm(GroupId(self._unsubscribe_group_id))
        body: dict[str, Any] = mail.get()
        return body

    def send(self, message: OutgoingMessage) -> Receipt:
        require_channel(message, EMAIL, self.name)
        try:
            body = self.mail(message)
        except SendGridException as exc:
            # The helpers refuse content that looks like an API key ("SG.x.y"): that message
            # can never be sent, but it says nothing against the recipient's address.
            raise scrubbed(
                PermanentDeliveryError(
                    f"sendgrid: outbox {message.outbox_id!r}: the SDK refused the content ({exc})",
                    code=CONTENT,
                )
            ) from exc
        try:
            response = self._client.send(body)
        except Exception as exc:
            raise map_sendgrid_error(exc, self._clock, message.outbox_id) from exc
        headers = response.headers
        provider_id = headers.get(MESSAGE_ID) if headers is not None else None
        return Receipt(provider=self.name, provider_id=provider_id)


def map_sendgrid_error(exc: BaseException, clock: Clock, outbox_id: str) -> DeliveryError:
    """The one translation of sendgrid / python_http_client / urllib exceptions into delivery errors.

    The text is scrubbed: SendGrid's error details may quote the address it refused.
    """
    return scrubbed(_translate(exc, clock, outbox_id))


def _translate(exc: BaseException, clock: Clock, outbox_id: str) -> DeliveryError:
    where = f"sendgrid: outbox {outbox_id!r}"
    if isinstance(exc, HTTPError):
        status = int(exc.status_code)
        headers: Mapping[str, str] | None = exc.headers
        said = f"HTTP {status}{_error_detail(exc.body)}"
        if status == 429:
            return TransientDeliveryError(
                f"{where}: rate limited ({said})",
                code=str(status),
                retry_after=retry_after_seconds(headers, clock(), reset_header=RATE_LIMIT_RESET),
            )
        if status >= 500:
            return TransientDeliveryError(
                f"{where}: SendGrid is unavailable ({said})",
                code=str(status),
                retry_after=retry_after_seconds(headers, clock()),
            )
        if status == 401:
            # Our key, not the recipient: held as transient so a bad key never fails every row.
            return TransientDeliveryError(
                f"{where}: SendGrid rejected the API key ({said}): check SENDGRID_API_KEY",
                code=str(status),
            )
        return PermanentDeliveryError(f"{where}: refused ({said})", code=str(status))
    if isinstance(exc, urllib.error.URLError):
        # urllib raises URLError only from connecting and writing the request (do_open).
        return TransientDeliveryError(
            f"{where}: cannot reach SendGrid ({exc.reason}); nothing was sent", code=CONNECT
        )
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return UnknownOutcomeError(
            f"{where}: no answer from SendGrid within the timeout after the request was sent;"
            " the message may have been accepted",
            code=TIMEOUT,
        )
    # RemoteDisconnected, IncompleteRead, a reset after the request was written — or anything
    # unforeseen: not knowing is safer than a resend or a suppression.
    return UnknownOutcomeError(
        f"{where}: the connection failed after the request was sent ({type(exc).__name__}: {exc});"
        " the message may have been accepted",
        code=CONNECTION_LOST,
    )


def _error_detail(body: bytes | str | None) -> str:
    """SendGrid's `{"errors": [{"message": …, "field": …}]}` as `: field: message; …`."""
    if not body:
        return ""
    try:
        document = json.loads(body)
        errors = document.get("errors") or []
        parts = [
            f"{error['field']}: {error['message']}" if error.get("field") else str(error["message"])
            for error in errors
            if isinstance(error, dict) and error.get("message")
        ]
    except (ValueError, AttributeError, TypeError, KeyError):
        return ""
    return (": " + "; ".join(parts)) if parts else ""

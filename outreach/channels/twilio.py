"""SMS through Twilio's Messages API with the official SDK (twilio-python).

The SDK is given its own HTTP client (the route Twilio documents for proxies and test servers,
twilio-python#521) so that it gets an explicit timeout, talks to `twilio.base_url`, and keeps
the headers of the last response on each thread: `TwilioRestException` carries the status and
Twilio's error code but not `Retry-After`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from outreach.channels.base import (
    CONNECT,
    CONNECTION_LOST,
    SMS,
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

DEFAULT_BASE_URL = "https://api.twilio.com"

TOO_MANY_REQUESTS = 20429
AUTHENTICATION_FAILED = 20003


class RoutingHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the SDK ships no type hints
    """TwilioHttpClient that sends to `base_url` and remembers each thread's last response headers."""

    def __init__(self, base_url: str, *, timeout: float, pool_size: int = 32) -> None:
        super().__init__(timeout=timeout)
        target = urlsplit(base_url)
        if target.scheme not in ("http", "https") or not target.netloc:
            raise ConfigError(
                f"twilio.base_url {base_url!r} is not an http(s) URL (e.g. https://api.twilio.com)"
            )
        self._scheme = target.scheme
        self._netloc = target.netloc
        self._prefix = target.path.rstrip("/")
        # No retries below us: Messages is not idempotent, so a resend is the dispatcher's call.
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        assert self.session is not None
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._local = threading.local()

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        self._local.headers = None
        parts = urlsplit(url)
        routed = urlunsplit(
            (self._scheme, self._netloc, self._prefix + parts.path, parts.query, parts.fragment)
        )
        response = super().request(
            method,
            routed,
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self._local.headers = response.headers
        return response

    def last_headers(self) -> Mapping[str, str] | None:
        """Headers of the last response this thread received, if it received one."""
        headers: Mapping[str, str] | None = getattr(self._local, "headers", None)
        return headers


class TwilioChannel:
    """Sends SMS through a Messaging Service (or a from-number) with a status callback per message.

    SMART_ENCODED asks Twilio for Smart Encoding on every message (`twilio.smart_encoding`).
    """

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        messaging_service_sid: str = "",
        from_number: str = "",
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        public_url: str = "",
        pool_size: int = 32,
        clock: Clock = utcnow,
        smart_encoded: bool = False,
    ) -> None:
        if not (messaging_service_sid or from_number):
            raise ConfigError(
                "twilio: set twilio.messaging_service_sid (or twilio.from_number) in settings.toml"
            )
        self._messaging_service_sid = messaging_service_sid
        self._from_number = from_number
        self._public_url = public_url.rstrip("/")
        self._clock = clock
        self._smart_encoded = smart_encoded
        self.http_client = RoutingHttpClient(base_url, timeout=timeout, pool_size=pool_size)
        # A non-empty environment keeps TWILIO_EDGE / TWILIO_REGION from rewriting the host:
        # twilio.base_url is the one place that chooses where requests go.
        client = Client(
            account_sid,
            auth_token,
            http_client=self.http_client,
            environment={"TWILIO_ACCOUNT_SID": account_sid},
        )
        self._messages = client.api.v2010.account.messages

    def status_callback(self, outbox_id: str) -> str | None:
        """The URL Twilio calls with this message's delivery status, or None without a public URL."""
        if not self._public_url:
            return None
        return f"{self._public_url}/webhooks/twilio/status?{urlencode({'outbox_id': outbox_id})}"

    def send(self, message: OutgoingMessage) -> Receipt:
        require_channel(message, SMS, self.name)
        params: dict[str, Any] = {"to": message.to, "body": message.sms}
        if self._messaging_service_sid:
            params["messaging_service_sid"] = self._messaging_service_sid
        else:
            params["from_"] = self._from_number
        callback = self.status_callback(message.outbox_id)
        if callback is not None:
            params["status_callback"] = callback
        if self._smart_encoded:
            # Sent as `SmartEncoded=true`: Twilio replaces curly quotes, dashes, no-break
            # spaces… with GSM-7 look-alikes, as rendering counted (twilio.smart_encoding).
            params["smart_encoded"] = True
        try:
            created = self._messages.create(**params)
        except Exception as exc:
            raise map_twilio_error(
                exc, self.http_client.last_headers(), self._clock, message.outbox_id
            ) from exc
        return Receipt(provider=self.name, provider_id=created.sid)


def map_twilio_error(
    exc: BaseException, headers: Mapping[str, str] | None, clock: Clock, outbox_id: str
) -> DeliveryError:
    """The one translation of twilio-python and requests exceptions into outreach's delivery errors.

    The text is scrubbed: Twilio quotes the number it refused (21211), requests the URL with
    the account SID in it.
    """
    return scrubbed(_translate(exc, headers, clock, outbox_id))


def _translate(
    exc: BaseException, headers: Mapping[str, str] | None, clock: Clock, outbox_id: str
) -> DeliveryError:
    where = f"twilio: outbox {outbox_id!r}"
    if isinstance(exc, (TwilioRestException, TwilioServiceException)):
        status = int(exc.status)
        # Where Twilio gave no code (a proxy's or gateway's answer) the SDK puts the HTTP status
        # (twilio/base/version.py): that is no code of Twilio's, and kept it would read as
        # SendGrid's address codes (400, 403) and suppress the customer's SMS.
        code = int(exc.code) if exc.code is not None and int(exc.code) != status else None
        detail = getattr(exc, "msg", None) or getattr(exc, "detail", None) or ""
        error = f"Twilio error {code}" if code is not None else "no Twilio error code"
        said = f"HTTP {status}, {error}: {detail}".rstrip(": ")
        coded = str(code) if code is not None else None
        if status == 429 or code == TOO_MANY_REQUESTS:
            return TransientDeliveryError(
                f"{where}: rate limited ({said})",
                code=coded,
                retry_after=retry_after_seconds(headers, clock()),
            )
        if status >= 500:
            return TransientDeliveryError(
                f"{where}: Twilio is unavailable ({said})",
                code=coded,
                retry_after=retry_after_seconds(headers, clock()),
            )
        if status == 401 or code == AUTHENTICATION_FAILED:
            # Our credentials, not the recipient: failing (and suppressing) every customer
            # would turn a typo into mass data loss. Held as transient until someone fixes them.
            return TransientDeliveryError(
                f"{where}: Twilio rejected the credentials ({said}):"
                " check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
                code=coded,
            )
        return PermanentDeliveryError(f"{where}: refused ({said})", code=coded)
    if isinstance(exc, requests.ConnectTimeout):
        return TransientDeliveryError(
            f"{where}: timed out connecting to Twilio; nothing was sent", code=CONNECT
        )
    if isinstance(exc, requests.Timeout):
        return UnknownOutcomeError(
            f"{where}: no answer from Twilio within the timeout after the request was sent;"
            " the message may have been accepted",
            code=TIMEOUT,
        )
    if isinstance(exc, requests.ConnectionError) and _never_connected(exc):
        return TransientDeliveryError(
            f"{where}: cannot connect to Twilio ({exc}); nothing was sent", code=CONNECT
        )
    return UnknownOutcomeError(
        f"{where}: the connection failed after the request was sent ({type(exc).__name__}: {exc});"
        " the message may have been accepted",
        code=CONNECTION_LOST,
    )


def _never_connected(exc: requests.ConnectionError) -> bool:
    # requests wraps urllib3's MaxRetryError; a NewConnectionError (refused, unresolvable) is a
    # ConnectTimeoutError there, raised before a byte of the request was written. A dropped
    # connection after sending surfaces as a ProtocolError instead.
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        return isinstance(reason.reason, ConnectTimeoutError)
    return False

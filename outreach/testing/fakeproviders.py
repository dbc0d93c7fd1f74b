"""A fake Twilio Messages API and SendGrid v3 mail/send on loopback, with scripted faults.

The real SDKs talk to it over HTTP, so tests exercise their transports, error parsing and
timeouts exactly as in production:

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json    form-encoded, basic auth → 201 JSON
    POST /v3/mail/send                                      JSON, bearer auth → 202 + X-Message-Id

Every request is recorded, parsed, in a thread-safe list. Faults are scripted per provider:
the next N requests (`fail_next`, `delay_next`, `drop_next`) or a random fraction of them
(`fail_fraction`, …, seeded) get an error status, a late answer, or a connection closed with
no answer after the request was read. Twilio's magic test numbers refuse as Twilio does
(+15005550001 → 21211, +15005550004 → 21610, +15005550009 → 21614), and any email address
under the reserved `.invalid` domain gets SendGrid's 400.

In-process: `with FakeProviders() as fake: …` (a background thread). In another process:
`python -m outreach.testing.fakeproviders --port 0` prints the port, serves until SIGTERM or
SIGINT, and is driven over HTTP with `RemoteFakeProviders(url)` (or `spawn()`):

    GET    /_fake/config              url and the credentials it accepts
    GET    /_fake/requests?provider=  the recorded requests
    DELETE /_fake/requests            forget them
    POST   /_fake/faults              {"provider", "action": fail|delay|drop, "status",
                                       "headers", "twilio_code", "message", "seconds",
                                       "times" | "fraction"}
    DELETE /_fake/faults              clear every fault

It is built on the standard library's ThreadingHTTPServer rather than an ASGI server: dropping
a connection after reading a request needs the socket, which ASGI hides (uvicorn answers 500
when an app returns without responding).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import random
import re
import secrets
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from email.utils import format_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from outreach.clock import utcnow

TWILIO = "twilio"
SENDGRID = "sendgrid"
ANY = "*"
PROVIDERS = (TWILIO, SENDGRID, ANY)

DEFAULT_TWILIO_ACCOUNT_SID = "AC" + "fa4e" * 8
DEFAULT_TWILIO_AUTH_TOKEN = "fake-twilio-auth-token"
DEFAULT_SENDGRID_API_KEY = "SG.fake-sendgrid-api-key"

Action = Literal["fail", "delay", "drop"]

# Twilio's test-credential magic numbers (twilio.com/docs/iam/test-credentials), honoured for
# any account so end-to-end tests can provoke a refusal with data instead of a script.
TWILIO_MAGIC_NUMBERS: Mapping[str, tuple[int, str]] = {
    "+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (21612, "The 'To' phone number is not currently reachable via SMS."),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}

_TWILIO_DEFAULT_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
_TWILIO_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
_SENDGRID_SEND = "/v3/mail/send"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Fault:
    """What to do to one request instead of (or before) answering it normally.

    `fail` answers `status` with the provider's error body and `headers`: Twilio's body carries
    `twilio_code` (else Twilio's usual code for the status, else none, as a gateway's answer
    would), and `message` replaces the status's phrase. `delay` processes the request, then
    answers normally after `seconds`; `drop` reads the request and closes the connection
    without answering.
    """

    provider: str
    action: Action
    status: int = 500
    headers: Mapping[str, str] = field(default_factory=dict)
    twilio_code: int | None = None
    seconds: float = 0.0
    message: str | None = None

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"fault provider must be one of {PROVIDERS}, not {self.provider!r}")
        if self.action not in ("fail", "delay", "drop"):
            raise ValueError(f"fault action must be fail, delay or drop, not {self.action!r}")
        if self.action == "fail" and not 400 <= self.status <= 599:
            raise ValueError(f"a failing fault needs a 4xx or 5xx status, not {self.status}")
        if self.seconds < 0:
            raise ValueError("a delay cannot be negative")

    def applies_to(self, provider: str) -> bool:
        return self.provider in (ANY, provider)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "headers": dict(self.headers)}


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, parsed, and what it did with it."""

    seq: int
    provider: str  # "twilio" | "sendgrid" | "unknown"
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]  # Twilio's form fields
    json: Any  # SendGrid's request body
    received_at: str
    outcome: str  # "accepted" | "rejected" | "fault" | "dropped"
    status: int | None  # None when the connection was dropped
    provider_id: str | None  # the message SID / X-Message-Id of an accepted message
    delayed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordedRequest:
        return cls(**data)


class FaultScript:
    """Scripting shared by the in-process server and its remote control."""

    def add_fault(self, fault: Fault, *, times: int = 1, fraction: float | None = None) -> None:
        raise NotImplementedError

    def fail_next(
        self,
        provider: str,
        *,
        status: int,
        headers: Mapping[str, str] | None = None,
        twilio_code: int | None = None,
        message: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests to `provider` with `status` (and Twilio's `twilio_code`),
        the error body saying `message` when given."""
        self.add_fault(
            Fault(
                provider,
                "fail",
                status=status,
                headers=dict(headers or {}),
                twilio_code=twilio_code,
                message=message,
            ),
            times=times,
        )

    def delay_next(self, provider: str, seconds: float, *, times: int = 1) -> None:
        """Process the next `times` requests, then answer each only after `seconds`."""
        self.add_fault(Fault(provider, "delay", seconds=seconds), times=times)

    def drop_next(self, provider: str, *, times: int = 1) -> None:
        """Read the next `times` requests, then close each connection without an answer."""
        self.add_fault(Fault(provider, "drop"), times=times)

    def fail_fraction(
        self,
        provider: str,
        fraction: float,
        *,
        status: int,
        headers: Mapping[str, str] | None = None,
        twilio_code: int | None = None,
    ) -> None:
        """Until cleared, answer about `fraction` of requests to `provider` with `status`."""
        self.add_fault(
            Fault(provider, "fail", status=status, headers=dict(headers or {}), twilio_code=twilio_code),
            fraction=fraction,
        )

    def delay_fraction(self, provider: str, fraction: float, seconds: float) -> None:
        """Until cleared, answer about `fraction` of requests only after `seconds`."""
        self.add_fault(Fault(provider, "delay", seconds=seconds), fraction=fraction)

    def drop_fraction(self, provider: str, fraction: float) -> None:
        """Until cleared, drop the connection of about `fraction` of requests after reading them."""
        self.add_fault(Fault(provider, "drop"), fraction=fraction)


class _Faults:
    """One-shot faults in order, then standing faults by probability; one lock for both."""

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []
        self._standing: list[tuple[Fault, float]] = []
        self._random = random.Random(seed)

    def add(self, fault: Fault, *, times: int, fraction: float | None) -> None:
        if fraction is not None:
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"fraction must be between 0 and 1, not {fraction}")
            with self._lock:
                self._standing.append((fault, fraction))
            return
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        with self._lock:
            self._queue.extend([fault] * times)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._standing.clear()

    def take(self, provider: str) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._queue):
                if fault.applies_to(provider):
                    del self._queue[index]
                    return fault
            for fault, fraction in self._standing:
                if fault.applies_to(provider) and self._random.random() < fraction:
                    return fault
        return None


@dataclass
class _Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    outcome: str = "accepted"
    provider_id: str | None = None


class FakeProviders(FaultScript):
    """The fake Twilio + SendGrid server, run in a background thread of this process."""

    def __init__(
        self,
        *,
        port: int = 0,
        twilio_account_sid: str = DEFAULT_TWILIO_ACCOUNT_SID,
        twilio_auth_token: str = DEFAULT_TWILIO_AUTH_TOKEN,
        sendgrid_api_key: str = DEFAULT_SENDGRID_API_KEY,
        seed: int = 0,
        record: bool = True,
    ) -> None:
        self.twilio_account_sid = twilio_account_sid
        self.twilio_auth_token = twilio_auth_token
        self.sendgrid_api_key = sendgrid_api_key
        self._requested_port = port
        self._record = record
        self._faults = _Faults(seed)
        self._records: list[RecordedRequest] = []
        self._records_lock = threading.Lock()
        self._seq = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeProviders:
        """Bind 127.0.0.1 and serve in a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the fake providers are already running")
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self._requested_port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-providers",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed answers and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeProviders:
        return self.start() if self._server is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake providers are not running: call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL for both SDKs: twilio.base_url and sendgrid.host."""
        return f"http://127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        """Environment that points an `outreach` process in live mode at this server."""
        return provider_environ(
            self.url, self.twilio_account_sid, self.twilio_auth_token, self.sendgrid_api_key
        )

    # -- scripting and inspection ----------------------------------------------------------

    def add_fault(self, fault: Fault, *, times: int = 1, fraction: float | None = None) -> None:
        """Apply `fault` to the next `times` matching requests, or to `fraction` of them until cleared."""
        self._faults.add(fault, times=times, fraction=fraction)

    def clear_faults(self) -> None:
        self._faults.clear()

    def requests(self, provider: str | None = None) -> list[RecordedRequest]:
        """Every request received so far (of `provider`, if given), in arrival order."""
        with self._records_lock:
            records = list(self._records)
        return [r for r in records if provider is None or r.provider == provider]

    def clear_requests(self) -> None:
        with self._records_lock:
            self._records.clear()

    # -- request handling (called on the server's threads) ---------------------------------

    def _record_request(self, **fields: Any) -> None:
        with self._records_lock:
            self._seq += 1
            if self._record:
                self._records.append(
                    RecordedRequest(seq=self._seq, received_at=utcnow().isoformat(), **fields)
                )

    def _config(self) -> dict[str, str]:
        return {
            "url": self.url,
            "twilio_account_sid": self.twilio_account_sid,
            "twilio_auth_token": self.twilio_auth_token,
            "sendgrid_api_key": self.sendgrid_api_key,
        }

    def _twilio(self, path_sid: str, headers: Mapping[str, str], form: Mapping[str, str]) -> _Answer:
        expected = "Basic " + base64.b64encode(
            f"{self.twilio_account_sid}:{self.twilio_auth_token}".encode()
        ).decode("ascii")
        if headers.get("authorization") != expected or path_sid != self.twilio_account_sid:
            return _twilio_error(401, 20003, "Authenticate")
        to = form.get("To", "")
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return _twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required.")
        body = form.get("Body", "")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return _twilio_error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if to in TWILIO_MAGIC_NUMBERS:
            code, message = TWILIO_MAGIC_NUMBERS[to]
            return _twilio_error(400, code, message)
        if not _E164.match(to):
            return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(utcnow(), usegmt=True)
        service = form.get("MessagingServiceSid") or None
        uri = f"/2010-04-01/Accounts/{self.twilio_account_sid}/Messages/{sid}.json"
        document = {
            "account_sid": self.twilio_account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From") or None,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # Twilio answers "accepted" when it still has to pick a sender from the service's pool.
            "status": "accepted" if service and not form.get("From") else "queued",
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": to,
            "uri": uri,
        }
        return _Answer(201, _json_bytes(document), {"Content-Type": "application/json"}, provider_id=sid)

    def _sendgrid(self, headers: Mapping[str, str], document: Any) -> _Answer:
        if headers.get("authorization") != f"Bearer {self.sendgrid_api_key}":
            return _sendgrid_error(401, "The provided authorization grant is invalid, expired, or revoked")
        problems = _sendgrid_problems(document)
        if problems:
            return _sendgrid_error(400, *problems[0])
        message_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")
        return _Answer(202, b"", {"X-Message-Id": message_id}, provider_id=message_id)


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _twilio_error(
    status: int, code: int | None, message: str, headers: Mapping[str, str] | None = None
) -> _Answer:
    document: dict[str, Any] = {"message": message, "status": status}
    if code is not None:
        document |= {"code": code, "more_info": f"https://www.twilio.com/docs/errors/{code}"}
    return _Answer(
        status,
        _json_bytes(document),
        {"Content-Type": "application/json", **(headers or {})},
        outcome="rejected",
    )


def _sendgrid_error(
    status: int, message: str, field_name: str | None = None, headers: Mapping[str, str] | None = None
) -> _Answer:
    document = {"errors": [{"field": field_name, "message": message, "help": None}]}
    return _Answer(
        status,
        _json_bytes(document),
        {"Content-Type": "application/json", **(headers or {})},
        outcome="rejected",
    )


def _sendgrid_problems(document: Any) -> list[tuple[str, str]]:
    """What SendGrid's v3 mail/send would reject, as (message, field) pairs."""
    if not isinstance(document, dict):
        return [("Bad Request", "body")]
    problems: list[tuple[str, str]] = []
    personalizations = document.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append(("The personalizations field is required.", "personalizations"))
        personalizations = []
    for p_index, personalization in enumerate(personalizations):
        recipients = personalization.get("to") if isinstance(personalization, dict) else None
        if not isinstance(recipients, list) or not recipients:
            problems.append(("The to array is required.", f"personalizations.{p_index}.to"))
            continue
        for t_index, recipient in enumerate(recipients):
            address = recipient.get("email", "") if isinstance(recipient, dict) else ""
            if not _EMAIL.match(address) or address.lower().endswith(".invalid"):
                problems.append(
                    ("Does not contain a valid address.", f"personalizations.{p_index}.to.{t_index}.email")
                )
        custom_args = personalization.get("custom_args", {})
        if not all(isinstance(v, str) for v in custom_args.values()):
            problems.append(
                ("Custom args values must be strings.", f"personalizations.{p_index}.custom_args")
            )
    sender = document.get("from")
    if not isinstance(sender, dict) or not _EMAIL.match(sender.get("email", "")):
        problems.append(("The from object must be provided for every email send.", "from"))
    has_subject = bool(document.get("subject")) or all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    )
    if not document.get("template_id"):
        if not has_subject:
            problems.append(("The subject is required.", "subject"))
        content = document.get("content")
        if (
            not isinstance(content, list)
            or not content
            or not all(isinstance(c, dict) and c.get("type") and c.get("value") for c in content)
        ):
            problems.append(
                ("Unless a valid template_id is provided, the content parameter is required.", "content")
            )
    categories = document.get("categories", [])
    if not isinstance(categories, list) or len(categories) > 10:
        problems.append(("Too many categories.", "categories"))
    return problems


def _fault_answer(provider: str, fault: Fault) -> _Answer:
    headers = dict(fault.headers)
    phrase = HTTPStatus(fault.status).phrase
    if provider == TWILIO:
        # Twilio's code for the status, or none at all (a gateway's answer) when it has none here.
        code = fault.twilio_code or _TWILIO_DEFAULT_CODES.get(fault.status)
        answer = _twilio_error(fault.status, code, fault.message or phrase, headers)
    elif provider == SENDGRID:
        if fault.status == 429:
            # SendGrid's rate-limit headers; a scripted X-RateLimit-Reset wins.
            reset = int(utcnow().timestamp()) + 1
            headers = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
                **headers,
            }
        answer = _sendgrid_error(fault.status, fault.message or phrase.lower(), None, headers)
    else:
        answer = _Answer(fault.status, b"", headers)
    answer.outcome = "fault"
    return answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # SendGrid's urllib transport opens a connection per request: keep bursts from being refused.
    request_queue_size = 1024

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: FakeProviders
    ) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (socket.getfqdn), which can stall for
        # seconds without DNS; loopback needs no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake every keep-alive handler blocked on a read so its thread ends."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the providers do
    server_version = "fake-providers"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if parts.path.startswith("/_fake/"):
            self._control(parts.path, dict(parse_qsl(parts.query)), raw)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        twilio = _TWILIO_MESSAGES.match(parts.path)
        provider = TWILIO if twilio else SENDGRID if parts.path == _SENDGRID_SEND else "unknown"
        form: dict[str, str] = {}
        document: Any = None
        if provider == TWILIO:
            form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        elif raw:
            try:
                document = json.loads(raw)
            except ValueError:
                document = raw.decode("utf-8", "replace")
        record = {
            "provider": provider,
            "method": self.command,
            "path": parts.path,
            "query": dict(parse_qsl(parts.query)),
            "headers": headers,
            "form": form,
            "json": document,
        }
        if self.command != "POST" or provider == "unknown":
            answer = _Answer(
                404,
                _json_bytes({"message": f"no such endpoint: {self.command} {parts.path}"}),
                {"Content-Type": "application/json"},
                outcome="rejected",
            )
            fake._record_request(**record, outcome=answer.outcome, status=404, provider_id=None)
            self._answer(answer)
            return
        fault = fake._faults.take(provider)
        if fault is not None and fault.action == "drop":
            fake._record_request(**record, outcome="dropped", status=None, provider_id=None)
            self.close_connection = True
            return
        if fault is not None and fault.action == "fail":
            answer = _fault_answer(provider, fault)
        elif provider == TWILIO:
            assert twilio is not None
            answer = fake._twilio(twilio.group("sid"), headers, form)
        else:
            answer = fake._sendgrid(headers, document)
        delay = fault.seconds if fault is not None and fault.action == "delay" else 0.0
        fake._record_request(
            **record,
            outcome=answer.outcome,
            status=answer.status,
            provider_id=answer.provider_id,
            delayed=delay,
        )
        if delay and fake._stopping.wait(delay):
            self.close_connection = True
            return
        self._answer(answer)

    def _control(self, path: str, query: Mapping[str, str], raw: bytes) -> None:
        fake = self.server.fake
        try:
            if path == "/_fake/config" and self.command == "GET":
                self._answer(_Answer(200, _json_bytes(fake._config()), {"Content-Type": "application/json"}))
            elif path == "/_fake/requests" and self.command == "GET":
                records = [r.to_dict() for r in fake.requests(query.get("provider"))]
                self._answer(
                    _Answer(200, _json_bytes({"requests": records}), {"Content-Type": "application/json"})
                )
            elif path == "/_fake/requests" and self.command == "DELETE":
                fake.clear_requests()
                self._answer(_Answer(204))
            elif path == "/_fake/faults" and self.command == "POST":
                spec = json.loads(raw or b"{}")
                times = int(spec.pop("times", 1))
                fraction = spec.pop("fraction", None)
                fake.add_fault(Fault(**spec), times=times, fraction=fraction)
                self._answer(_Answer(201))
            elif path == "/_fake/faults" and self.command == "DELETE":
                fake.clear_faults()
                self._answer(_Answer(204))
            else:
                self._answer(
                    _Answer(404, _json_bytes({"message": f"no such control: {self.command} {path}"}))
                )
        except (TypeError, ValueError) as exc:
            self._answer(
                _Answer(400, _json_bytes({"message": str(exc)}), {"Content-Type": "application/json"})
            )

    def _answer(self, answer: _Answer) -> None:
        reason = HTTPStatus(answer.status).phrase
        lines = [f"HTTP/1.1 {answer.status} {reason}", f"Content-Length: {len(answer.body)}"]
        lines.extend(f"{name}: {value}" for name, value in answer.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            # One write: headers and body in one segment, no Nagle/delayed-ACK stall between them.
            self.wfile.write(head + answer.body)
        except OSError:
            # The client gave up (its timeout) before the late answer: what a real provider sees too.
            self.close_connection = True


def provider_environ(url: str, account_sid: str, auth_token: str, api_key: str) -> dict[str, str]:
    """Environment for an `outreach` process in live mode against a fake at `url`."""
    return {
        "TWILIO_ACCOUNT_SID": account_sid,
        "TWILIO_AUTH_TOKEN": auth_token,
        "SENDGRID_API_KEY": api_key,
        "OUTREACH_DELIVERY__MODE": "live",
        "OUTREACH_TWILIO__BASE_URL": url,
        "OUTREACH_SENDGRID__HOST": url,
    }


class RemoteFakeProviders(FaultScript):
    """Drives a fake running in another process over its `/_fake/` HTTP endpoints."""

    def __init__(self, url: str, *, process: subprocess.Popen[bytes] | None = None) -> None:
        self.url = url.rstrip("/")
        self._process = process
        config = self._call("GET", "/_fake/config")
        self.twilio_account_sid: str = config["twilio_account_sid"]
        self.twilio_auth_token: str = config["twilio_auth_token"]
        self.sendgrid_api_key: str = config["sendgrid_api_key"]

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 80)

    def environ(self) -> dict[str, str]:
        return provider_environ(
            self.url, self.twilio_account_sid, self.twilio_auth_token, self.sendgrid_api_key
        )

    def add_fault(self, fault: Fault, *, times: int = 1, fraction: float | None = None) -> None:
        self._call("POST", "/_fake/faults", {**fault.to_dict(), "times": times, "fraction": fraction})

    def clear_faults(self) -> None:
        self._call("DELETE", "/_fake/faults")

    def requests(self, provider: str | None = None) -> list[RecordedRequest]:
        query = f"?provider={provider}" if provider else ""
        document = self._call("GET", "/_fake/requests" + query)
        return [RecordedRequest.from_dict(r) for r in document["requests"]]

    def clear_requests(self) -> None:
        self._call("DELETE", "/_fake/requests")

    def close(self) -> None:
        """Stop the server process, if this handle started it."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> RemoteFakeProviders:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else _json_bytes(body)
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        # Never through a proxy from the environment: the fake is on loopback.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise ValueError(
                f"fake providers at {self.url}: {method} {path}: {exc.read().decode()}"
            ) from None
        return json.loads(payload) if payload else None


def spawn(*, port: int = 0, seed: int = 0, record: bool = True, timeout: float = 30.0) -> RemoteFakeProviders:
    """Start the fake in a child process and return its remote control (close() stops it)."""
    command = [
        sys.executable,
        "-m",
        "outreach.testing.fakeproviders",
        "--port",
        str(port),
        "--seed",
        str(seed),
    ]
    if not record:
        command.append("--no-record")
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert process.stdout is not None
    ready = threading.Event()
    line: list[bytes] = []

    def read_port() -> None:
        line.append(process.stdout.readline() if process.stdout else b"")
        ready.set()

    threading.Thread(target=read_port, daemon=True).start()
    if not ready.wait(timeout) or not line[0].strip().isdigit():
        process.kill()
        process.wait()
        raise RuntimeError(f"the fake providers did not start within {timeout}s (got {line[:1]!r})")
    return RemoteFakeProviders(f"http://127.0.0.1:{int(line[0])}", process=process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m outreach.testing.fakeproviders",
        description="Fake Twilio Messages + SendGrid mail/send on 127.0.0.1; prints the port.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--seed", type=int, default=0, help="seed for fraction faults")
    parser.add_argument("--twilio-account-sid", default=DEFAULT_TWILIO_ACCOUNT_SID)
    parser.add_argument("--twilio-auth-token", default=DEFAULT_TWILIO_AUTH_TOKEN)
    parser.add_argument("--sendgrid-api-key", default=DEFAULT_SENDGRID_API_KEY)
    parser.add_argument("--no-record", action="store_true", help="do not keep requests (long soaks)")
    args = parser.parse_args(argv)
    fake = FakeProviders(
        port=args.port,
        twilio_account_sid=args.twilio_account_sid,
        twilio_auth_token=args.twilio_auth_token,
        sendgrid_api_key=args.sendgrid_api_key,
        seed=args.seed,
        record=not args.no_record,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with fake:
        print(fake.port, flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The daemon's HTTP side, served by uvicorn in a thread.

    GET  /healthz                    scheduler alive, database reachable, ticks on time
    GET  /metrics                    Prometheus text
    POST /events                     customer state records (bearer OUTREACH_EVENTS_TOKEN)
    POST /webhooks/twilio/status     status callbacks (X-Twilio-Signature)
    POST /webhooks/twilio/inbound    incoming SMS: STOP / START (X-Twilio-Signature)
    POST /webhooks/sendgrid/events   Event Webhook (ECDSA signature over the raw body)

The POST endpoints exist when the app is given an `Inbound`; each answers 503 until its secret
is set in the environment. What the requests mean is in `outreach.webhooks`.

An exception in an endpoint is answered 500 (503 with Retry-After when the database is busy
or unreachable) and logged as one structured `http_error` event: the exception's class, where
it was raised, the driver's SQLSTATE and first line, scrubbed — never the statement's
parameters, which hold customers' emails and phones, and never uvicorn's traceback.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
import uvicorn
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from outreach import events, feedback
from outreach.clock import utcnow
from outreach.daemon.metrics import CONTENT_TYPE_LATEST, Metrics
from outreach.delivery.dispatch import reroute_waiting
from outreach.durations import parse_duration
from outreach.redact import scrub
from outreach.rules.loader import RuleSet
from outreach.settings import Settings
from outreach.state.db import is_transient
from outreach.state.ingest import read_json

log = structlog.get_logger("outreach.server")


@dataclass(frozen=True)
class Health:
    healthy: bool
    detail: dict[str, Any]


@dataclass(frozen=True)
class Inbound:
    """What the POST endpoints need: the database, the secrets, the URL providers call us at."""

    engine: Engine
    secrets: feedback.Secrets
    public_url: str = ""
    clock: Callable[[], datetime] = field(default=utcnow)
    # The rules in force, to re-route contacts already waiting when consent is withdrawn.
    rules: Callable[[], RuleSet | None] = field(default=lambda: None)
    keywords: feedback.Keywords = feedback.DEFAULT_KEYWORDS
    # Signed SendGrid requests older than this are replays: SendGrid retries for up to 24 hours.
    sendgrid_max_age: timedelta = timedelta(hours=24, minutes=10)
    # Told of records loaded by POST /events (table, ids), after they are committed.
    on_records: Callable[[str, list[str]], None] | None = None

    def consent_changed(self, connection: Connection, customer_ids: Iterable[str]) -> int:
        """Re-route or hold back what is waiting for customers whose consent or suppressions changed."""
        ids = set(customer_ids)
        return reroute_waiting(connection, self.rules(), ids, self.clock()) if ids else 0


def inbound_from_settings(
    engine: Engine,
    settings: Settings,
    *,
    rules: Callable[[], RuleSet | None],
    clock: Callable[[], datetime] = utcnow,
    secrets: feedback.Secrets | None = None,
) -> Inbound:
    """The POST endpoints' Inbound as the settings describe it; SECRETS default to the environment's."""
    server, heard = settings.server, settings.feedback
    return Inbound(
        engine,
        secrets if secrets is not None else feedback.Secrets.from_environ(),
        public_url=server.public_url,
        clock=clock,
        rules=rules,
        keywords=feedback.Keywords.of(heard.opt_out_keywords, heard.opt_in_keywords),
        sendgrid_max_age=parse_duration(heard.sendgrid_event_max_age),
    )


MAX_BODY_BYTES = 16 * 1024 * 1024
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'


class _TooLarge(Exception):
    pass


async def _body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing more than LIMIT bytes whatever Content-Length claims."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


BUSY_RETRY_AFTER = 5


def error_fields(exc: BaseException) -> dict[str, Any]:
    """What a log may say about EXC: its class, where outreach raised it, the driver's code and first line."""
    fields: dict[str, Any] = {"error": type(exc).__name__}
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if "/outreach/" in frame.filename]
    if frames:
        last = frames[-1]
        module = last.filename.rsplit("/outreach/", 1)[1].removesuffix(".py").replace("/", ".")
        fields["where"] = f"outreach.{module}:{last.name}:{last.lineno}"
    if isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        fields["error"] = f"{type(exc).__name__}({type(orig).__name__})"
        sqlstate = getattr(orig, "sqlstate", None)
        if sqlstate:
            fields["sqlstate"] = sqlstate
        text = str(orig).strip().splitlines()
        if text:
            fields["reason"] = scrub(text[0][:300])
    return fields


async def server_error(request: Request, exc: Exception) -> Response:
    """The one answer to an exception in an endpoint: a structured log event and a short JSON body."""
    busy = is_transient(exc)
    status = 503 if busy else 500
    log.error("http_error", method=request.method, path=request.url.path, status=status, **error_fields(exc))
    if busy:
        return JSONResponse(
            {"error": "the database is busy or unreachable: nothing was written; try again"},
            status_code=503,
            headers={"Retry-After": str(BUSY_RETRY_AFTER)},
        )
    return JSONResponse(
        {"error": "internal error: nothing was written; the daemon's log has an http_error event"},
        status_code=500,
    )


class _App(Starlette):
    """Starlette whose exceptions end at `server_error`.

    Starlette's ServerErrorMiddleware answers with the handler and then re-raises "so the
    server can log it": uvicorn would print the full traceback, exception text and all. It has
    been answered and logged, so it stops here.
    """

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()

        async def answered(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await stack(scope, receive, send)
            except Exception:
                if scope["type"] != "http":
                    raise

        return answered


def make_app(health: Callable[[], Health], metrics: Metrics, inbound: Inbound | None = None) -> Starlette:
    async def healthz(request: Request) -> Response:
        # The checks touch the database: off the event loop, like any blocking call.
        report = await run_in_threadpool(health)
        return JSONResponse(
            {"healthy": report.healthy, **report.detail}, status_code=200 if report.healthy else 503
        )

    async def metrics_text(request: Request) -> Response:
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    routes = [Route("/healthz", healthz), Route("/metrics", metrics_text)]
    if inbound is not None:
        routes += _inbound_routes(inbound, metrics)
    return _App(routes=routes, exception_handlers={Exception: server_error})


def _inbound_routes(inbound: Inbound, metrics: Metrics) -> list[Route]:
    secrets = inbound.secrets
    verifier = (
        feedback.sendgrid_verifier(secrets.sendgrid_public_key) if secrets.sendgrid_public_key else None
    )
    if secrets.sendgrid_public_key and verifier is None:
        log.warning("sendgrid_public_key_unreadable", variable=feedback.SENDGRID_KEY_ENV)

    def refuse(endpoint: str, reason: str, status: int, message: str, **extra: Any) -> JSONResponse:
        metrics.inbound_rejections.labels(endpoint, reason).inc()
        log.info("inbound_refused", endpoint=endpoint, reason=reason, status=status)
        return _error(status, message, **extra)

    def url_of(request: Request) -> str:
        query = request.scope.get("query_string", b"").decode("latin-1")
        if inbound.public_url:
            return feedback.public_url(inbound.public_url, request.url.path, query)
        # Without a configured public URL, only a daemon reached directly can be verified.
        return feedback.public_url(f"{request.url.scheme}://{request.url.netloc}", request.url.path, query)

    async def twilio_form(request: Request, endpoint: str) -> Any:
        """The verified form of a Twilio webhook, or the response refusing it."""
        if not secrets.twilio_auth_token:
            return refuse(
                endpoint,
                "not_configured",
                503,
                f"{feedback.TWILIO_TOKEN_ENV} is not set: Twilio webhooks cannot be verified",
            )
        try:
            body = await _body(request)
        except _TooLarge:
            return refuse(endpoint, "too_large", 413, "the body is too large")
        params = feedback.form_params(body)
        ok = params is not None and feedback.twilio_signature_ok(
            secrets.twilio_auth_token,
            url_of(request),
            params,
            request.headers.get(feedback.TWILIO_SIGNATURE_HEADER),
            request.headers.get(feedback.TWILIO_SIGNATURE_SETTINGS_HEADER),
        )
        if not ok:
            return refuse(endpoint, "signature", 403, "the Twilio signature does not match this request")
        return params

    async def post_events(request: Request) -> Response:
        endpoint = "events"
        if not secrets.events_token:
            return refuse(
                endpoint, "not_configured", 503, f"POST /events is off: set {feedback.EVENTS_TOKEN_ENV}"
            )
        if not events.bearer_ok(secrets.events_token, request.headers.get("authorization")):
            response = refuse(endpoint, "token", 401, "a valid bearer token is required")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        try:
            document = read_json(await _body(request))
        except _TooLarge:
            return refuse(endpoint, "too_large", 413, f"the body is larger than {MAX_BODY_BYTES:,} bytes")
        except ValueError as exc:
            return refuse(endpoint, "invalid", 400, f"the body is not JSON: {exc}")
        batch = events.parse_events(document)
        if isinstance(batch, list):
            return refuse(endpoint, "invalid", 422, "nothing was written", problems=batch)
        problems = await run_in_threadpool(events.load_events, inbound.engine, batch, inbound.clock())
        if problems:
            return refuse(endpoint, "invalid", 422, "nothing was written", problems=problems)
        ids = events.record_ids(batch)
        if batch.table == "customers":

            def reroute() -> int:
                with inbound.engine.begin() as connection:
                    return inbound.consent_changed(connection, ids)

            await run_in_threadpool(reroute)
        metrics.inbound_events.labels("events", batch.table).inc(len(batch.records))
        log.info("events_loaded", table=batch.table, records=len(batch.records))
        if inbound.on_records is not None:
            inbound.on_records(batch.table, ids)
        return JSONResponse({"table": batch.table, "loaded": len(batch.records)})

    async def twilio_status(request: Request) -> Response:
        params = await twilio_form(request, "twilio_status")
        if isinstance(params, Response):
            return params
        said = feedback.twilio_status_feedback(params.get("MessageStatus", ""), params.get("ErrorCode"))
        outbox_id = request.query_params.get("outbox_id")
        message_sid = params.get("MessageSid") or params.get("SmsSid")

        def apply() -> feedback.StatusApplied:
            with inbound.engine.begin() as connection:
                applied = feedback.apply_twilio_status(
                    connection, outbox_id, message_sid, said, inbound.clock()
                )
                inbound.consent_changed(connection, applied.customers)
                return applied

        applied = await run_in_threadpool(apply)
        contact = applied.contact
        metrics.inbound_events.labels(
            "twilio", feedback.event_kind(feedback.TWILIO_STAGES, said.status)
        ).inc()
        log.info(
            "twilio_status",
            outbox_id=contact.id if contact else outbox_id,
            provider_id=message_sid,
            customer_id=contact.customer_id if contact else None,
            status=said.status,
            error_code=said.code,
            suppressed=said.suppress and contact is not None,
            known=contact is not None,
            replay=applied.replay,
        )
        return Response(status_code=204)

    async def twilio_inbound(request: Request) -> Response:
        params = await twilio_form(request, "twilio_inbound")
        if isinstance(params, Response):
            return params
        keyword = inbound.keywords.read(params.get("Body", ""), params.get("OptOutType"))
        metrics.inbound_events.labels("twilio_inbound", keyword or "other").inc()
        if keyword is not None:
            phone = params.get("From", "")
            sid = params.get("MessageSid") or params.get("SmsSid")

            def apply() -> list[str]:
                with inbound.engine.begin() as connection:
                    changed = feedback.apply_keyword(connection, phone, keyword, inbound.clock(), sid)
                    if keyword == "stop":
                        inbound.consent_changed(connection, changed)
                    return changed

            customer_ids = await run_in_threadpool(apply)
            log.info(
                "sms_keyword",
                keyword=keyword,
                message_sid=params.get("MessageSid"),
                customer_ids=customer_ids,
            )
        return Response(EMPTY_TWIML, media_type="text/xml")

    async def sendgrid_events(request: Request) -> Response:
        endpoint = "sendgrid"
        if verifier is None:
            return refuse(
                endpoint,
                "not_configured",
                503,
                f"{feedback.SENDGRID_KEY_ENV} is not set to a readable public key: SendGrid events cannot be verified",
            )
        try:
            raw = await _body(request)
        except _TooLarge:
            return refuse(endpoint, "too_large", 413, "the body is too large")
        signed = feedback.sendgrid_signature_ok(
            verifier,
            raw,
            request.headers.get(feedback.SENDGRID_SIGNATURE_HEADER),
            request.headers.get(feedback.SENDGRID_TIMESTAMP_HEADER),
        )
        if not signed:
            return refuse(endpoint, "signature", 403, "the SendGrid signature does not match this request")
        stamp = request.headers.get(feedback.SENDGRID_TIMESTAMP_HEADER)
        if not feedback.sendgrid_timestamp_fresh(stamp, inbound.clock(), inbound.sendgrid_max_age):
            return refuse(
                endpoint,
                "stale",
                403,
                "the signed request is older than sendgrid.event_max_age: refused as a replay",
            )
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return refuse(endpoint, "invalid", 400, "the body is not JSON")
        received = document if isinstance(document, list) else [document]

        def apply() -> list[feedback.Applied]:
            with inbound.engine.begin() as connection:
                handled = feedback.apply_sendgrid_events(connection, received, inbound.clock())
                inbound.consent_changed(connection, {c for a in handled for c in a.customers})
                return handled

        for applied in await run_in_threadpool(apply):
            metrics.inbound_events.labels(
                "sendgrid", feedback.event_kind(feedback.SENDGRID_STAGES, applied.kind)
            ).inc()
            if applied.outbox_id is not None:
                log.info(
                    "sendgrid_event",
                    kind=applied.kind,
                    outbox_id=applied.outbox_id,
                    customer_id=applied.contact.customer_id if applied.contact else None,
                    known=applied.contact is not None,
                    replay=applied.replay,
                )
        return Response(status_code=204)

    return [
        Route("/events", post_events, methods=["POST"]),
        Route("/webhooks/twilio/status", twilio_status, methods=["POST"]),
        Route("/webhooks/twilio/inbound", twilio_inbound, methods=["POST"]),
        Route("/webhooks/sendgrid/events", sendgrid_events, methods=["POST"]),
    ]


class _ThreadServer(uvicorn.Server):
    # uvicorn installs signal handlers when run in the main thread only; the daemon owns
    # SIGTERM/SIGINT, so make sure it never tries.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn on HOST:PORT in a background thread; `port` is the bound one (PORT may be 0)."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = _ThreadServer(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"could not serve HTTP on {self.host}:{self.port} (is the port in use?)")
            time.sleep(0.02)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("http_listening", host=self.host, port=self.port)

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

"""The studio's HTTP side: one page, its static files and a small JSON API (starlette, uvicorn).

    GET  /                     the page (outreach/studio/page/index.html)
    GET  /static/…             its script and style sheet, served from the package
    GET  /api/catalog          rules, templates, locales, sample customers, test recipients
    GET  /api/customers?q=     customers of the database by id, name or email
    GET  /api/preview?target=&locale=&customer=&at=&record=
    POST /api/send-test        {"target", "customer", "to", "locale", "at", "record"} (JSON)
    GET  /api/test-sends       the latest test sends
    GET  /api/events           server-sent events: `changed` when a rules or templates file changes

Who may use it. Bound to loopback (the default), only this machine can reach it, and a request
must name a loopback host (`Host: 127.0.0.1:8090`), which defeats DNS rebinding. Bound to any
other address it asks for a token: `OUTREACH_STUDIO_TOKEN` from the environment, or one made up
at start and printed in the URL to open, `http://HOST:PORT/?token=…`, as Jupyter does. Opening
that URL once sets an HTTP-only, same-site cookie; scripts may instead send
`Authorization: Bearer TOKEN`. The token is compared in constant time. A POST must be JSON and,
when the browser names its origin, come from the page itself.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from outreach.clock import parse_instant
from outreach.errors import InputError, OutreachError
from outreach.state.test_sends import recent_test_sends
from outreach.studio.sending import send_test
from outreach.studio.workspace import Studio

PAGE = Path(__file__).resolve().parent / "page"
TOKEN_ENV = "OUTREACH_STUDIO_TOKEN"
COOKIE = "outreach_studio"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# The page's own script and style only; e-mail previews (srcdoc frames inherit this policy) may
# show inline styles and pictures, never run a script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https:; frame-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def is_loopback(host: str) -> bool:
    """Whether HOST (a name or an address) is this machine only."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Gate:
    """ASGI middleware: the loopback Host check, the token, and same-origin JSON POSTs."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback: bool) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> Response | None:
        host = _header(scope, b"host") or ""
        if self.loopback and not is_loopback(_host_name(host)):
            return JSONResponse(
                {"error": f"the studio answers on loopback addresses only, not {host!r}"}, 403
            )
        if scope["method"] == "POST":
            origin = _header(scope, b"origin")
            if origin is not None and urlsplit(origin).netloc != host:
                return JSONResponse({"error": "cross-site requests are refused"}, 403)
            content_type = (_header(scope, b"content-type") or "").split(";")[0].strip()
            if content_type != "application/json":
                return JSONResponse({"error": "send JSON (Content-Type: application/json)"}, 415)
        if self.token is None or self.authorised(scope):
            return None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        offered = (query.get("token") or [""])[0]
        if scope["path"] == "/" and offered and hmac.compare_digest(offered, self.token):
            # Trade the token in the URL for a cookie, and drop it from the address bar.
            redirect = RedirectResponse("/", status_code=303)
            redirect.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            return redirect
        return JSONResponse(
            {
                "error": "a token is needed: open the URL `outreach studio` printed, "
                f"or send Authorization: Bearer ${TOKEN_ENV}"
            },
            401,
        )

    def authorised(self, scope: Scope) -> bool:
        assert self.token is not None
        bearer = _header(scope, b"authorization") or ""
        if bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:].strip(), self.token):
            return True
        cookies: SimpleCookie = SimpleCookie()
        cookies.load(_header(scope, b"cookie") or "")
        morsel = cookies.get(COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value, self.token)


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise InputError(str(exc)) from None


async def _answer(work: Callable[[], Any]) -> Response:
    """WORK's result as JSON, run off the event loop; a person's mistake is a 400 with the message."""
    try:
        return JSONResponse(await run_in_threadpool(work))
    except InputError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    except OutreachError as exc:
        return JSONResponse({"error": str(exc)}, 500)


def make_studio_app(
    studio: Studio,
    *,
    token: str | None = None,
    loopback: bool = True,
    closing: threading.Event | None = None,
    poll_seconds: float = 0.5,
) -> Starlette:
    """The studio as an ASGI app. CLOSING ends the event streams (for a quick shutdown)."""
    stop = closing or threading.Event()

    async def page(request: Request) -> Response:
        response = FileResponse(PAGE / "index.html", media_type="text/html; charset=utf-8")
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Cache-Control"] = "no-store"
        return response

    async def catalog(request: Request) -> Response:
        return await _answer(studio.catalog)

    async def customers(request: Request) -> Response:
        query = request.query_params.get("q", "")
        return await _answer(lambda: {"customers": studio.search_customers(query)})

    async def preview(request: Request) -> Response:
        params = request.query_params

        def work() -> dict[str, Any]:
            target = params.get("target")
            if not target:
                raise InputError("choose a rule or a template (target=rule:NAME)")
            return studio.preview(
                target,
                locale=params.get("locale") or None,
                customer_id=params.get("customer") or None,
                at=_instant(params.get("at")),
                record_id=params.get("record") or None,
            )

        return await _answer(work)

    async def send(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "the request is not JSON"}, 400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "send a JSON object"}, 400)

        def work() -> dict[str, Any]:
            for needed in ("target", "to"):
                if not str(body.get(needed) or "").strip():
                    raise InputError(f"{needed} is missing")
            result = send_test(
                studio,
                str(body["target"]),
                customer_id=str(body.get("customer") or "sample"),
                to=str(body["to"]),
                locale=body.get("locale") or None,
                at=_instant(body.get("at")),
                record_id=body.get("record") or None,
            )
            return result.as_json()

        return await _answer(work)

    async def test_sends(request: Request) -> Response:
        def work() -> dict[str, Any]:
            with studio.app.engine.connect() as connection:
                rows = recent_test_sends(connection)
            return {"test_sends": [{**r, "sent_at": r["sent_at"].isoformat()} for r in rows]}

        return await _answer(work)

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            seen = await run_in_threadpool(studio.fingerprint)
            yield f"retry: 1000\nevent: hello\ndata: {seen}\n\n"
            quiet = 0.0
            while not stop.is_set():
                await asyncio.sleep(poll_seconds)
                current = await run_in_threadpool(studio.fingerprint)
                if current != seen:
                    seen = current
                    yield f"event: changed\ndata: {current}\n\n"
                    quiet = 0.0
                else:
                    quiet += poll_seconds
                    if quiet >= 15:
                        yield ": still here\n\n"  # keeps proxies from closing an idle stream
                        quiet = 0.0

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    routes = [
        Route("/", page),
        Route("/api/catalog", catalog),
        Route("/api/customers", customers),
        Route("/api/preview", preview),
        Route("/api/send-test", send, methods=["POST"]),
        Route("/api/test-sends", test_sends),
        Route("/api/events", events),
        Mount("/static", StaticFiles(directory=PAGE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(Gate, token=token, loopback=loopback)
    return app

"""`outreach studio`: a local web page where marketers see, check and test-send every message.

    workspace   Studio: the catalog of rules and templates, customers, previews (no HTTP)
    sending     send_test: a message marked [TEST] to an allow-listed address, recorded apart
    server      make_studio_app: the page, its static files and JSON API (starlette)
    page/       index.html, static/studio.js, static/studio.css — no build step, nothing fetched
                from the internet

`serve` runs it in the foreground with uvicorn, as `outreach studio` does.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Mapping

import uvicorn

from outreach.app import App
from outreach.studio.server import TOKEN_ENV, is_loopback, make_studio_app
from outreach.studio.workspace import Studio

__all__ = ["Studio", "make_studio_app", "serve", "studio_token"]


def studio_token(host: str, environ: Mapping[str, str]) -> str | None:
    """The token the studio asks for: $OUTREACH_STUDIO_TOKEN, else a fresh one off loopback, else none."""
    given = environ.get(TOKEN_ENV, "").strip()
    if given:
        return given
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def serve(
    app: App,
    host: str,
    port: int,
    *,
    environ: Mapping[str, str] | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the studio on HOST:PORT until interrupted (Ctrl-C)."""
    token = studio_token(host, os.environ if environ is None else environ)
    studio = Studio(app)
    studio.loaded()  # read the folders once now: a broken settings file fails here, not in the page
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    echo(f"outreach studio on {url}  (Ctrl-C to stop)")
    if not is_loopback(host):
        echo(f"reachable from other machines: only with the token ({TOKEN_ENV} sets your own)")
    config = uvicorn.Config(
        make_studio_app(studio, token=token, loopback=is_loopback(host)),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        # Open event streams would otherwise hold Ctrl-C until the browser lets go.
        timeout_graceful_shutdown=1,
    )
    # uvicorn shuts down cleanly on Ctrl-C, then raises it again for whoever called it.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run()
    echo("studio stopped")

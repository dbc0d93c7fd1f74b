"""The daemon's HTTP side: `GET /healthz` and `GET /metrics`, served by uvicorn in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach.metrics import CONTENT_TYPE_LATEST, Metrics

log = structlog.get_logger("outreach.server")


@dataclass(frozen=True)
class Health:
    healthy: bool
    detail: dict[str, Any]


def make_app(health: Callable[[], Health], metrics: Metrics) -> Starlette:
    async def healthz(request: Request) -> Response:
        # The checks touch the database: off the event loop, like any blocking call.
        from starlette.concurrency import run_in_threadpool

        report = await run_in_threadpool(health)
        return JSONResponse({"healthy": report.healthy, **report.detail}, status_code=200 if report.healthy else 503)

    async def metrics_text(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics_text)])


class _ThreadServer(uvicorn.Server):
    # uvicorn installs signal handlers when run in the main thread only; the daemon owns
    # SIGTERM/SIGINT, so make sure it never tries.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """uvicorn on HOST:PORT in a background thread; `port` is the bound one (PORT may be 0)."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
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

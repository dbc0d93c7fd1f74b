"""`outreach run`: the long-running daemon — its process, signals and schedule, and its HTTP side.

process   Daemon: rule ticks on their cadence (APScheduler), continuous dispatch, reload, SIGTERM
http      GET /healthz, GET /metrics, POST /events and the providers' webhooks (uvicorn)
metrics   the Prometheus metrics of one daemon
"""

from outreach.daemon.process import Daemon, serve

__all__ = ["Daemon", "serve"]

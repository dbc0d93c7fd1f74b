"""`outreach demo`: the whole flow on the embedded defaults, from a clean slate each time.

The demo uses its own SQLite file (var/demo.db) and outbox (var/outbox.jsonl), recreated on
every run, so it can be run again and again and never touches a configured database.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from outreach.app import App
from outreach.sample import load_sample
from outreach.settings import Settings
from outreach.summary import RunSummary, summary_of
from outreach.tick import run_once

DEMO_DB = "var/demo.db"


def run_demo(settings: Settings, now: datetime) -> tuple[RunSummary, Path]:
    """One tick at NOW over the bundled sample customers; what it did, and the outbox file."""
    database = settings.path(DEMO_DB)
    outbox = settings.path(settings.paths.outbox)
    for stale in (database, Path(f"{database}-wal"), Path(f"{database}-shm"), outbox):
        stale.unlink(missing_ok=True)
    demo_settings = settings.model_copy(
        update={
            "database": settings.database.model_copy(update={"url": f"sqlite:///{database}"}),
            "delivery": settings.delivery.model_copy(update={"mode": "outbox"}),
        }
    )
    app = App(demo_settings)
    try:
        load_sample(app.engine, now)
        return summary_of(app, run_once(app, now)), outbox
    finally:
        app.close()

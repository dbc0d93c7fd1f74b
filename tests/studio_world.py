"""A workspace for studio tests: the shipped rules and templates copied to a folder, one more
template whose SMS prints a time (Babel writes U+202F in it), settings with test recipients, and
the studio served on loopback in a thread."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from outreach.app import App
from outreach.daemon.http import HttpServer
from outreach.settings import load_settings
from outreach.studio import Studio, make_studio_app

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
TEST_EMAIL = "marketing@example.com"
TEST_PHONE = "+442079460999"

# An SMS with a time in it: "9:30 AM" as Babel writes it has a narrow no-break space.
PICKUP_SMS = "{{ company.name }}: your parcel is ready to collect from {{ now|time }} today.\n{{ company.support_phone }}\n"


def write_workspace(root: Path, database_url: str | None = None, **sections: dict[str, Any]) -> Path:
    """Rules, templates and a settings.toml under ROOT; SECTIONS override its settings, e.g.
    `delivery={"mode": "live"}`. Returns the settings file."""
    shutil.copytree(REPO / "rules", root / "rules", ignore=shutil.ignore_patterns("tests"))
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "templates" / "pickup_ready").mkdir()
    (root / "templates" / "pickup_ready" / "sms.en.txt").write_text(PICKUP_SMS, encoding="utf-8")
    (root / "templates" / "pickup_ready" / "sms.ar.txt").write_text(
        "{{ company.name }}: طلبك جاهز للاستلام من {{ now|time }} اليوم.\n{{ company.support_phone|ltr }}\n",
        encoding="utf-8",
    )
    settings: dict[str, dict[str, Any]] = {
        "database": {"url": database_url or "sqlite:///var/outreach.db"},
        "paths": {"rules": "rules", "templates": "templates", "outbox": "var/outbox.jsonl"},
        "company": {
            "name": "Souq Example",
            "support_phone": "+44 20 7946 0000",
            "support_url": "https://example.com/help",
            "support_email": "care@example.com",
        },
        "sendgrid": {"from_email": "care@example.com", "from_name": "Souq Example"},
        "studio": {"test_recipients": [TEST_EMAIL, TEST_PHONE]},
    }
    for name, values in sections.items():
        settings[name] = {**settings.get(name, {}), **values}
    # JSON's strings, numbers, booleans and lists of them are TOML too.
    text = "".join(
        f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
        for name, values in settings.items()
    )
    path = root / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def studio_of(settings_file: Path) -> Studio:
    return Studio(App(load_settings(settings_file)), clock=lambda: NOW)


@dataclass
class RunningStudio:
    """The studio on a loopback port, in a thread."""

    root: Path
    studio: Studio
    server: HttpServer
    closing: threading.Event

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/"

    def stop(self) -> None:
        self.closing.set()  # ends the event streams, so the server can stop at once
        self.server.stop()
        self.studio.app.close()


def serve_studio(root: Path, **sections: dict[str, Any]) -> RunningStudio:
    settings = write_workspace(root, **sections)
    model = studio_of(settings)
    closing = threading.Event()
    server = HttpServer(make_studio_app(model, closing=closing, poll_seconds=0.2), "127.0.0.1", 0)
    server.start()
    return RunningStudio(root, model, server, closing)

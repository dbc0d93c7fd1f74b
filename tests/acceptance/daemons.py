"""Support for the daemon tests: a workspace (settings, one rule, templates, customers) and `outreach run` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from outreach.state.db import make_engine
from outreach.state.ingest import ingest_files
from outreach.state.migrate import upgrade

RULE = """rules:
  - name: welcome
    about: customer
    when: customer.email_opt_in
    channels: [email]
    template: welcome
    every: 1m
    quiet_hours: "off"
"""
TEMPLATE = '---\nsubject: "Hello"\n---\n<p>Hello {{ customer.name }}</p>\n<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n'


class Workspace:
    """A folder with rules, templates and a database that `outreach run` processes share."""

    def __init__(
        self,
        root: Path,
        database_url: str,
        environ: Mapping[str, str] = {},
        rules: str = RULE,
        templates: Mapping[str, str] = {},
    ) -> None:
        self.root = root
        self.database_url = database_url
        (root / "rules").mkdir(parents=True)
        (root / "rules" / "rules.yaml").write_text(rules)
        for template in ("welcome", "notice", *templates):
            for locale in ("en", "ar"):
                folder = root / "templates" / template
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"email.{locale}.html").write_text(templates.get(template, TEMPLATE))
        (root / "settings.toml").write_text("")
        self.environ = {
            **os.environ,
            "OUTREACH_SETTINGS": str(root / "settings.toml"),
            "OUTREACH_DATABASE__URL": database_url,
            "OUTREACH_SERVER__PORT": "0",
            "OUTREACH_DAEMON__DISPATCH_INTERVAL": "0.2",
            "OUTREACH_DAEMON__RELOAD_INTERVAL": "0.5",
            "OUTREACH_DAEMON__GRACE_SECONDS": "10",
            "OUTREACH_DELIVERY__MAX_PER_DAY": "5",
            "OUTREACH_DELIVERY__MAX_PER_WEEK": "5",
            "OUTREACH_LOG_LEVEL": "info",
            "OUTREACH_TWILIO__MESSAGING_SERVICE_SID": "MG" + "0" * 32,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            **environ,
        }
        self.engine = make_engine(database_url)
        upgrade(self.engine)

    def add_customers(self, count: int) -> list[str]:
        path = self.root / "customers.jsonl"
        ids = [f"c-{n:05d}" for n in range(count)]
        with path.open("w") as out:
            for n, cid in enumerate(ids):
                out.write(
                    json.dumps(
                        {
                            "id": cid,
                            "name": f"Customer {n}",
                            "email": f"customer{n}@example.com",
                            "locale": "en",
                            "timezone": "Europe/London",
                            "email_opt_in": True,
                        }
                    )
                    + "\n"
                )
        reports = ingest_files(self.engine, [str(path)], table="customers")
        assert not any(r.rejected for r in reports), reports
        return ids

    def add_records(self, table: str, records: list[dict[str, Any]]) -> None:
        path = self.root / f"{table}.jsonl"
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
        reports = ingest_files(self.engine, [str(path)], table=table)
        assert not any(r.rejected for r in reports), reports

    def start(self, name: str = "daemon") -> Daemon:
        return Daemon(self, name)

    def contacts(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [dict(r) for r in connection.execute(sa.text("SELECT * FROM contacts")).mappings()]

    def close(self) -> None:
        self.engine.dispose()


class Daemon:
    """One `outreach run` subprocess; its JSON log lines are kept in a file."""

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.log_path = workspace.root / f"{name}.log"
        self.stdout_path = workspace.root / f"{name}.out"
        self._log = self.log_path.open("wb")
        self._stdout = self.stdout_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "outreach", "run"],
            cwd=workspace.root,
            env=workspace.environ,
            stdout=self._stdout,
            stderr=self._log,
        )

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                raise AssertionError(
                    f"outreach run exited ({self.process.returncode}):\n{self.output()[-3000:]}"
                )
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.output()[-3000:]}")

    def event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        return self.wait_for(
            lambda: next((e for e in self.events() if e.get("event") == name), None), timeout, name
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.event('http_listening')['port']}"

    def get(self, path: str) -> httpx.Response:
        with httpx.Client(trust_env=False, timeout=10) as client:
            return client.get(self.url + path)

    def terminate(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self._log.close()
            self._stdout.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._log.close()
        self._stdout.close()


def sent_outbox_ids(requests: Any) -> list[str]:
    """The outbox id of every message the fake providers accepted (SendGrid custom_args)."""
    ids = []
    for request in requests:
        if request.outcome != "accepted" or request.provider != "sendgrid":
            continue
        for personalization in request.json.get("personalizations", []):
            ids.append(personalization["custom_args"]["outbox_id"])
    return ids

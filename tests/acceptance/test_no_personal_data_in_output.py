"""`outreach run` with realistic data never writes a phone number, an email address or a credential
to its output: not its logs (info or error), not stdout, not the ledger's reasons.

The daemon sends email and SMS through the real SDKs to the fake providers; Twilio refuses a
number (21211, quoting it); records arrive over
`POST /events`, one request with a wrong token; a request fails with a 500 inside the database;
the database URL carries a password and the providers' credentials are in the environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from outreach.testing.fakeproviders import FakeProviders
from tests.acceptance.daemons import Daemon, Workspace

pytestmark = pytest.mark.slow

ACCOUNT_SID = "AC" + "5eca" * 8
AUTH_TOKEN = "twilio-token-7d1f0c2e9b"
API_KEY = "SG.sendgrid-key-3b6a94.e1f0aa7c55d2"
EVENTS_TOKEN = "events-token-a94c7e31"
DB_PASSWORD = "db-pass-5f3e8d1c"

CUSTOMERS = [
    {"id": "c-1", "name": "Ada Lovelace", "email": "ada.lovelace@example.com", "phone": "+447911123456"},
    {
        "id": "c-2",
        "name": "مريم حسن",
        "email": "mariam.hassan@example.org",
        "phone": "+201001234567",
        "locale": "ar",
    },
    # Twilio refuses this number with 21211, quoting it.
    {"id": "c-3", "name": "Bad Number", "email": "bad.number@example.net", "phone": "+15005550001"},
    {"id": "c-4", "name": "Ren Li", "email": "ren.li@example.com", "phone": "+14155550123"},
]
LATE = [  # arrive over POST /events while the daemon runs
    {"id": "c-5", "name": "Grace Hopper", "email": "grace.hopper@example.com", "phone": "+12025550147"},
]
SMS_RULE = """rules:
  - name: welcome-sms
    about: customer
    when: customer.sms_opt_in
    channels: [sms]
    template: welcome_sms
    every: 2s
    quiet_hours: "off"
"""


def secrets() -> list[str]:
    people = CUSTOMERS + LATE
    found = [p["email"] for p in people] + [p["phone"] for p in people]
    found += [p["phone"].removeprefix("+") for p in people]  # E.164 without its plus
    found += [p["email"].split("@")[0] for p in people if "." in p["email"].split("@")[0]]
    return [*found, ACCOUNT_SID, AUTH_TOKEN, API_KEY, EVENTS_TOKEN, DB_PASSWORD]


def with_password(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url  # a SQLite file has no password to leak
    return parsed.set(password=DB_PASSWORD).render_as_string(hide_password=False)


def test_the_daemon_writes_no_phone_email_or_credential_anywhere(tmp_path: Path, database_url: str) -> None:
    with FakeProviders(
        twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN, sendgrid_api_key=API_KEY
    ) as fake:
        workspace = Workspace(
            tmp_path,
            with_password(database_url),
            {**fake.environ(), "OUTREACH_EVENTS_TOKEN": EVENTS_TOKEN, "OUTREACH_LOG_LEVEL": "debug"},
        )
        welcome = tmp_path / "rules" / "rules.yaml"
        welcome.write_text(welcome.read_text().replace("every: 1m", "every: 2s"))
        (tmp_path / "rules" / "sms.yaml").write_text(SMS_RULE)
        for locale in ("en", "ar"):
            folder = tmp_path / "templates" / "welcome_sms"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"sms.{locale}.txt").write_text("Hello {{ customer.name }}\n")
        load(workspace, CUSTOMERS)
        daemon = workspace.start()
        try:
            run_through(workspace, daemon)
        finally:
            code = daemon.terminate()
        assert code == 0, daemon.output()
        contacts = workspace.contacts()
        with workspace.engine.connect() as connection:
            suppressions = [
                dict(r) for r in connection.execute(sa.text("SELECT * FROM suppressions")).mappings()
            ]
        workspace.close()

    states = {(c["customer_id"], c["channel"]): c["state"] for c in contacts}
    assert states.pop(("c-3", "sms")) == "failed"
    assert set(states.values()) == {"sent"}
    refused = next(c for c in contacts if (c["customer_id"], c["channel"]) == ("c-3", "sms"))
    assert "21211" in refused["reason"] and "<phone>" in refused["reason"]
    outputs = {
        "stderr (logs)": daemon.output(),
        "stdout": daemon.stdout_path.read_text(errors="replace"),
        "ledger": json.dumps([[c["reason"], c["last_error"]] for c in contacts], ensure_ascii=False),
        "suppressions": json.dumps([s["reason"] for s in suppressions], ensure_ascii=False),
    }
    events = {e.get("event") for e in daemon.events()}
    assert {"contact", "http_error", "events_loaded", "inbound_refused"} <= events
    leaks = [(where, secret) for where, text in outputs.items() for secret in secrets() if secret in text]
    assert leaks == [], leaks


def load(workspace: Workspace, people: list[dict[str, str]]) -> None:
    path = workspace.root / "customers.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {"timezone": "Europe/London", "email_opt_in": True, "sms_opt_in": True, **p},
                ensure_ascii=False,
            )
            + "\n"
            for p in people
        ),
        encoding="utf-8",
    )
    from outreach.state.ingest import ingest_files

    [report] = ingest_files(workspace.engine, [str(path)])
    assert not report.rejected, report.problems


def run_through(workspace: Workspace, daemon: Daemon) -> None:
    def final() -> bool:
        done = [c for c in workspace.contacts() if c["state"] in ("sent", "failed")]
        return len(done) == 2 * len(CUSTOMERS) + 2 * len(LATE)

    daemon.event("started")
    url = daemon.url
    records = [{"timezone": "Europe/London", "email_opt_in": True, "sms_opt_in": True, **p} for p in LATE]
    with httpx.Client(trust_env=False, timeout=10) as client:
        wrong = client.post(
            url + "/events",
            json={"table": "customers", "records": records},
            headers={"Authorization": "Bearer not-" + EVENTS_TOKEN},
        )
        assert wrong.status_code == 401
        loaded = client.post(
            url + "/events",
            json={"table": "customers", "records": records},
            headers={"Authorization": f"Bearer {EVENTS_TOKEN}"},
        )
        assert loaded.status_code == 200, loaded.text
        daemon.wait_for(final, timeout=60, what="every contact sent or failed")

        # A request that fails inside the database: its parameters hold an email and a phone.
        with workspace.engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE survey_responses"))
        comment = "call me on +447911123456 or write to ada.lovelace@example.com"
        broken = client.post(
            url + "/events",
            json={
                "table": "survey_responses",
                "id": "s-1",
                "customer_id": "c-1",
                "kind": "nps",
                "score": 3,
                "comment": comment,
            },
            headers={"Authorization": f"Bearer {EVENTS_TOKEN}"},
        )
        assert broken.status_code == 500
        daemon.event("http_error")

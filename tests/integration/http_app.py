"""Shared set-up of the HTTP tests: the daemon's app in-process, over a real database."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from outreach.daemon.http import Health, Inbound, make_app
from outreach.daemon.metrics import Metrics
from outreach.feedback import Secrets
from outreach.rules.loader import RuleSet
from outreach.state import ledger, records
from outreach.state.ingest import upsert_rows, validate_record

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PUBLIC_URL = "https://outreach.example.com"
EVENTS_TOKEN = "events-secret"
TWILIO_TOKEN = "twilio-auth-token"


class SendGridKey:
    """A P-256 key pair standing in for the one SendGrid signs events with."""

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP256R1())
        der = self._private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_base64 = base64.b64encode(der).decode()

    def sign(self, timestamp: str, body: bytes) -> str:
        signature = self._private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()


def make_client(
    engine: Engine, secrets: Secrets, metrics: Metrics | None = None, rules: RuleSet | None = None
) -> TestClient:
    app = make_app(
        lambda: Health(True, {}),
        metrics or Metrics(),
        Inbound(engine, secrets, public_url=PUBLIC_URL, clock=lambda: NOW, rules=lambda: rules),
    )
    return TestClient(app, base_url="http://127.0.0.1:8080")


def twilio_signature(path_and_query: str, params: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(PUBLIC_URL + path_and_query, params))


def add_customer(engine: Engine, **fields: Any) -> None:
    record = {"name": "Ada", "email_opt_in": True, "sms_opt_in": True, **fields}
    clean = validate_record("customers", record)
    assert isinstance(clean, dict), clean
    with engine.begin() as connection:
        upsert_rows(connection, "customers", [clean])


def add_contact(
    engine: Engine,
    contact_id: str,
    customer_id: str,
    channel: str,
    provider_id: str | None = None,
    *,
    state: str = "sent",
    send_at: datetime | None = None,
) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(ledger.contacts).values(
                id=contact_id,
                dedupe_key=f"rule:{contact_id}",
                rule="late-delivery",
                about="order",
                entity_id=f"o-{contact_id}",
                customer_id=customer_id,
                channel=channel,
                state=state,
                decided_at=NOW,
                updated_at=NOW,
                send_at=send_at,
                sent_at=NOW if state == "sent" else None,
                attempts=1,
                provider="twilio" if channel == "sms" else "sendgrid",
                provider_id=provider_id,
                steps=[],
            )
        )


def customer(engine: Engine, customer_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        return dict(records.rows_by_id(connection, "customer", [customer_id])[customer_id])


def suppressions(engine: Engine) -> dict[tuple[str, str], str | None]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                ledger.suppressions.c.customer_id, ledger.suppressions.c.channel, ledger.suppressions.c.code
            )
        )
        return {(c, ch): code for c, ch, code in rows}


def contact(engine: Engine, contact_id: str) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(sa.select(ledger.contacts).where(ledger.contacts.c.id == contact_id))
        return dict(row.mappings().one())


def provider_status(engine: Engine, contact_id: str) -> str | None:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(ledger.contacts.c.provider_status).where(ledger.contacts.c.id == contact_id)
        ).scalar_one()

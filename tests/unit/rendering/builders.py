"""Values for rendering tests: customers and records, a templates folder written from a dict."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from outreach.rendering import RuleInfo
from outreach.settings import CompanySettings, DeliverySettings, PathSettings, Settings
from outreach.state.models import Checkout, Customer, Order, SurveyResponse

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
COMPANY = CompanySettings(
    name="Souq Example",
    support_phone="+44 20 7946 0000",
    support_url="https://example.com/help",
    support_email="care@example.com",
    unsubscribe_url="https://example.com/unsubscribe/{customer_id}",
)
LATE = RuleInfo("late-delivery", "order", ("sms", "email"), "late_delivery", "Tell them first.")
STALLED = RuleInfo("stalled-checkout", "checkout", ("email", "sms"), "stalled_checkout")
DETRACTOR = RuleInfo("detractor-follow-up", "survey", ("email",), "detractor_apology")

EMAIL_FOOTER = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ company.support_phone }}</p>\n'


def write_templates(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def settings_for(base: Path, templates: str = "templates", **delivery: Any) -> Settings:
    return Settings(
        base_dir=base,
        paths=PathSettings(templates=templates),
        company=COMPANY,
        delivery=DeliverySettings(**delivery),
    )


def customer(**fields: Any) -> Customer:
    values: dict[str, Any] = {
        "id": "c-1",
        "name": "Sam Carter",
        "email": "sam@example.com",
        "phone": "+447700900123",
        "locale": "en",
        "timezone": "Europe/London",
        "attributes": {},
    }
    values.update(fields)
    return Customer(**values)


def order(**fields: Any) -> Order:
    values: dict[str, Any] = {
        "id": "A-1042",
        "customer_id": "c-1",
        "status": "shipped",
        "placed_at": datetime(2026, 11, 17, 12, 0, tzinfo=UTC),
        "promised_at": datetime(2026, 11, 21, 23, 30, tzinfo=UTC),
        "total": 1249.5,
        "currency": "EGP",
        "carrier": "Aramex",
        "tracking_url": "https://track.example.com/A-1042",
        "attributes": {},
    }
    values.update(fields)
    return Order(**values)


def checkout(**fields: Any) -> Checkout:
    values: dict[str, Any] = {
        "id": "k-1",
        "customer_id": "c-1",
        "started_at": datetime(2026, 11, 24, 3, 0, tzinfo=UTC),
        "cart_value": 89.5,
        "currency": "GBP",
        "items": [{"sku": "TEA-001", "name": "Earl Grey tea", "qty": 2, "price": 14.75}],
        "recovery_url": "https://shop.example.com/cart/k-1",
        "attributes": {},
    }
    values.update(fields)
    return Checkout(**values)


def survey(**fields: Any) -> SurveyResponse:
    values: dict[str, Any] = {
        "id": "s-1",
        "customer_id": "c-1",
        "kind": "nps",
        "score": 3,
        "comment": "Too slow.",
        "responded_at": datetime(2026, 11, 23, 9, 0, tzinfo=UTC),
        "attributes": {},
    }
    values.update(fields)
    return SurveyResponse(**values)


COMMON_RULES = [LATE, STALLED, DETRACTOR]

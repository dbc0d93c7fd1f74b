"""A plausible customer and record of each kind, for lint to render every template with.

Values are on the long side of real ones (names, URLs), so a template that fits its SMS
segments here fits them for most customers; JSON attributes are empty, so a template that
counts on one without `|default` is caught.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from outreach import locales
from outreach.state.models import Checkout, Customer, Order, SurveyResponse

SAMPLE_NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)

_PEOPLE = {
    "en": ("Alexandra Fitzgerald", "Europe/London", "GBP"),
    "ar": ("نور الهدى عبد الرحمن", "Africa/Cairo", "EGP"),
}


def _person(locale: str) -> tuple[str, str, str]:
    return _PEOPLE.get(locales.language(locale), _PEOPLE["en"])


def sample_customer(locale: str) -> Customer:
    name, zone, _currency = _person(locale)
    return Customer(
        id="C-100482",
        name=name,
        email="alexandra.fitzgerald@example.com",
        phone="+201001234567",
        locale=locale,
        timezone=zone,
        preferred_channel="sms",
        email_opt_in=True,
        sms_opt_in=True,
        attributes={},
    )


def sample_entity(about: str, locale: str, now: datetime = SAMPLE_NOW) -> Any:
    """A record for a rule about ABOUT, in the currency of LOCALE's sample customer; None for customer."""
    _name, _zone, currency = _person(locale)
    if about == "order":
        return Order(
            id="A-104217",
            customer_id="C-100482",
            status="shipped",
            placed_at=now - timedelta(days=6),
            promised_at=now - timedelta(days=2),
            delivered_at=None,
            total=1249.5,
            currency=currency,
            carrier="Aramex",
            tracking_url="https://track.example.com/parcels/A-104217?utm_source=outreach",
            attributes={},
        )
    if about == "checkout":
        return Checkout(
            id="K-55120",
            customer_id="C-100482",
            started_at=now - timedelta(hours=5),
            completed_at=None,
            cart_value=189.0,
            currency=currency,
            items=[
                {"sku": "SHT-204", "name": "Linen shirt, sand", "qty": 2, "price": 39.5},
                {"sku": "BAG-017", "name": "Canvas tote bag", "qty": 1, "price": 110.0},
            ],
            recovery_url="https://shop.example.com/cart/recover/K-55120?token=8f3a2c91",
            attributes={},
        )
    if about == "survey":
        return SurveyResponse(
            id="S-9031",
            customer_id="C-100482",
            kind="nps",
            score=3,
            comment="Delivery took far too long and nobody told me why.",
            responded_at=now - timedelta(days=1),
            attributes={},
        )
    return None

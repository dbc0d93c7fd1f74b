"""Write a deterministic customer-state data set as JSONL files for the benchmark.

    .venv/bin/python bench/generate.py --customers 1000000 --out var/bench/1000000

Per customer, on average: about 2 orders, 0.5 checkouts and 0.3 survey responses. Times are
spread before `--now` so that a realistic few percent of records match each canonical rule:
undelivered orders past their promise, checkouts stalled between 2 hours and 3 days, recent
NPS detractors. The same arguments always write the same bytes.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DEFAULT_NOW = "2026-01-15T12:00:00Z"
DEFAULT_SEED = 20260115
MANIFEST = "manifest.json"

FIRST_EN = ["Oliver", "Amelia", "James", "Sophia", "Daniel", "Grace", "Thomas", "Emily", "Noah", "Ella"]
LAST_EN = ["Bennett", "Clarke", "Miller", "Turner", "Okafor", "Hughes", "Patel", "Walker", "Reid", "Shaw"]
FIRST_AR = ["محمد", "فاطمة", "أحمد", "مريم", "خالد", "نورة", "عمر", "ليلى", "يوسف", "سارة"]
LAST_AR = [
    "العلي",
    "الزهراء",
    "حسن",
    "عبد الله",
    "المنصوري",
    "الهاشمي",
    "السيد",
    "القحطاني",
    "الشمري",
    "النجار",
]
ASCII_AR = ["mohammed", "fatima", "ahmed", "maryam", "khalid", "noura", "omar", "layla", "youssef", "sara"]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com", "shop.example.co.uk"]

# Phone numbers are drawn from each country's mobile numbering plan, so that nearly every
# customer has a number of their own as in real data (the ranges reserved for fiction hold a
# few hundred numbers each and would let a cache flatter the ingest figures). The data is only
# ever loaded into a local benchmark database.
US_AREA_CODES = [201, 202, 212, 213, 305, 312, 415, 503, 617, 646, 702, 713, 718, 917]


def _phone_uk(rng: random.Random) -> tuple[str, str]:
    return "44", f"7{rng.choice('458')}{rng.randrange(100_000_000):08d}"


def _phone_us(rng: random.Random) -> tuple[str, str]:
    return "1", f"{rng.choice(US_AREA_CODES)}{rng.randrange(200, 1000)}{rng.randrange(10_000):04d}"


def _phone_ae(rng: random.Random) -> tuple[str, str]:
    return "971", f"50{rng.randrange(10_000_000):07d}"


def _phone_sa(rng: random.Random) -> tuple[str, str]:
    return "966", f"50{rng.randrange(10_000_000):07d}"


def _phone_eg(rng: random.Random) -> tuple[str, str]:
    return "20", f"10{rng.randrange(100_000_000):08d}"


MARKETS = [
    # weight, time zone, locale, currency, phone, arabic name
    (30, "Europe/London", "en", "GBP", _phone_uk, False),
    (20, "America/New_York", "en", "USD", _phone_us, False),
    (20, "Asia/Dubai", "ar", "AED", _phone_ae, True),
    (15, "Asia/Riyadh", "ar", "SAR", _phone_sa, True),
    (15, "Africa/Cairo", "ar-EG", "EGP", _phone_eg, True),
]
MARKET_WEIGHTS = [m[0] for m in MARKETS]
CARRIERS = ["Royal Mail", "DHL", "Aramex", "UPS", "FedEx"]


def iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def phone_text(country: str, national: str, spaced: bool) -> str:
    """E.164, or as people type it (`+44 7412 345678`) to exercise normalisation."""
    if spaced:
        return f"+{country} {national[:4]} {national[4:]}"
    return f"+{country}{national}"


def generate(customers: int, now: datetime, seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, record) for every record, customers interleaved with what they own."""
    rng = random.Random(seed)
    day = 86400.0
    for index in range(customers):
        cid = f"c{index:07d}"
        _, zone, locale, currency, phone_of, arabic = rng.choices(MARKETS, MARKET_WEIGHTS)[0]
        first_at = rng.randrange(10)
        if arabic and rng.random() < 0.8:
            name = f"{FIRST_AR[first_at]} {rng.choice(LAST_AR)}"
            handle = ASCII_AR[first_at]
        else:
            first = FIRST_EN[first_at]
            name = f"{first} {rng.choice(LAST_EN)}"
            handle = first.lower()
        customer: dict[str, Any] = {
            "id": cid,
            "name": name,
            "email": f"{handle}.{index}@{rng.choice(DOMAINS)}",
            "locale": locale,
            "timezone": zone,
            "email_opt_in": rng.random() < 0.8,
            "sms_opt_in": rng.random() < 0.5,
            "preferred_channel": rng.choice(["email", "sms", None]),
        }
        if rng.random() < 0.75:
            customer["phone"] = phone_text(*phone_of(rng), spaced=rng.random() < 0.1)
        if rng.random() < 0.3:
            customer["attributes"] = {"tier": rng.choice(["gold", "silver", "bronze"])}
        yield "customers", customer

        for number in range(rng.choices((0, 1, 2, 3, 4), (10, 25, 30, 20, 15))[0]):
            placed = now - timedelta(seconds=rng.uniform(0, 120 * day))
            promised = placed + timedelta(seconds=rng.uniform(2 * day, 6 * day))
            order: dict[str, Any] = {
                "id": f"o{index:07d}-{number}",
                "customer_id": cid,
                "placed_at": iso(placed),
                "promised_at": iso(promised),
                "total": round(rng.uniform(5, 400), 2),
                "currency": currency,
                "carrier": rng.choice(CARRIERS),
                "tracking_url": f"https://track.example.com/{index}-{number}",
            }
            roll = rng.random()
            if promised > now:
                order["status"] = "shipped" if roll < 0.6 else "placed"
            elif roll < 0.93:
                delivered = placed + timedelta(
                    seconds=rng.uniform(day, (promised - placed).total_seconds() + 2 * day)
                )
                order["status"] = "delivered"
                order["delivered_at"] = iso(min(delivered, now))
            elif roll < 0.96:
                order["status"] = "cancelled"
            else:
                order["status"] = "shipped"
            yield "orders", order

        roll = rng.random()
        for number in range(2 if roll < 0.05 else 1 if roll < 0.45 else 0):
            started = now - timedelta(seconds=rng.uniform(0, 30 * day))
            cart = 0.0 if rng.random() < 0.05 else round(rng.uniform(10, 600), 2)
            checkout: dict[str, Any] = {
                "id": f"k{index:07d}-{number}",
                "customer_id": cid,
                "started_at": iso(started),
                "cart_value": cart,
                "currency": currency,
                "items": [{"sku": f"SKU-{rng.randrange(5000)}", "qty": rng.randint(1, 3)}],
                "recovery_url": f"https://shop.example.com/cart/{index}-{number}",
            }
            if rng.random() < 0.7:
                checkout["completed_at"] = iso(min(started + timedelta(minutes=rng.uniform(1, 60)), now))
            yield "checkouts", checkout

        if rng.random() < 0.3:
            kind = rng.choices(("nps", "csat", "ces"), (70, 20, 10))[0]
            survey: dict[str, Any] = {
                "id": f"s{index:07d}",
                "customer_id": cid,
                "kind": kind,
                "score": rng.randint(0, 10) if kind == "nps" else rng.randint(1, 5),
                "responded_at": iso(now - timedelta(seconds=rng.uniform(0, 60 * day))),
            }
            if rng.random() < 0.3:
                survey["comment"] = rng.choice(["Late again.", "Great service", "التوصيل تأخر", "شكراً"])
            yield "survey_responses", survey


TABLES = ("customers", "orders", "checkouts", "survey_responses")


def write(customers: int, out: Path, now: datetime, seed: int) -> dict[str, Any]:
    """Write the four JSONL files and a manifest into OUT; return the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(TABLES, 0)
    files = {table: (out / f"{table}.jsonl").open("w", encoding="utf-8") for table in TABLES}
    try:
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        for table, record in generate(customers, now, seed):
            files[table].write(dumps(record) + "\n")
            counts[table] += 1
    finally:
        for handle in files.values():
            handle.close()
    manifest = {"customers": customers, "seed": seed, "now": iso(now), "counts": counts}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--now", default=DEFAULT_NOW, help="the instant the data is relative to (ISO 8601)")
    args = parser.parse_args()
    now = datetime.fromisoformat(args.now).astimezone(UTC)
    manifest = write(args.customers, args.out, now, args.seed)
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()

"""`backtest` against what really happened: a period lived tick by tick (records arriving and
changing, `run --once --now T` at each tick), then replayed from the records' kept versions —
per day and rule, the replay decides, sends, holds back and expires what the ticks did."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from outreach import Outreach
from outreach.backtest import tally_ledger, timeline
from outreach.settings import Settings
from outreach.state import history, ledger
from outreach.state.models import RecordVersion, table_of

REPO = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday
EVERY = timedelta(hours=2)
TICKS = 5 * 12  # five days
RULES = ("late-delivery", "stalled-checkout", "detractor-follow-up")
ZONES = ("Europe/Berlin", "Asia/Riyadh", "America/New_York", "Asia/Kolkata", "Pacific/Auckland", "UTC")


def shipped_settings(root: Path, database_url: str) -> Settings:
    """The shipped rules and templates, the default caps and quiet hours, an outbox."""
    return Settings.model_validate(
        {
            "database": {"url": database_url},
            "paths": {
                "rules": str(REPO / "rules"),
                "templates": str(REPO / "templates"),
                "outbox": str(root / "var" / "outbox.jsonl"),
            },
            "delivery": {"concurrency": 1},
            "base_dir": root,
        }
    )


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def lived_period(seed: int, customers: int) -> list[tuple[datetime, str, list[dict[str, Any]]]]:
    """What arrives at each tick: (instant, table, records). Seeded: the same every run."""
    draw = random.Random(seed)
    people = [
        {
            "id": f"c-{i}",
            "name": f"Customer {i}",
            "email": f"c{i}@example.com",
            "phone": f"+4915123{i:06d}",
            "locale": draw.choice(["en", "ar"]),
            "timezone": draw.choice(ZONES),
            "preferred_channel": draw.choice(["email", "sms"]),
            "email_opt_in": draw.random() < 0.85,
            "sms_opt_in": draw.random() < 0.7,
        }
        for i in range(customers)
    ]
    arrivals: list[tuple[datetime, str, list[dict[str, Any]]]] = [(START, "customers", people)]
    later: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for tick in range(TICKS):
        at = START + tick * EVERY
        for _ in range(draw.randint(0, 3)):
            who = draw.choice(people)["id"]
            kind = draw.random()
            if kind < 0.5:
                oid = f"o-{tick}-{draw.randint(0, 10**6)}"
                order = {
                    "id": oid,
                    "customer_id": who,
                    "status": "shipped",
                    "placed_at": _iso(at),
                    "promised_at": _iso(at - timedelta(hours=draw.randint(12, 40))),
                    "total": draw.randint(10, 300),
                    "currency": "EUR",
                }
                arrivals.append((at, "orders", [order]))
                if draw.random() < 0.6:
                    done = tick + draw.randint(1, 20)
                    later.setdefault(done, []).append(
                        ("orders", {"id": oid, "customer_id": who, "status": "delivered"})
                    )
            elif kind < 0.8:
                chid = f"ch-{tick}-{draw.randint(0, 10**6)}"
                checkout = {
                    "id": chid,
                    "customer_id": who,
                    "started_at": _iso(at),
                    "cart_value": draw.randint(5, 200),
                    "currency": "EUR",
                    "recovery_url": f"https://shop.example/cart/{chid}",
                }
                arrivals.append((at, "checkouts", [checkout]))
                if draw.random() < 0.5:
                    done = tick + draw.randint(1, 18)
                    later.setdefault(done, []).append(("checkouts", {"id": chid, "customer_id": who}))
            else:
                response = {
                    "id": f"s-{tick}-{draw.randint(0, 10**6)}",
                    "customer_id": who,
                    "kind": "nps",
                    "score": draw.randint(0, 10),
                    "responded_at": _iso(at),
                }
                arrivals.append((at, "survey_responses", [response]))
        if draw.random() < 0.15:  # a customer withdraws SMS consent, or moves
            who = dict(draw.choice(people))
            change = (
                {"id": who["id"], "sms_opt_in": False}
                if draw.random() < 0.5
                else {
                    "id": who["id"],
                    "timezone": draw.choice(ZONES),
                }
            )
            arrivals.append((at, "customers", [change]))
        for table, change in later.pop(tick, []):
            stamp = {"orders": "delivered_at", "checkouts": "completed_at"}[table]
            arrivals.append((at, table, [{**change, stamp: _iso(at)}]))
    return arrivals


def live(api: Outreach, arrivals: list[tuple[datetime, str, list[dict[str, Any]]]]) -> None:
    """Each tick as the daemon's cron would run it: what arrived is loaded, then one tick."""
    by_tick: dict[datetime, list[tuple[str, list[dict[str, Any]]]]] = {}
    for at, table, records in arrivals:
        by_tick.setdefault(at, []).append((table, records))
    for tick in range(TICKS):
        at = START + tick * EVERY
        for table, records in by_tick.get(at, []):
            api.ingest_records(table, records, now=at)
        api.tick(at)


@pytest.fixture
def lived(tmp_path: Path, database_url: str, engine: Engine) -> Iterator[Outreach]:
    with Outreach.open(shipped_settings(tmp_path, database_url)) as api:
        live(api, lived_period(seed=7, customers=24))
        yield api


def test_a_replayed_period_decides_sends_holds_and_expires_per_day_what_its_ticks_did(
    lived: Outreach,
) -> None:
    end = START + TICKS * EVERY
    with lived._app.engine.connect() as connection:
        real = tally_ledger(connection, START, end, RULES)
        contacts_before = connection.execute(sa.select(sa.func.count()).select_from(ledger.contacts)).scalar()
    sent = sum(sum(d.sent.values()) for d in real.days)
    held = sum(sum(d.held.values()) for d in real.days)
    assert sent >= 20 and held >= 3, "the period should send and hold back enough to compare"
    replayed = lived.backtest(START, end, every=EVERY, today=end)
    assert replayed.ticks == TICKS
    assert replayed.versions_used > 0  # deliveries, completions and consent changes were kept
    assert [d.as_json() for d in replayed.tally.days] == [d.as_json() for d in real.days]
    assert replayed.tally.per_week == real.per_week
    with lived._app.engine.connect() as connection:  # the real ledger was not touched
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(ledger.contacts)).scalar()
            == contacts_before
        )


def test_a_backtest_without_the_kept_versions_sees_todays_state_and_differs(lived: Outreach) -> None:
    """The versions are what make the replay exact: dropped, a delivered order reads delivered
    (reconstructed only from its own delivered_at) and a consent change reads as always so."""
    end = START + TICKS * EVERY
    with lived._app.engine.begin() as connection:
        real = tally_ledger(connection, START, end, RULES)
        customers_changed = connection.execute(
            sa.select(sa.func.count())
            .select_from(table_of(RecordVersion))
            .where(table_of(RecordVersion).c.table_name == "customers")
        ).scalar()
        connection.execute(sa.delete(table_of(RecordVersion)))
    replayed = lived.backtest(START, end, every=EVERY, today=end)
    assert customers_changed and replayed.versions_used == 0
    assert [d.as_json() for d in replayed.tally.days] != [d.as_json() for d in real.days]


def test_an_order_delivered_later_is_undelivered_before_and_a_kept_version_holds_until_it_was_replaced() -> (
    None
):
    placed, delivered, loaded = (datetime(2026, 3, 1, h, tzinfo=UTC) for h in (8, 15, 20))
    current = {"id": "o", "status": "delivered", "placed_at": placed, "delivered_at": delivered}
    assert timeline("orders", [], current) == [
        (placed, {**current, "status": "shipped", "delivered_at": None}),
        (delivered, current),
    ]
    # Kept: the order as it was until an ingest at LOADED brought the delivery.
    earlier = {**current, "status": "shipped", "delivered_at": None}
    assert timeline("orders", [(loaded, earlier)], current) == [(placed, earlier), (loaded, current)]
    # A customer has no instant of its own: the earliest version holds since before anything is known.
    person = {"id": "c", "sms_opt_in": True}
    assert timeline("customers", [(loaded, person)], {**person, "sms_opt_in": False}) == [
        (None, person),
        (loaded, {**person, "sms_opt_in": False}),
    ]


def test_a_record_loaded_again_unchanged_keeps_no_version_and_a_changed_one_keeps_the_old(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    with Outreach.open(shipped_settings(tmp_path, database_url)) as api:
        person = {"id": "c-1", "email": "a@example.com", "email_opt_in": True}
        api.ingest_records("customers", [person], now=START)
        api.ingest_records("customers", [person], now=START + EVERY)
        api.ingest_records("customers", [{**person, "email_opt_in": False}], now=START + 2 * EVERY)
        with api._app.engine.connect() as connection:
            kept = history.versions(connection, "customers")
    assert list(kept) == ["c-1"]
    [(replaced_at, old)] = kept["c-1"]
    assert replaced_at == START + 2 * EVERY and old["email_opt_in"] is True


def test_the_cli_replays_a_period_as_json_and_as_a_page(tmp_path: Path, sqlite_url: str) -> None:
    with Outreach.open(shipped_settings(tmp_path, sqlite_url)) as api:
        live(api, lived_period(seed=3, customers=8))
    settings = tmp_path / "settings.toml"
    settings.write_text(
        f'[database]\nurl = "{sqlite_url}"\n[paths]\nrules = "{REPO / "rules"}"\n'
        f'templates = "{REPO / "templates"}"\noutbox = "{tmp_path / "var" / "outbox.jsonl"}"\n',
        encoding="utf-8",
    )
    end = START + TICKS * EVERY
    page = tmp_path / "backtest.html"
    command = [sys.executable, "-m", "outreach", "--settings", str(settings), "backtest"]
    period = [
        "--from",
        _iso(START),
        "--to",
        _iso(end),
        "--every",
        "2h",
        "--rules",
        "late-delivery,stalled-checkout",
    ]
    result = subprocess.run(
        [*command, *period, "--json", "--html", str(page)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["rules"] == ["late-delivery", "stalled-checkout"] and document["ticks"] == TICKS
    assert {d["rule"] for d in document["days"]} <= {"late-delivery", "stalled-checkout"}
    assert document["approximate"] == {"late-delivery": ["order.status"]}
    html = page.read_text(encoding="utf-8")
    assert html.count("<svg") == 2 and "<script" not in html and "http" not in html.split("<body>")[1]
    typo = subprocess.run([*command, *period[:6], "--rules", "late-delivry"], capture_output=True, text=True)
    assert typo.returncode == 1 and "did you mean 'late-delivery'?" in typo.stderr

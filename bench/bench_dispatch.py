"""Throughput of the whole dispatcher against the raw provider SDKs, both on the loopback fake.

    .venv/bin/python bench/bench_dispatch.py --contacts 5000 --threads 8 --rounds 4

For each provider, due contacts are recorded in a fresh database (SQLite by default, or
`--database-url`) and dispatched by `Dispatcher` with `--threads` workers: claim, re-check the
rule on the record, render, send through the real SDK behind TwilioChannel / SendGridChannel,
record the provider's id. Beside it, in the same run and at the same concurrency, the raw SDK
sends the same number of comparable messages (bench/bench_channels.py). Rounds are interleaved
A B B A … so drift of the machine falls on both alike; the fake runs in its own process.
Prints messages per second for each and the ratio outreach/raw (1.00 = no overhead).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_channels import FROM_EMAIL, GROUP, HTML, SERVICE, SMS, TIMEOUT, VARIANTS, run

from outreach.channels import make_channels
from outreach.delivery.decide import evaluate, limits_of
from outreach.delivery.dispatch import Dispatcher
from outreach.logs import configure
from outreach.rendering import Renderer
from outreach.rules.loader import load_rules
from outreach.settings import Settings
from outreach.state.db import make_engine, normalise_url
from outreach.state.migrate import upgrade
from outreach.state.models import Customer, Order
from outreach.testing.fakeproviders import RemoteFakeProviders, spawn

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

RULES = """\
rules:
  - name: late-delivery
    about: order
    when: order.delivered_at is null and order.promised_at < now() - 1d
    channels: [{channel}]
    template: late_delivery
"""

# The same bodies the raw SDK sends (bench_channels), as templates.
TEMPLATES = {
    "late_delivery/email.en.html": f'---\nsubject: "Your order is late"\n---\n{HTML}\n',
    "late_delivery/email.en.txt": "Hello {{ customer.name }},\n"
    + "Your order #{{ order.id }} is running late.\n" * 40,
    "late_delivery/sms.en.txt": SMS.replace(" Reply STOP to opt out.", "") + "\n",
}

CHANNEL_OF = {"twilio": "sms", "sendgrid": "email"}


@dataclass
class Tally:
    messages: int = 0
    seconds: float = 0.0
    rates: list[float] = field(default_factory=list)

    def add(self, messages: int, seconds: float) -> None:
        self.messages += messages
        self.seconds += seconds
        self.rates.append(messages / seconds)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


class Deployment:
    """A database, rules and templates in a temporary folder, sending through the live channels."""

    def __init__(
        self, root: Path, provider: str, fake: RemoteFakeProviders, threads: int, database_url: str | None
    ) -> None:
        channel = CHANNEL_OF[provider]
        (root / "rules").mkdir()
        (root / "rules" / "rules.yaml").write_text(RULES.format(channel=channel), encoding="utf-8")
        for name, text in TEMPLATES.items():
            (root / "templates" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "templates" / name).write_text(text, encoding="utf-8")
        self.settings = Settings.model_validate(
            {
                "database": {"url": database_url or f"sqlite:///{root / 'bench.db'}"},
                "paths": {"rules": str(root / "rules"), "templates": str(root / "templates")},
                "delivery": {
                    "mode": "live",
                    "max_per_day": 1000,
                    "max_per_week": 1000,
                    "concurrency": threads,
                },
                "twilio": {"messaging_service_sid": SERVICE, "base_url": fake.url, "timeout": TIMEOUT},
                "sendgrid": {
                    "host": fake.url,
                    "from_email": FROM_EMAIL,
                    "from_name": "Souq Example",
                    "unsubscribe_group_id": GROUP,
                    "timeout": TIMEOUT,
                },
                "server": {"public_url": "https://outreach.example.com"},
                "base_dir": root,
            }
        )
        self.engine = make_engine(self.settings.database_url)
        upgrade(self.engine)
        self.rules = load_rules(
            root / "rules", default_every=timedelta(minutes=15), template_exists=lambda name: True
        )
        renderer = Renderer(self.settings)
        self.dispatcher = Dispatcher(
            self.engine,
            rules=lambda: self.rules,
            renderer=lambda: renderer,
            channels=make_channels(self.settings, environ=fake.environ()),
            worker="bench",
            limits=limits_of(self.settings),
            concurrency=threads,
            batch=max(100, threads * 16),
        )
        self.next_id = 0

    def add_due(self, count: int) -> float:
        """Insert COUNT customers with a late order and record their contacts; seconds taken."""
        started = time.perf_counter()
        first, self.next_id = self.next_id, self.next_id + count
        customers = [
            {
                "id": f"c{i}",
                "name": "Ann Lee",
                "email": f"customer{i}@example.com",
                "phone": f"+4477009{i % 100000:05d}",
                "locale": "en",
                "timezone": "UTC",
                "email_opt_in": True,
                "sms_opt_in": True,
                "attributes": {},
            }
            for i in range(first, first + count)
        ]
        orders = [
            {
                "id": f"A-{i}",
                "customer_id": f"c{i}",
                "status": "shipped",
                "placed_at": NOW - timedelta(days=5),
                "promised_at": NOW - timedelta(days=2),
                "delivered_at": None,
                "attributes": {},
            }
            for i in range(first, first + count)
        ]
        with self.engine.begin() as connection:
            connection.execute(sa.insert(Customer.__table__), customers)  # type: ignore[attr-defined]
            connection.execute(sa.insert(Order.__table__), orders)  # type: ignore[attr-defined]
        tick = evaluate(self.engine, list(self.rules), NOW, limits_of(self.settings))
        due = sum(1 for d in tick.decisions if d.state == "pending")
        if due != count:
            raise RuntimeError(f"expected {count} due contacts, got {due}")
        return time.perf_counter() - started

    def dispatch(self, count: int) -> float:
        started = time.perf_counter()
        stats = self.dispatcher.dispatch_once(NOW)
        seconds = time.perf_counter() - started
        if stats.sent != count:
            raise RuntimeError(
                f"expected {count} sends, got {stats.sent} (failed {stats.failed}, retried {stats.retried}, unknown {stats.unknown})"
            )
        return seconds

    def close(self) -> None:
        self.dispatcher.close()
        self.engine.dispose()


@contextlib.contextmanager
def scratch_schema(database_url: str | None) -> Iterator[str | None]:
    """A URL whose search_path is a fresh PostgreSQL schema, dropped afterwards (None: SQLite)."""
    if database_url is None:
        yield None
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalise_url(database_url))
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(normalise_url(database_url)).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def compare(
    fake: RemoteFakeProviders,
    provider: str,
    contacts: int,
    threads: int,
    rounds: int,
    database_url: str | None,
) -> dict[str, Any]:
    make_sdk, _ = VARIANTS[provider]
    raw = make_sdk(fake)
    per_round = max(1, contacts // rounds)
    with tempfile.TemporaryDirectory(prefix="bench-dispatch-") as folder, scratch_schema(database_url) as url:
        deployment = Deployment(Path(folder), provider, fake, threads, url)
        try:
            run(raw, range(threads * 4), threads)  # warm connections, imports and caches
            deployment.add_due(threads * 4)
            deployment.dispatch(threads * 4)
            tallies = {"raw": Tally(), "outreach": Tally()}
            evaluate_seconds = 0.0
            for round_index in range(rounds):
                order = ["raw", "outreach"] if round_index % 2 == 0 else ["outreach", "raw"]
                for name in order:
                    if name == "raw":
                        start = round_index * per_round
                        seconds, _cpu = run(raw, range(start, start + per_round), threads)
                    else:
                        evaluate_seconds += deployment.add_due(per_round)
                        seconds = deployment.dispatch(per_round)
                    tallies[name].add(per_round, seconds)
        finally:
            deployment.close()
    sdk, ours = tallies["raw"], tallies["outreach"]
    return {
        "provider": provider,
        "database": "postgresql" if database_url and database_url.startswith("postgres") else "sqlite",
        "threads": threads,
        "messages": ours.messages,
        "raw_per_s": round(sdk.rate, 1),
        "outreach_per_s": round(ours.rate, 1),
        "ratio": round(ours.rate / sdk.rate, 3),
        "raw_round_median_per_s": round(statistics.median(sdk.rates), 1),
        "outreach_round_median_per_s": round(statistics.median(ours.rates), 1),
        "evaluate_per_s": round(ours.messages / evaluate_seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--contacts", type=int, default=5000, help="contacts per provider (and raw messages alike)"
    )
    parser.add_argument("--threads", type=int, default=8, help="dispatcher workers = raw SDK threads")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (ABBA…)")
    parser.add_argument("--providers", default="twilio,sendgrid")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to use instead of a temporary SQLite file (in a scratch schema, dropped afterwards)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    for name in ("no_proxy", "NO_PROXY"):
        os.environ[name] = "127.0.0.1,localhost"
    configure("warning")

    with spawn(record=False) as fake:
        results = [
            compare(fake, provider.strip(), args.contacts, args.threads, args.rounds, args.database_url)
            for provider in args.providers.split(",")
        ]
    if args.json:
        print(json.dumps({"results": results}, indent=2))
        return 0
    print(
        f"{'provider':<10}{'database':>11}{'threads':>8}{'messages':>10}{'raw msg/s':>11}{'outreach msg/s':>16}{'ratio':>8}{'evaluate/s':>12}"
    )
    for r in results:
        print(
            f"{r['provider']:<10}{r['database']:>11}{r['threads']:>8}{r['messages']:>10}{r['raw_per_s']:>11.0f}"
            f"{r['outreach_per_s']:>16.0f}{r['ratio']:>8.2f}{r['evaluate_per_s']:>12.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

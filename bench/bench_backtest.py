"""A month lived tick by tick, then backtested: time, memory, and agreement per day and rule.

    .venv/bin/python bench/bench_backtest.py --customers 100000 --days 30 --every 1h

1. `bench/generate.py`'s data set (seeded) is turned into what a shop would have sent over the
   last DAYS before its `now`: every record as it was at the start of the period, then each
   order, checkout and survey response at the tick after it was placed, started or answered,
   and each delivery and completion at the tick after it happened.
2. Lived: at each tick (every EVERY) what arrived is loaded (`Outreach.ingest_records` with
   the tick's instant) and one tick runs (`Outreach.tick`: decide, record, send to the outbox),
   in this process — as `run --once --now T` does, without starting a process per tick.
3. Backtested: `outreach backtest --from START --to END --every EVERY --json` as a process of
   its own, timed, with the peak RSS the kernel recorded for it.
4. The backtest's days (per day and rule: decided, sent by channel, held back by why, deferred,
   holdout, expired) and its messages per customer and week are compared with the same tally of
   the real ledger (`outreach.backtest.tally_ledger`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.generate import DEFAULT_NOW, DEFAULT_SEED, generate  # noqa: E402
from outreach import Outreach, configure_logging  # noqa: E402
from outreach.backtest import tally_ledger  # noqa: E402
from outreach.clock import parse_instant  # noqa: E402
from outreach.durations import parse_duration  # noqa: E402
from outreach.settings import Settings  # noqa: E402
from outreach.state.db import make_engine  # noqa: E402

CREATED = {"orders": "placed_at", "checkouts": "started_at", "survey_responses": "responded_at"}
ENDED = {"orders": "delivered_at", "checkouts": "completed_at"}
CHUNK = 5000


def at_tick(instant: datetime, start: datetime, every: timedelta) -> datetime:
    """The first tick at or after INSTANT: when a shop's feed would have brought it."""
    steps = -(-(instant - start) // every)
    return start + steps * every


def as_of_creation(table: str, record: dict[str, Any]) -> dict[str, Any]:
    """RECORD as it was when it was created: not yet delivered or completed."""
    ended = ENDED.get(table)
    if ended is None or ended not in record:
        return record
    earlier = {k: v for k, v in record.items() if k != ended}
    if table == "orders" and earlier.get("status") == "delivered":
        earlier["status"] = "shipped"
    return earlier


def feed(
    customers: int, now: datetime, seed: int, start: datetime, every: timedelta
) -> tuple[dict[str, list[dict[str, Any]]], dict[datetime, dict[str, list[dict[str, Any]]]]]:
    """(records as of START by table, {tick: {table: records arriving then}})."""
    initial: dict[str, list[dict[str, Any]]] = defaultdict(list)
    arrivals: dict[datetime, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for table, record in generate(customers, now, seed):
        created_field = CREATED.get(table)
        created = parse_instant(record[created_field]) if created_field else None
        ended_field = ENDED.get(table)
        ended = parse_instant(record[ended_field]) if ended_field and ended_field in record else None
        if created is None or created <= start:
            initial[table].append(
                record if ended is None or ended <= start else as_of_creation(table, record)
            )
        else:
            arrivals[at_tick(created, start, every)][table].append(as_of_creation(table, record))
        if ended is not None and ended > start and (created is None or created <= ended):
            stamp = {
                "id": record["id"],
                "customer_id": record["customer_id"],
                ended_field: record[ended_field],
            }
            if table == "orders":
                stamp["status"] = record["status"]
            arrivals[at_tick(ended, start, every)][table].append(stamp)
    return initial, arrivals


def settings_for(root: Path, url: str) -> Settings:
    return Settings.model_validate(
        {
            "database": {"url": url},
            "paths": {
                "rules": str(REPO / "rules"),
                "templates": str(REPO / "templates"),
                "outbox": str(root / "outbox.jsonl"),
            },
            "base_dir": root,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every", default="1h")
    parser.add_argument("--now", default=DEFAULT_NOW)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--json", dest="json_path", help="Also write the figures to this file.")
    args = parser.parse_args()
    configure_logging("warning")  # one `contact` line per message would time the terminal

    now = parse_instant(args.now)
    every = parse_duration(args.every)
    start = now - timedelta(days=args.days)
    ticks = -(-(now - start) // every)
    root = Path(tempfile.mkdtemp(prefix="outreach-bench-backtest-"))
    url = f"sqlite:///{root / 'lived.db'}"
    make_engine(url).dispose()

    began = time.perf_counter()
    initial, arrivals = feed(args.customers, now, args.seed, start, every)
    arrived = sum(len(r) for by_table in arrivals.values() for r in by_table.values())
    with Outreach.open(settings_for(root, url)) as api:
        for table in ("customers", "orders", "checkouts", "survey_responses"):
            rows = initial.get(table, [])
            for begin in range(0, len(rows), CHUNK):
                api.ingest_records(table, rows[begin : begin + CHUNK], now=start)
        loaded = time.perf_counter() - began
        print(f"period {start.isoformat()} to {now.isoformat()}: {ticks} ticks every {args.every}")
        print(f"state at the start: {sum(len(r) for r in initial.values()):,} records ({loaded:.1f} s)")
        lived_began = time.perf_counter()
        for index in range(ticks):
            instant = start + index * every
            for table in ("customers", "orders", "checkouts", "survey_responses"):
                records = arrivals.get(instant, {}).get(table)
                if records:
                    api.ingest_records(table, records, now=instant)
            api.tick(instant)
        lived = time.perf_counter() - lived_began
        print(f"lived: {arrived:,} records arrived over the period, {ticks} ticks in {lived:.1f} s")
        with api._app.engine.connect() as connection:
            names = [rule.name for rule in api.rules() if rule.enabled]
            real = tally_ledger(connection, start, now, names)

    settings_file = root / "settings.toml"
    settings_file.write_text(
        f'[database]\nurl = "{url}"\n[paths]\nrules = "{REPO / "rules"}"\ntemplates = "{REPO / "templates"}"\n'
        f'outbox = "{root / "outbox.jsonl"}"\n',
        encoding="utf-8",
    )
    # The child reports its own peak (VmHWM is its own memory's, from exec on): the rusage of a
    # child counts the pages of this process it was forked from, 480 MB after the lived month.
    report_peak = (
        "import atexit, sys\n"
        "def peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'): sys.stderr.write('peak ' + line.split()[1] + ' kB\\n')\n"
        "atexit.register(peak)\n"
        "from outreach.cli import cli\n"
        "cli(sys.argv[1:], prog_name='outreach')\n"
    )
    command = [
        sys.executable,
        "-c",
        report_peak,
        "--settings",
        str(settings_file),
        "backtest",
        "--from",
        start.isoformat(),
        "--to",
        now.isoformat(),
        "--every",
        args.every,
        "--json",
    ]
    replay_began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    replay = time.perf_counter() - replay_began
    if done.returncode != 0:
        sys.exit(f"backtest failed:\n{done.stderr}")
    rss_mb = (
        next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("peak ")) / 1024
    )
    document = json.loads(done.stdout)
    real_json = real.as_json()
    cells_real = {(d["day"], d["rule"]): d for d in real_json["days"]}
    cells_replay = {(d["day"], d["rule"]): d for d in document["days"]}
    agree = sum(1 for key, cell in cells_real.items() if cells_replay.get(key) == cell)
    keys = set(cells_real) | set(cells_replay)
    weeks_agree = document["messages_per_customer_week"] == real_json["messages_per_customer_week"]
    sent = sum(sum(d["sent"].values()) for d in real_json["days"])
    figures = {
        "customers": args.customers,
        "days": args.days,
        "every": args.every,
        "ticks": ticks,
        "records_at_start": sum(len(r) for r in initial.values()),
        "records_arrived": arrived,
        "sent_in_period": sent,
        "lived_seconds": round(lived, 1),
        "backtest_seconds": round(replay, 1),
        "backtest_peak_rss_mb": round(rss_mb),
        "day_rule_cells": len(keys),
        "day_rule_cells_equal": agree,
        "messages_per_week_equal": weeks_agree,
        "versions_used": document["versions_used"],
    }
    print(
        f"backtest: {replay:.1f} s as a process, peak RSS {rss_mb:.0f} MB, {document['versions_used']:,} versions"
    )
    print(
        f"agreement: {agree} of {len(keys)} (day, rule) cells equal; messages per customer and week equal: {weeks_agree}"
    )
    print(f"sent in the period: {sent:,}")
    for key in sorted(keys):
        if cells_real.get(key) != cells_replay.get(key):
            print(f"  differs {key}: lived {cells_real.get(key)} replayed {cells_replay.get(key)}")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

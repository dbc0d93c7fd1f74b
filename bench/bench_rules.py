"""The foundation benchmark: ingest speed, and the canonical rules against hand-written SQL.

    .venv/bin/python bench/bench_rules.py --customers 1000000

1. Generates the data set with bench/generate.py (or reuses it when its manifest matches).
2. Loads it into a fresh SQLite file with `outreach ingest`, one process per file, timing
   records per second of wall-clock and of CPU time, and reading each process's peak RSS
   from the kernel (wait4).
3. For each canonical rule in rules/, times (a) a hand-written query over the rule's index
   with plain sqlite3 and (b) `outreach.rules.evaluate.find_matches`, checks that both return
   the same (customer_id, entity_id) pairs, and prints the ratio of their median times (the
   two are run in turn, so that both see the same load on a shared machine).

Targets at 1,000,000 customers: outreach ≤ 1.3× hand-written SQL, peak RSS ≤ 400 MB,
ingest ≥ 50,000 records/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import generate  # noqa: E402

TABLES = ("customers", "orders", "checkouts", "survey_responses")
DAY = timedelta(days=1)


def micros(value: datetime) -> int:
    """SQLite stores instants as integer microseconds since the epoch (outreach.state.types)."""
    return (value - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# The hand-written baseline: what a careful engineer would write against the schema's indexes.
HAND_WRITTEN: dict[str, tuple[str, Callable[[datetime], tuple[int, ...]]]] = {
    "late-delivery": (
        "SELECT customer_id, id FROM orders"
        " WHERE delivered_at IS NULL AND promised_at < ? AND status != 'cancelled'",
        lambda now: (micros(now - DAY),),
    ),
    "stalled-checkout": (
        "SELECT customer_id, id FROM checkouts"
        " WHERE completed_at IS NULL AND started_at < ? AND started_at > ? AND cart_value > 0",
        lambda now: (micros(now - timedelta(hours=2)), micros(now - 3 * DAY)),
    ),
    "detractor-follow-up": (
        "SELECT customer_id, id FROM survey_responses WHERE responded_at > ? AND kind = 'nps' AND score <= 6",
        lambda now: (micros(now - 7 * DAY),),
    ),
}


@dataclass(frozen=True)
class IngestRun:
    table: str
    records: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_rate(self) -> float:
        """Records per second of CPU time: what a machine not shared with other work would see."""
        return self.records / self.cpu_seconds


@dataclass(frozen=True)
class RuleRun:
    rule: str
    matches: int
    sql_ms: float
    outreach_ms: float
    plan: str

    @property
    def ratio(self) -> float:
        return self.outreach_ms / self.sql_ms


def ensure_data(customers: int, out: Path, now: datetime, seed: int) -> dict[str, Any]:
    manifest_path = out / generate.MANIFEST
    wanted = {"customers": customers, "seed": seed, "now": generate.iso(now)}
    if manifest_path.is_file():
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        if {key: manifest.get(key) for key in wanted} == wanted:
            print(f"reusing {out}", flush=True)
            return manifest
    print(f"generating {customers:,} customers into {out} …", flush=True)
    started = time.perf_counter()
    manifest = generate.write(customers, out, now, seed)
    print(f"  generated in {time.perf_counter() - started:.1f} s", flush=True)
    return manifest


def run_ingest(database: Path, data: Path, counts: dict[str, int]) -> list[IngestRun]:
    """`outreach ingest` in a child process per file; wall time and the child's peak RSS."""
    for stale in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        stale.unlink(missing_ok=True)
    environment = {**os.environ, "OUTREACH_DATABASE__URL": f"sqlite:///{database}"}
    runs = []
    for table in TABLES:
        command = [sys.executable, "-m", "outreach", "ingest", str(data / f"{table}.jsonl")]
        started = time.perf_counter()
        child = subprocess.Popen(
            command, env=environment, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert child.stdout is not None and child.stderr is not None
        out, err = child.stdout.read(), child.stderr.read()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"outreach ingest failed ({child.returncode}):\n{out.decode()}{err.decode()}")
        run = IngestRun(
            table, counts[table], seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
        )
        print(
            f"  {table:17} {run.records:>10,} records {run.seconds:7.1f} s {run.rate:>9,.0f}/s"
            f"  CPU {run.cpu_seconds:6.1f} s {run.cpu_rate:>9,.0f}/s  peak RSS {run.peak_rss_mb:5.0f} MB",
            flush=True,
        )
        runs.append(run)
    return runs


def median_ms(actions: list[Callable[[], object]], repeat: int) -> list[float]:
    """The median time of each action, run in turn so that they share the machine's moods."""
    for action in actions:
        action()  # warm the page cache and SQLAlchemy's statement cache
    times: list[list[float]] = [[] for _ in actions]
    for _ in range(repeat):
        for action, spent in zip(actions, times, strict=False):
            started = time.perf_counter()
            action()
            spent.append((time.perf_counter() - started) * 1000)
    return [statistics.median(spent) for spent in times]


def run_rules(database: Path, now: datetime, rules_dir: Path, repeat: int) -> list[RuleRun]:
    from outreach.rules.evaluate import find_matches
    from outreach.rules.loader import load_rules
    from outreach.state.db import make_engine

    rules = {rule.name: rule for rule in load_rules(rules_dir)}
    raw = sqlite3.connect(database)
    engine = make_engine(f"sqlite:///{database}")
    runs = []
    with engine.connect() as connection:
        for name, (sql, bounds) in HAND_WRITTEN.items():
            rule = rules[name]
            parameters = bounds(now)
            expected = set(raw.execute(sql, parameters).fetchall())
            actual = {(m.customer_id, m.entity_id) for m in find_matches(connection, rule, now)}
            if actual != expected:
                raise SystemExit(
                    f"{name}: outreach found {len(actual):,} matches, the hand-written SQL {len(expected):,}; "
                    f"e.g. only outreach: {sorted(actual - expected)[:3]}, only SQL: {sorted(expected - actual)[:3]}"
                )
            sql_ms, outreach_ms = median_ms(
                [
                    lambda sql=sql, parameters=parameters: raw.execute(sql, parameters).fetchall(),
                    lambda rule=rule: find_matches(connection, rule, now),
                ],
                repeat,
            )
            plan = "; ".join(row[3] for row in raw.execute("EXPLAIN QUERY PLAN " + sql, parameters))
            run = RuleRun(name, len(expected), sql_ms, outreach_ms, plan)
            print(
                f"  {name:20} {run.matches:>8,} matches  SQL {run.sql_ms:8.1f} ms  outreach "
                f"{run.outreach_ms:8.1f} ms  ratio {run.ratio:4.2f}   [{plan}]",
                flush=True,
            )
            runs.append(run)
    raw.close()
    engine.dispose()
    return runs


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--data", type=Path, help="data folder (default: var/bench/CUSTOMERS)")
    parser.add_argument("--db", type=Path, help="SQLite file, recreated (default: DATA/bench.db)")
    parser.add_argument("--rules", type=Path, default=REPO / "rules")
    parser.add_argument("--now", default=generate.DEFAULT_NOW)
    parser.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    parser.add_argument("--repeat", type=int, default=11, help="timed runs per query; the median is reported")
    parser.add_argument("--skip-ingest", action="store_true", help="reuse the database of an earlier run")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    now = datetime.fromisoformat(args.now).astimezone(UTC)
    data = args.data or REPO / "var" / "bench" / str(args.customers)
    database = args.db or data / "bench.db"
    manifest = ensure_data(args.customers, data, now, args.seed)

    ingest_runs: list[IngestRun] = []
    if not args.skip_ingest:
        print("ingest (outreach ingest, one process per file):", flush=True)
        ingest_runs = run_ingest(database, data, manifest["counts"])
        records = sum(run.records for run in ingest_runs)
        seconds = sum(run.seconds for run in ingest_runs)
        cpu = sum(run.cpu_seconds for run in ingest_runs)
        print(
            f"  {'all':17} {records:>10,} records {seconds:7.1f} s {records / seconds:>9,.0f}/s"
            f"  CPU {cpu:6.1f} s {records / cpu:>9,.0f}/s"
            f"  peak RSS {max(run.peak_rss_mb for run in ingest_runs):5.0f} MB",
            flush=True,
        )
        print("  load average after ingest: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()), flush=True)

    print(f"rules at {generate.iso(now)} (median of {args.repeat} runs):", flush=True)
    rule_runs = run_rules(database, now, args.rules, args.repeat)
    print(f"peak RSS of this process (rule evaluation): {peak_rss_mb():.0f} MB")

    if args.json:
        document = {
            "customers": args.customers,
            "counts": manifest["counts"],
            "now": generate.iso(now),
            "ingest": [asdict(run) | {"rate": run.rate, "cpu_rate": run.cpu_rate} for run in ingest_runs],
            "rules": [asdict(run) | {"ratio": run.ratio} for run in rule_runs],
            "evaluation_peak_rss_mb": peak_rss_mb(),
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()

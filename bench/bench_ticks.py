"""What a tick costs against the bare match queries of the canonical rules, on SQLite or PostgreSQL.

    .venv/bin/python bench/bench_ticks.py --customers 1000000
    .venv/bin/python bench/bench_ticks.py --customers 1000000 \
        --database-url postgresql://postgres@127.0.0.1:5432/test

1. Generates the data set with bench/generate.py (or reuses it) and loads it with `outreach
   ingest`, one process per file, into DATA/ticks.db, or on PostgreSQL into a database of its
   own, `outreach_bench_CUSTOMERS` on the server of --database-url (dropped and created again;
   then VACUUM ANALYZE, as autovacuum would). --skip-ingest reuses what an earlier run loaded.
2. The ledger (and the rules' sweeps) emptied and sending paused (`outreach.controls.pause`): a tick then evaluates,
   decides and records, and the dispatcher stops at the pause.
3. First tick at --now, in a child process of its own (the peak RSS the kernel recorded for it,
   from wait4): `outreach.tick.run_tick`, what the daemon's rule jobs run — decide + record,
   tasks, goals. Beside it, in another child, the three bare match queries
   (`outreach.rules.evaluate.find_matches`, no ledger) at the same instant. Repeated --first
   times, the ledger emptied before each.
4. Steady ticks, in process: one tick every 15 minutes (the rules' `every`) after the first,
   nothing changed in the data (on PostgreSQL after VACUUM ANALYZE, as autovacuum would have
   run on the first tick's rows by then); each beside the bare queries at the same instant, in turn
   (ABBA), --rounds times.
5. The same as processes: `outreach run --once --now T` (sending paused) beside a process that
   runs the three bare queries and exits (`bench_ticks.py --child bare`).
6. The ledger grown with rows of earlier weeks (--ledger-rows, default 0, 250k, 500k, 1M more):
   copies of the first tick's rows for other records, as a ledger of past ticks would hold them
   (sent, cancelled, held out, still suppressed; the stalled-checkout journeys' second steps),
   and a steady tick against the bare queries at each size; on PostgreSQL also, at each size, a
   tick that sweeps whole (the rules' sweeps forgotten first: what a tick cost before it built
   on the last sweep, and what SQLite does), in turn with the other two.
7. --churn N,M,…: before each steady tick, N undelivered orders rewritten unchanged (new row
   versions, most of them decided already), then the tick beside the bare queries: what a tick
   costs when that much was written since the last.

Targets at 1,000,000 customers: steady tick ≤ 1.5× the bare queries (in process and as a
process), first tick ≥ 50,000 decisions recorded per second and ≤ 5× the bare queries, peak
RSS of a tick ≤ 400 MB, a steady tick's cost flat as the ledger grows to 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import generate  # noqa: E402

TABLES = ("customers", "orders", "checkouts", "survey_responses")
EVERY = timedelta(minutes=15)  # the canonical rules' cadence: one steady tick after another
WEEK = timedelta(days=7)
MICROSECOND = timedelta(microseconds=1)  # SQLite stores instants as integer microseconds


# -- children: what runs in a process of its own ------------------------------------------------


def child_bare(now: datetime) -> dict[str, Any]:
    """The three bare match queries at NOW, once: what a tick cannot do with less."""
    from outreach.app import App
    from outreach.rules.evaluate import find_matches
    from outreach.settings import load_settings

    app = App(load_settings(REPO / "settings.toml"))
    rules = [rule for rule in app.load_rules() if rule.enabled]
    started = time.perf_counter()
    matches = 0
    for rule in rules:
        with app.engine.connect() as connection:
            matches += len(find_matches(connection, rule, now))
    return {"matches": matches, "seconds": time.perf_counter() - started}


def child_tick(now: datetime) -> dict[str, Any]:
    """One `run_tick` at NOW (no dispatcher, as the daemon's rule jobs run it)."""
    from outreach.app import App
    from outreach.settings import load_settings
    from outreach.tick import run_tick

    app = App(load_settings(REPO / "settings.toml"))
    rules = [rule for rule in app.load_rules() if rule.enabled]
    started = time.perf_counter()
    report = run_tick(app, rules, now)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "recorded": report.decided.recorded,
        "decisions": len(report.decided.decisions),
        "states": dict(Counter(str(d.state) for d in report.decided.decisions)),
    }


@dataclass(frozen=True)
class Child:
    """A finished child process: wall time, CPU time, peak RSS (wait4) and what it printed."""

    wall: float
    cpu: float
    peak_rss_mb: float
    out: dict[str, Any]


def run_child(command: list[str], environment: dict[str, str]) -> Child:
    started = time.perf_counter()
    child = subprocess.Popen(
        command, env=environment, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert child.stdout is not None and child.stderr is not None
    out, err = child.stdout.read(), child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed ({code}):\n{out.decode()}{err.decode()}")
    text = out.decode().strip()
    document: dict[str, Any] = {}
    if text.startswith("{"):
        document = json.loads(text)
    return Child(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, document)


def bench_child(mode: str, now: datetime, environment: dict[str, str]) -> Child:
    return run_child(
        [sys.executable, str(REPO / "bench" / "bench_ticks.py"), "--child", mode, "--now", generate.iso(now)],
        environment,
    )


def run_once(now: datetime, environment: dict[str, str]) -> Child:
    """`outreach run --once --now NOW` as an operator's cron runs it."""
    return run_child(
        [sys.executable, "-m", "outreach", "run", "--once", "--now", generate.iso(now)], environment
    )


# -- the database ---------------------------------------------------------------------------------


def ingest(url: str, data: Path, counts: dict[str, int], environment: dict[str, str]) -> list[dict[str, Any]]:
    """Load the data set into a fresh database at URL with `outreach ingest`, one process per file."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database
        for stale in (Path(parsed.database), Path(f"{parsed.database}-wal"), Path(f"{parsed.database}-shm")):
            stale.unlink(missing_ok=True)
    else:
        admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{parsed.database}"')
            connection.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
        admin.dispose()
    run_child([sys.executable, "-m", "outreach", "db", "upgrade"], environment)
    runs = []
    for table in TABLES:
        child = run_child(
            [sys.executable, "-m", "outreach", "ingest", str(data / f"{table}.jsonl")], environment
        )
        runs.append(
            {
                "table": table,
                "records": counts[table],
                "seconds": child.wall,
                "peak_rss_mb": child.peak_rss_mb,
            }
        )
        print(
            f"  {table:17} {counts[table]:>10,} records {child.wall:7.1f} s {counts[table] / child.wall:>9,.0f}/s"
            f"  peak RSS {child.peak_rss_mb:5.0f} MB",
            flush=True,
        )
    if parsed.get_backend_name() == "postgresql":
        analyze(url)
    return runs


def analyze(url: str) -> None:
    """PostgreSQL: what autovacuum does after a bulk insert (PostgreSQL 13 and later vacuum a
    table once a fifth of it is new): table statistics, and the visibility map that lets the
    ledger's probes be answered from its indexes alone."""
    import sqlalchemy as sa

    engine = sa.create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def reset_ledger(app: Any, now: datetime) -> None:
    """No contact, task, tick or sweep recorded; sending paused."""
    from outreach.controls import pause

    tables = ("contacts", "tasks", "rule_ticks", "rule_sweeps", "controls")
    with app.engine.begin() as connection:
        if app.engine.dialect.name == "postgresql":  # no dead rows left for the next tick to step over
            connection.exec_driver_sql(f"TRUNCATE {', '.join(tables)}")
        else:
            for table in tables:
                connection.exec_driver_sql(f"DELETE FROM {table}")
    pause(app, "bench_ticks: evaluation only", now)


def ledger_rows(app: Any) -> int:
    with app.engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT count(*) FROM contacts").scalar_one())


_COPIED = (
    "id, dedupe_key, rule, about, entity_id, customer_id, channel, state, reason, priority, decided_at,"
    " send_at, expires_at, recheck_at, updated_at, sent_at, attempts, arm, steps, step, group_key"
)


def pad_ledger(app: Any, first: datetime, rows: int, week: int) -> int:
    """Add about ROWS contacts of earlier weeks (from WEEK back) for other records: copies of the
    first tick's rows, each as a past tick leaves it — waiting contacts sent, held-back ones
    cancelled unless suppressed (those stay until the customer can be reached), and each sent
    stalled-checkout journey's second step decided (ended). Returns the next free week."""
    postgres = app.engine.dialect.name == "postgresql"
    new_id = "md5(random()::text || clock_timestamp()::text)" if postgres else "lower(hex(randomblob(16)))"

    def shift(column: str) -> str:
        return (
            f"{column} - make_interval(weeks => :k)" if postgres else f"{column} - :k * {WEEK // MICROSECOND}"
        )

    copy = f"""
        INSERT INTO contacts ({_COPIED})
        SELECT {new_id}, dedupe_key || :suffix, rule, about, entity_id || :suffix, customer_id, channel,
               CASE WHEN state IN ('pending', 'grouped') THEN 'sent'
                    WHEN state = 'skipped' THEN 'cancelled' ELSE state END,
               reason, priority, {shift("decided_at")}, {shift("send_at")}, {shift("expires_at")}, NULL,
               {shift("updated_at")},
               CASE WHEN state IN ('pending', 'grouped') THEN {shift("coalesce(send_at, decided_at)")} END,
               attempts, arm, steps, step, CASE WHEN group_key IS NOT NULL THEN group_key || :suffix END
        FROM contacts WHERE decided_at = :first AND step = 1
        ORDER BY id LIMIT :limit
    """
    day = "make_interval(days => 1)" if postgres else str(timedelta(days=1) // MICROSECOND)
    second = f"""
        INSERT INTO contacts ({_COPIED})
        SELECT {new_id}, dedupe_key || '#2', rule, about, entity_id, customer_id, 'sms', 'cancelled',
               'the goal was met: the journey ends before step 2', priority, sent_at + {day}, NULL, NULL, NULL,
               sent_at + {day}, NULL, 0, arm, steps, 2, NULL
        FROM contacts c
        WHERE rule = 'stalled-checkout' AND step = 1 AND state = 'sent' AND dedupe_key LIKE :pattern
    """
    import sqlalchemy as sa

    from outreach.state.types import UTCDateTime

    first_bound = UTCDateTime().process_bind_param(first, app.engine.dialect)
    with app.engine.begin() as connection:
        template = int(
            connection.execute(
                sa.text("SELECT count(*) FROM contacts WHERE decided_at = :first AND step = 1"),
                {"first": first_bound},
            ).scalar_one()
        )
        added = 0
        while added < rows:
            suffix = f":w{week}"
            inserted = connection.execute(
                sa.text(copy),
                {"suffix": suffix, "k": week, "first": first_bound, "limit": min(template, rows - added)},
            ).rowcount
            inserted += connection.execute(sa.text(second), {"pattern": f"%{suffix}"}).rowcount
            added += inserted
            week += 1
    if postgres:
        analyze(app.settings.database_url)
    return week


def whole_text(point: dict[str, Any]) -> str:
    if "whole_ms" not in point:
        return ""
    return f"; sweeping whole {point['whole_ms']:,.1f} ms, ratio {point['whole_ratio']:.2f}"


# -- measuring --------------------------------------------------------------------------------------


def bare_queries(app: Any, rules: list[Any], now: datetime) -> tuple[int, float]:
    from outreach.rules.evaluate import find_matches

    started = time.perf_counter()
    matches = 0
    for rule in rules:
        with app.engine.connect() as connection:
            matches += len(find_matches(connection, rule, now))
    return matches, time.perf_counter() - started


def forget_sweeps(app: Any) -> None:
    """The next tick evaluates every rule over all its matches, as if none had been swept."""
    with app.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM rule_sweeps")


def steady_in_process(
    app: Any, rules: list[Any], instants: list[datetime], whole: bool = False
) -> dict[str, Any]:
    """A steady tick at each instant beside the bare queries at the same instant, in ABBA order;
    with WHOLE (PostgreSQL) also a tick that sweeps whole (its rules' sweeps forgotten first),
    at the same instant, before or after the other in turn."""
    from outreach.tick import run_tick

    bare: list[float] = []
    ticks: list[float] = []
    wholes: list[float] = []
    recorded: list[int] = []
    matches = 0
    for index, at in enumerate(instants):
        order = ["bare", "tick"] if index % 2 == 0 else ["tick", "bare"]
        if whole:
            order.insert(index % 3, "whole")
        for what in order:
            if what == "bare":
                matches, seconds = bare_queries(app, rules, at)
                bare.append(seconds)
                continue
            if what == "whole":
                forget_sweeps(app)
            started = time.perf_counter()
            report = run_tick(app, rules, at)
            (wholes if what == "whole" else ticks).append(time.perf_counter() - started)
            recorded.append(report.decided.recorded)
    figures = {
        "matches": matches,
        "bare_ms": statistics.median(bare) * 1000,
        "tick_ms": statistics.median(ticks) * 1000,
        "ratio": statistics.median(ticks) / statistics.median(bare),
        "recorded": recorded,
        "bare_all_ms": [round(s * 1000, 1) for s in bare],
        "tick_all_ms": [round(s * 1000, 1) for s in ticks],
    }
    if wholes:
        figures |= {
            "whole_ms": statistics.median(wholes) * 1000,
            "whole_ratio": statistics.median(wholes) / statistics.median(bare),
            "whole_all_ms": [round(s * 1000, 1) for s in wholes],
        }
    return figures


def churned_ticks(app: Any, rules: list[Any], instants: list[datetime], count: int) -> dict[str, Any]:
    """At each instant, COUNT undelivered orders (late-delivery's candidates, most of them decided
    already) rewritten unchanged, as a load that sends them again does, then a steady tick beside
    the bare queries, in ABBA order: what a tick costs when that much has changed since the last."""
    import sqlalchemy as sa

    from outreach.tick import run_tick

    rewrite = sa.text(
        "UPDATE orders SET carrier = carrier WHERE id IN"
        " (SELECT id FROM orders WHERE delivered_at IS NULL ORDER BY id LIMIT :count)"
    )
    figures: dict[str, list[float]] = {"tick": [], "bare": []}
    for index, at in enumerate(instants):
        with app.engine.begin() as connection:
            connection.execute(rewrite, {"count": count})
        order = ("bare", "tick") if index % 2 == 0 else ("tick", "bare")
        for what in order:
            started = time.perf_counter()
            if what == "bare":
                bare_queries(app, rules, at)
            else:
                run_tick(app, rules, at)
            figures[what].append((time.perf_counter() - started) * 1000)
    return {
        "rewritten": count,
        "tick_ms": statistics.median(figures["tick"]),
        "bare_ms": statistics.median(figures["bare"]),
        "ratio": statistics.median(figures["tick"]) / statistics.median(figures["bare"]),
        "tick_all_ms": [round(ms, 1) for ms in figures["tick"]],
        "bare_all_ms": [round(ms, 1) for ms in figures["bare"]],
    }


def steady_processes(instants: list[datetime], environment: dict[str, str]) -> dict[str, Any]:
    """`outreach run --once` at each instant beside the bare queries as a process, ABBA."""
    bare: list[Child] = []
    runs: list[Child] = []
    for index, at in enumerate(instants):
        order = ("bare", "run") if index % 2 == 0 else ("run", "bare")
        for what in order:
            if what == "bare":
                bare.append(bench_child("bare", at, environment))
            else:
                runs.append(run_once(at, environment))
    bare_wall = statistics.median(c.wall for c in bare)
    run_wall = statistics.median(c.wall for c in runs)
    return {
        "bare_s": bare_wall,
        "run_once_s": run_wall,
        "ratio": run_wall / bare_wall,
        "bare_cpu_s": statistics.median(c.cpu for c in bare),
        "run_once_cpu_s": statistics.median(c.cpu for c in runs),
        "run_once_peak_rss_mb": max(c.peak_rss_mb for c in runs),
        "bare_all_s": [round(c.wall, 3) for c in bare],
        "run_once_all_s": [round(c.wall, 3) for c in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument(
        "--database-url", help="sqlite:///FILE or a PostgreSQL server's URL (default: DATA/ticks.db)"
    )
    parser.add_argument("--data", type=Path, help="data folder (default: var/bench/CUSTOMERS)")
    parser.add_argument("--now", default=generate.DEFAULT_NOW, help="the first tick's instant")
    parser.add_argument("--seed", type=int, default=generate.DEFAULT_SEED)
    parser.add_argument("--skip-ingest", action="store_true", help="reuse the database an earlier run loaded")
    parser.add_argument("--first", type=int, default=3, help="first ticks timed (ledger emptied before each)")
    parser.add_argument(
        "--rounds", type=int, default=6, help="steady ticks timed, in process and as processes"
    )
    parser.add_argument(
        "--ledger-rows",
        default="0,250000,500000,1000000",
        help="rows of earlier weeks the ledger is grown by, in turn (comma-separated; empty: skip)",
    )
    parser.add_argument("--growth-rounds", type=int, default=4, help="steady ticks timed at each ledger size")
    parser.add_argument(
        "--churn",
        default="",
        help="orders rewritten before a steady tick, in turn, after the ledger has grown (comma-separated)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child", choices=("bare", "tick"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    now = datetime.fromisoformat(args.now).astimezone(UTC)

    if args.child:
        print(json.dumps((child_bare if args.child == "bare" else child_tick)(now)))
        return

    from sqlalchemy.engine import make_url

    data = args.data or REPO / "var" / "bench" / str(args.customers)
    if args.database_url is None or args.database_url.startswith("sqlite"):
        url = args.database_url or f"sqlite:///{data / 'ticks.db'}"
        database = "sqlite"
    else:
        parsed = make_url(args.database_url).set(database=f"outreach_bench_{args.customers}")
        url = parsed.render_as_string(hide_password=False)
        database = "postgresql"
    postgres = database == "postgresql"
    environment = {
        **os.environ,
        "OUTREACH_DATABASE__URL": url,
        "OUTREACH_SETTINGS": str(REPO / "settings.toml"),
    }
    os.environ.update(environment)

    sys.path.insert(0, str(REPO / "bench"))
    from bench_rules import ensure_data

    manifest = ensure_data(args.customers, data, now, args.seed)
    figures: dict[str, Any] = {"customers": args.customers, "database": database, "now": generate.iso(now)}
    if not args.skip_ingest:
        print(f"ingest into {database} (outreach ingest, one process per file):", flush=True)
        figures["ingest"] = ingest(url, data, manifest["counts"], environment)
    else:  # a database loaded before the newest migration
        run_child([sys.executable, "-m", "outreach", "db", "upgrade"], environment)

    from outreach.app import App
    from outreach.settings import load_settings

    app = App(load_settings(REPO / "settings.toml"))
    rules = [rule for rule in app.load_rules() if rule.enabled]
    print(f"{database}, {args.customers:,} customers, first tick at {generate.iso(now)}", flush=True)
    print("  load average: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()), flush=True)

    # First ticks, each in a child of its own beside the bare queries in another.
    first: list[dict[str, Any]] = []
    for index in range(args.first):
        got: dict[str, Child] = {}
        for mode in ("bare", "tick") if index % 2 == 0 else ("tick", "bare"):
            if mode == "tick":
                reset_ledger(app, now)
            got[mode] = bench_child(mode, now, environment)
        tick, bare = got["tick"].out, got["bare"].out
        row = {
            "bare_ms": bare["seconds"] * 1000,
            "matches": bare["matches"],
            "tick_ms": tick["seconds"] * 1000,
            "recorded": tick["recorded"],
            "per_second": tick["recorded"] / tick["seconds"],
            "ratio": tick["seconds"] / bare["seconds"],
            "peak_rss_mb": got["tick"].peak_rss_mb,
            "bare_peak_rss_mb": got["bare"].peak_rss_mb,
            "states": tick["states"],
        }
        first.append(row)
        print(
            f"  first tick: {row['recorded']:,} decisions recorded in {row['tick_ms']:,.0f} ms"
            f" ({row['per_second']:,.0f}/s); bare queries {row['bare_ms']:,.0f} ms ({row['matches']:,} matches);"
            f" ratio {row['ratio']:.2f}; peak RSS {row['peak_rss_mb']:.0f} MB (bare queries' process"
            f" {row['bare_peak_rss_mb']:.0f} MB)",
            flush=True,
        )
    figures["first"] = first
    if database == "postgresql":  # 15 minutes on, autovacuum has been through the first tick's rows
        analyze(url)
    print(f"  outcomes: {first[-1]['states']}", flush=True)
    # The ledger now holds the last first tick at NOW: the steady ticks follow it.
    at = now
    instants = [at + EVERY * (i + 1) for i in range(args.rounds)]
    at = instants[-1]
    steady = steady_in_process(app, rules, instants)
    figures["steady_in_process"] = steady
    print(
        f"  steady tick in process: {steady['tick_ms']:,.1f} ms against bare queries {steady['bare_ms']:,.1f} ms"
        f" ({steady['matches']:,} matches): ratio {steady['ratio']:.2f}; new rows {steady['recorded']}",
        flush=True,
    )
    print(f"    ticks {steady['tick_all_ms']}  bare {steady['bare_all_ms']}", flush=True)

    instants = [at + EVERY * (i + 1) for i in range(args.rounds)]
    at = instants[-1]
    processes = steady_processes(instants, environment)
    figures["steady_processes"] = processes
    print(
        f"  steady tick as a process: run --once {processes['run_once_s']:.2f} s against bare queries"
        f" {processes['bare_s']:.2f} s: ratio {processes['ratio']:.2f}; CPU {processes['run_once_cpu_s']:.2f}"
        f" / {processes['bare_cpu_s']:.2f} s; peak RSS {processes['run_once_peak_rss_mb']:.0f} MB",
        flush=True,
    )
    print(f"    run --once {processes['run_once_all_s']}  bare {processes['bare_all_s']}", flush=True)

    growth: list[dict[str, Any]] = []
    sizes = [int(size) for size in args.ledger_rows.split(",") if size.strip()]
    padded, week = 0, 1
    for size in sizes:
        if size > padded:
            started = time.perf_counter()
            week = pad_ledger(app, now, size - padded, week)
            padded = size
            print(
                f"  ledger grown by {size:,} rows in all ({time.perf_counter() - started:.1f} s)", flush=True
            )
        instants = [at + EVERY * (i + 1) for i in range(args.growth_rounds)]
        at = instants[-1]
        point = steady_in_process(app, rules, instants, whole=postgres) | {
            "padding": padded,
            "ledger_rows": ledger_rows(app),
        }
        growth.append(point)
        print(
            f"  ledger {point['ledger_rows']:>9,} rows: steady tick {point['tick_ms']:,.1f} ms, bare queries"
            f" {point['bare_ms']:,.1f} ms, ratio {point['ratio']:.2f}" + whole_text(point),
            flush=True,
        )
    figures["growth"] = growth

    churned: list[dict[str, Any]] = []
    for count in [int(n) for n in args.churn.split(",") if n.strip()]:
        instants = [at + EVERY * (i + 1) for i in range(args.growth_rounds)]
        at = instants[-1]
        point = churned_ticks(app, rules, instants, count)
        churned.append(point)
        print(
            f"  {count:>9,} orders rewritten before each tick: steady tick {point['tick_ms']:,.1f} ms,"
            f" bare queries {point['bare_ms']:,.1f} ms, ratio {point['ratio']:.2f}",
            flush=True,
        )
    figures["churn"] = churned
    print("  load average: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    app.close()


if __name__ == "__main__":
    main()

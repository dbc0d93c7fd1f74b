"""Event → provider request: how long after `POST /events` the fake provider receives the message.

    .venv/bin/python bench/bench_events.py --rate 50 --seconds 60 [--databases sqlite,postgresql]

A real `outreach run` process (SQLite in a temporary folder, or PostgreSQL in a scratch schema
dropped afterwards) with one rule: an NPS detractor gets an email. Its `every` is a day, so
only the event-driven evaluation of a posted record can answer within the run (the sweep ticks
once, at start-up, before any survey exists). No quiet hours, distinct customers (no cap holds
anything back), the fake SendGrid in its own process on loopback, recording each request's
arrival time. Open loop: survey responses are posted at `--rate` a second, one record per
request with the bearer token, whatever the daemon's answers take; for each, the time from the
start of its POST to the fake receiving its email is taken. Prints p50, p95, p99 and max of
that, and of the POST's own answer.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from outreach.state.db import make_engine, normalise_url
from outreach.state.ingest import ingest_files
from outreach.state.migrate import upgrade
from outreach.testing.fakeproviders import RemoteFakeProviders, spawn

TOKEN = "bench-events-token"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
RULE = """rules:
  - name: detractor-follow-up
    about: survey
    when: survey.kind == "nps" and survey.score <= 6 and survey.responded_at > now() - 7d
    channels: [email]
    template: detractor_apology
    every: 1d
    quiet_hours: "off"
"""
TEMPLATE = (
    '---\nsubject: "We are sorry"\n---\n<p>Dear {{ customer.name }}, you gave us {{ survey.score }}.'
    ' We would like to make it right.</p>\n<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n'
)


def workspace(root: Path, customers: int) -> Path:
    (root / "rules").mkdir()
    (root / "rules" / "rules.yaml").write_text(RULE)
    folder = root / "templates" / "detractor_apology"
    folder.mkdir(parents=True)
    for locale in ("en", "ar"):
        (folder / f"email.{locale}.html").write_text(TEMPLATE)
    (root / "settings.toml").write_text("")
    path = root / "customers.jsonl"
    with path.open("w") as out:
        for n in range(customers):
            out.write(
                json.dumps(
                    {
                        "id": f"c-{n:06d}",
                        "name": f"Customer {n}",
                        "email": f"customer{n}@example.com",
                        "locale": "en",
                        "timezone": "Europe/London",
                        "email_opt_in": True,
                    }
                )
                + "\n"
            )
    return path


@contextmanager
def database(kind: str, root: Path, postgres_url: str) -> Iterator[str]:
    """A SQLite file in ROOT, or a fresh schema on the PostgreSQL server (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{root / 'outreach.db'}"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalise_url(postgres_url))
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(normalise_url(postgres_url)).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def log_events(path: Path) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def wait_for_log(
    process: subprocess.Popen[bytes], path: Path, event: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next((e for e in log_events(path) if e.get("event") == event), None)
        if found is not None:
            return found
        if process.poll() is not None:
            raise SystemExit(f"outreach run exited ({process.returncode}):\n{path.read_text()[-3000:]}")
        time.sleep(0.1)
    raise SystemExit(f"no {event!r} from outreach run within {timeout} s")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 3),
        "p95": round(percentile(values, 0.95), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values), 3),
    }


def post_events(url: str, rate: float, seconds: float, threads: int) -> tuple[dict[int, float], list[float]]:
    """POST one detractor survey per event at RATE a second for SECONDS; start time and answer times."""
    count = int(rate * seconds)
    posted: dict[int, float] = {}
    answers: list[float] = []
    lock = threading.Lock()
    local = threading.local()
    start = time.time() + 0.5

    def post(n: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(trust_env=False, timeout=30)
        delay = start + n / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        body = {
            "table": "survey_responses",
            "id": f"s-{n:06d}",
            "customer_id": f"c-{n:06d}",
            "kind": "nps",
            "score": n % 7,
            "responded_at": datetime.now(UTC).isoformat(),
        }
        began = time.time()
        answer = client.post(url + "/events", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        answered = time.time()
        if answer.status_code != 200:
            raise RuntimeError(f"POST /events answered {answer.status_code}: {answer.text}")
        with lock:
            posted[n] = began
            answers.append(answered - began)

    # Open loop: enough senders that a slow answer never delays the next event's start.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(post, n) for n in range(count)]:
            future.result()
    return posted, answers


def received(fake: RemoteFakeProviders) -> dict[int, float]:
    """Customer number → when the fake received that customer's email (first accepted request)."""
    found: dict[int, float] = {}
    for request in fake.requests("sendgrid"):
        if request.outcome != "accepted":
            continue
        at = datetime.fromisoformat(request.received_at).timestamp()
        for personalization in request.json.get("personalizations", []):
            for to in personalization.get("to", []):
                n = int(to["email"].removeprefix("customer").removesuffix("@example.com"))
                found.setdefault(n, at)
    return found


def run(kind: str, args: argparse.Namespace, fake: RemoteFakeProviders) -> dict[str, Any]:
    count = int(args.rate * args.seconds)
    fake.clear_requests()
    with tempfile.TemporaryDirectory(prefix="bench-events-") as folder:
        root = Path(folder)
        customers = workspace(root, count)
        with database(kind, root, args.postgres_url) as database_url:
            engine = make_engine(database_url)
            upgrade(engine)
            ingest_files(engine, [str(customers)], table="customers")
            environ = {
                **os.environ,
                **fake.environ(),
                "OUTREACH_SETTINGS": str(root / "settings.toml"),
                "OUTREACH_DATABASE__URL": database_url,
                "OUTREACH_SERVER__PORT": "0",
                "OUTREACH_EVENTS_TOKEN": TOKEN,
                "OUTREACH_TWILIO__MESSAGING_SERVICE_SID": "MG" + "0" * 32,
                "OUTREACH_LOG_LEVEL": "info",
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
            log_path = root / "daemon.log"
            with log_path.open("wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", "outreach", "run"],
                    cwd=root,
                    env=environ,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
                try:
                    port = wait_for_log(process, log_path, "http_listening")["port"]
                    wait_for_log(process, log_path, "tick")  # the start-up sweep, before any survey
                    load_before = os.getloadavg()[0]
                    posted, answers = post_events(
                        f"http://127.0.0.1:{port}", args.rate, args.seconds, args.threads
                    )
                    finished = time.time()
                    deadline = time.monotonic() + args.drain
                    got = received(fake)
                    while len(got) < count and time.monotonic() < deadline:
                        time.sleep(0.5)
                        got = received(fake)
                    load_after = os.getloadavg()[0]
                finally:
                    process.send_signal(signal.SIGTERM)
                    process.wait(60)
            ticks = [e for e in log_events(log_path) if e.get("event") == "tick"]
            engine.dispose()
    latencies = [got[n] - posted[n] for n in posted if n in got]
    if not latencies:
        raise SystemExit(f"{kind}: nothing reached the fake provider")
    return {
        "database": kind,
        "events": count,
        "rate_per_s": args.rate,
        "seconds": args.seconds,
        "received": len(latencies),
        "missing": count - len(latencies),
        "after_last_post_s": round(max(got.values()) - finished, 3),
        "ticks": len(ticks),
        "latency_s": summary(latencies),
        "post_answer_s": summary(answers),
        "load_average": [round(load_before, 2), round(load_after, 2)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rate", type=float, default=50.0, help="events posted a second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long events are posted")
    parser.add_argument("--databases", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--postgres-url", default=os.environ.get("OUTREACH_BENCH_POSTGRES_URL", POSTGRES))
    parser.add_argument("--threads", type=int, default=8, help="posting threads (open loop)")
    parser.add_argument("--drain", type=float, default=60.0, help="seconds to wait for the last sends")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    for name in ("no_proxy", "NO_PROXY"):
        os.environ[name] = "127.0.0.1,localhost"

    with spawn(record=True) as fake:
        results = [run(kind.strip(), args, fake) for kind in args.databases.split(",")]
    if args.json:
        print(json.dumps({"results": results}, indent=2))
        return 0
    print(
        f"{'database':<12}{'events':>8}{'received':>10}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}{'max s':>8}"
        f"{'POST p50':>10}{'POST p99':>10}{'ticks':>7}{'load':>12}"
    )
    for r in results:
        lat, post = r["latency_s"], r["post_answer_s"]
        print(
            f"{r['database']:<12}{r['events']:>8}{r['received']:>10}{lat['p50']:>8.3f}{lat['p95']:>8.3f}"
            f"{lat['p99']:>8.3f}{lat['max']:>8.3f}{post['p50']:>10.3f}{post['p99']:>10.3f}{r['ticks']:>7}"
            f"{r['load_average'][0]:>6.1f}→{r['load_average'][1]:<5.1f}"
        )
    print(f"({os.cpu_count()} cores; target: p95 ≤ 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

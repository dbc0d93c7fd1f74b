"""Dispatch throughput of 1, 2 and 3 `outreach run` workers on one PostgreSQL database.

    OUTREACH_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/bench_workers.py --contacts 2000 --workers 1 2 3

For each worker count: a fresh schema, CONTACTS customers that one email rule matches, then the
workers are started as real processes against the fake SendGrid (in its own process, on
loopback). Throughput is measured from the ledger, first `sent_at` to last, so process start-up
and the first tick are left out. One run each: on a small machine the workers, the fake and
PostgreSQL share the cores, so read the scaling as what this machine can do, not a ceiling.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from outreach.state.db import make_engine, normalise_url
from outreach.state.ingest import ingest_files
from outreach.state.migrate import upgrade
from outreach.testing.fakeproviders import spawn

RULE = """rules:
  - name: welcome
    about: customer
    when: customer.email_opt_in
    channels: [email]
    template: welcome
    every: 1h
    quiet_hours: "off"
"""
TEMPLATE = '---\nsubject: "Hello"\n---\n<p>Hello {{ customer.name }}</p>\n'


def workspace(root: Path, contacts: int) -> Path:
    (root / "rules").mkdir()
    (root / "rules" / "welcome.yaml").write_text(RULE)
    for locale in ("en", "ar"):
        folder = root / "templates" / "welcome"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"email.{locale}.html").write_text(TEMPLATE)
    (root / "settings.toml").write_text("")
    with (root / "customers.jsonl").open("w") as out:
        for n in range(contacts):
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
    return root / "customers.jsonl"


def run(base_url: str, workers: int, contacts: int, concurrency: int, fake_env: dict[str, str]) -> float:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalise_url(base_url))
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(normalise_url(base_url)).update_query_dict({"options": f"-csearch_path={schema}"})
    database_url = url.render_as_string(hide_password=False)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            customers = workspace(root, contacts)
            engine = make_engine(database_url)
            upgrade(engine)
            ingest_files(engine, [str(customers)], table="customers")
            environ = {
                **os.environ,
                **fake_env,
                "OUTREACH_SETTINGS": str(root / "settings.toml"),
                "OUTREACH_DATABASE__URL": database_url,
                "OUTREACH_SERVER__PORT": "0",
                "OUTREACH_DAEMON__DISPATCH_INTERVAL": "0.2",
                "OUTREACH_DELIVERY__CONCURRENCY": str(concurrency),
                "OUTREACH_TWILIO__MESSAGING_SERVICE_SID": "MG" + "0" * 32,
                "OUTREACH_LOG_LEVEL": "warning",
                "NO_PROXY": "127.0.0.1,localhost",
            }
            for _ in range(workers):
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "outreach", "run"],
                        cwd=root,
                        env=environ,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            query = sa.text("SELECT count(*), min(sent_at), max(sent_at) FROM contacts WHERE state = 'sent'")
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                with engine.connect() as connection:
                    sent, first, last = connection.execute(query).one()
                if sent >= contacts:
                    break
                if any(p.poll() is not None for p in processes):
                    raise SystemExit("a worker exited early")
                time.sleep(0.2)
            else:
                raise SystemExit(f"only {sent} of {contacts} sent in 600 s")
            engine.dispose()
            return (contacts - 1) / (last - first).total_seconds()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(60)
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--concurrency", type=int, default=8, help="senders per worker")
    parser.add_argument(
        "--database",
        default=os.environ.get("OUTREACH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = parser.parse_args()
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    with spawn(record=False) as fake:
        results: dict[int, float] = {}
        for workers in args.workers:
            results[workers] = run(args.database, workers, args.contacts, args.concurrency, fake.environ())
            base = results[args.workers[0]]
            print(
                f"{workers} worker(s): {results[workers]:8.1f} msgs/s   ×{results[workers] / base:.2f}",
                flush=True,
            )
    print(
        f"({os.cpu_count()} cores, {args.contacts} contacts, {args.concurrency} senders a worker, fake in its own process)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

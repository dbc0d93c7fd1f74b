"""What the dispatcher itself costs a message, with a channel that answers at once.

    .venv/bin/python bench/bench_dispatch_cost.py [--database-url postgresql://…] [--provider sendgrid]
    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python bench/bench_dispatch_cost.py …

The same deployment as bench_dispatch.py (rules, templates, settings), but the provider's
channel returns a receipt without a request and there are no sending threads: what is left is
outreach's own work for a message — claim, read, the send-time gate, rendering, marking chunks
`sending`, recording outcomes. Prints the CPU time a message (the least of --rounds rounds).

Throughput ratios on a shared two-core machine drift by ±10 % from one minute to the next.
Under callgrind this script switches instrumentation on for the dispatching alone (one round),
so valgrind's "Collected" line is the instructions it took: the same count to within 0.5 %
from run to run, whatever else the machine does — the figure to compare two versions by.

`--without render,mark,finish` replaces those parts with ones that do nothing (a fixed
message; marking returns the ids; outcomes are not written), to see the share of each.
`--raw` measures instead the raw SDK sending the same number of messages to the fake provider
from 8 threads (bench_channels.py): what a message costs the client without outreach.

`--tenths` also prints the wall time of claiming a batch, marking a chunk `sending` and
recording its outcomes (the statements and their round trips), averaged over each tenth of the
calls of the last round: whether they cost more the longer a send has run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_channels import VARIANTS, run
from bench_dispatch import Deployment, scratch_schema

from outreach.channels import OutgoingMessage, Receipt
from outreach.logs import configure
from outreach.rendering.renderer import RenderedMessage, Renderer
from outreach.state import ledger
from outreach.testing.fakeproviders import spawn

PARTS = ("render", "mark", "finish")


class AnswersAtOnce:
    """A channel that accepts every message without a request."""

    name = "instant"

    def send(self, message: OutgoingMessage) -> Receipt:
        return Receipt(provider="instant", provider_id=message.outbox_id)


def without(parts: set[str]) -> None:
    if "render" in parts:
        fixed = RenderedMessage(channel="email", locale="en", subject="s", text="t\n", html="<p>h</p>\n")
        sms = RenderedMessage(channel="sms", locale="en", sms="s", segments=1, encoding="GSM-7")
        Renderer.render = lambda self, **given: sms if given["channel"] == "sms" else fixed  # type: ignore[method-assign]
    if "mark" in parts:
        ledger.mark_sending = lambda connection, worker, ids, now, until: set(ids)
    if "finish" in parts:
        ledger.finish = lambda connection, worker, outcomes, now: None


class Tenths:
    """Wall time of each call of the ledger functions named, in order."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.calls: dict[str, list[float]] = {name: [] for name in names}
        for name in names:
            setattr(ledger, name, self._timed(name, getattr(ledger, name)))

    def _timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.calls[name].append(time.perf_counter() - started)

        return timed

    def clear(self) -> None:
        for calls in self.calls.values():
            calls.clear()

    def report(self) -> None:
        for name, calls in self.calls.items():
            size = max(1, len(calls) // 10)
            tenths = [calls[i * size : (i + 1) * size] for i in range(10)]
            means = ", ".join(f"{sum(t) / len(t) * 1e3:.2f}" for t in tenths if t)
            print(f"  {name}: ms a call, each tenth of the {len(calls)} calls: {means}")


def under_callgrind() -> bool:
    return "vgpreload" in os.environ.get("LD_PRELOAD", "")


def instrumentation(on: bool) -> None:
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], check=True, capture_output=True
    )


def raw_cost(provider: str, contacts: int, rounds: int, profiled: bool) -> int:
    for name in ("no_proxy", "NO_PROXY"):
        os.environ[name] = "127.0.0.1,localhost"
    with spawn(record=False) as fake:
        send = VARIANTS[provider][0](fake)
        run(send, range(32), 8)
        costs = []
        for _ in range(rounds):
            if profiled:
                instrumentation(True)
            _seconds, cpu = run(send, range(contacts), 8)
            costs.append(cpu / contacts)
            if profiled:
                instrumentation(False)
    print(
        f"{provider} raw SDK: {min(costs) * 1e6:.0f} µs of CPU a message (rounds: {', '.join(f'{c * 1e6:.0f}' for c in costs)})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=2000, help="contacts a round (400 under callgrind)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--provider", default="sendgrid", choices=["sendgrid", "twilio"])
    parser.add_argument("--database-url", help="a PostgreSQL server (a scratch schema) instead of SQLite")
    parser.add_argument("--raw", action="store_true", help="the raw SDK's cost a message instead")
    parser.add_argument(
        "--without", default="", help=f"parts replaced by ones that do nothing: {','.join(PARTS)}"
    )
    parser.add_argument(
        "--tenths", action="store_true", help="time claiming, marking and recording, by tenth of the send"
    )
    args = parser.parse_args(argv)
    parts = {p for p in args.without.split(",") if p}
    if not parts <= set(PARTS):
        parser.error(f"--without takes {', '.join(PARTS)}")
    configure("warning")
    profiled = under_callgrind()
    contacts, rounds = (400, 1) if profiled else (args.contacts, args.rounds)
    if args.raw:
        return raw_cost(args.provider, contacts, rounds, profiled)
    with (
        spawn(record=False) as fake,
        tempfile.TemporaryDirectory(prefix="bench-cost-") as folder,
        scratch_schema(args.database_url) as url,
    ):
        deployment = Deployment(Path(folder), args.provider, fake, 1, url)
        try:
            deployment.dispatcher.channels = {
                name: AnswersAtOnce() for name in deployment.dispatcher.channels
            }
            deployment.dispatcher.concurrency = 8  # chunks as with 8 senders; each sent in turn
            deployment.add_due(32)
            deployment.dispatch(32)
            without(parts)
            tenths = Tenths(("claim_due", "mark_sending", "finish")) if args.tenths else None
            costs = []
            for _ in range(rounds):
                deployment.add_due(contacts)
                if tenths is not None:
                    tenths.clear()
                if profiled:
                    instrumentation(True)
                cpu = time.process_time()
                deployment.dispatch(contacts)
                costs.append((time.process_time() - cpu) / contacts)
                if profiled:
                    instrumentation(False)
        finally:
            deployment.close()
    database = "postgresql" if args.database_url else "sqlite"
    print(
        f"{args.provider} {database} without={','.join(sorted(parts)) or '-'}: "
        f"{min(costs) * 1e6:.0f} µs of CPU a message (rounds: {', '.join(f'{c * 1e6:.0f}' for c in costs)})"
    )
    if tenths is not None:
        tenths.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of our channels against the raw provider SDKs, both on the loopback fake.

    .venv/bin/python bench/bench_channels.py --messages 5000 --threads 8 --rounds 4

For each provider, the same messages are sent from a thread pool (a) with the SDK used
directly, as its README shows, and (b) through SendGridChannel / TwilioChannel. The runs are
interleaved A B B A … so drift of the machine (CPU frequency, other load) falls on both alike.
The fake runs in its own process so its request handling does not share our interpreter's GIL.
Prints messages per second for each and the channel/SDK ratio (1.00 = no overhead), and the
client CPU per message, which is steadier than throughput when the fake shares the machine.

The functions are importable so the end-to-end dispatcher benchmark can reuse them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Asm, Category, CustomArg, From, GroupId, Mail, To
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from outreach.channels import OutgoingMessage
from outreach.channels.sendgrid import SendGridChannel
from outreach.channels.twilio import TwilioChannel
from outreach.testing.fakeproviders import FakeProviders, RemoteFakeProviders, spawn

Send = Callable[[int], object]

SERVICE = "MG" + "b" * 32
FROM_EMAIL = "care@example.com"
GROUP = 4242
TIMEOUT = 10.0
HTML = (
    "<html dir='ltr'><body><p>Hello Ann,</p>"
    + "<p>Your order #A-1001 is running late.</p>" * 40
    + "</body></html>"
)
TEXT = "Hello Ann,\n" + "Your order #A-1001 is running late.\n" * 40
SMS = "Souq Example: your order A-1001 is late; new estimate Tue 24 Nov. Reply STOP to opt out."


def email(index: int) -> OutgoingMessage:
    return OutgoingMessage(
        outbox_id=f"ob-{index}",
        channel="email",
        to=f"customer{index}@example.com",
        to_name="Ann Lee",
        customer_id=f"c-{index}",
        rule="late-delivery",
        locale="en",
        subject="Your order is late",
        text=TEXT,
        html=HTML,
    )


def sms(index: int) -> OutgoingMessage:
    return OutgoingMessage(
        outbox_id=f"ob-{index}",
        channel="sms",
        to=f"+4477009{index % 100000:05d}",
        customer_id=f"c-{index}",
        rule="late-delivery",
        locale="en",
        sms=SMS,
    )


def twilio_sdk(fake: FakeProviders | RemoteFakeProviders) -> Send:
    """The Twilio SDK used directly: stock client and HTTP client, with a timeout."""
    client = Client(
        fake.twilio_account_sid, fake.twilio_auth_token, http_client=TwilioHttpClient(timeout=TIMEOUT)
    )
    client.api.base_url = fake.url  # the only way into a stock client's host
    messages = client.api.v2010.account.messages

    def send(index: int) -> object:
        message = sms(index)
        return messages.create(
            to=message.to,
            body=message.sms,
            messaging_service_sid=SERVICE,
            status_callback=f"https://outreach.example.com/webhooks/twilio/status?outbox_id={message.outbox_id}",
        ).sid

    return send


def twilio_channel(fake: FakeProviders | RemoteFakeProviders) -> Send:
    channel = TwilioChannel(
        account_sid=fake.twilio_account_sid,
        auth_token=fake.twilio_auth_token,
        messaging_service_sid=SERVICE,
        base_url=fake.url,
        timeout=TIMEOUT,
        public_url="https://outreach.example.com",
    )
    return lambda index: channel.send(sms(index))


def sendgrid_sdk(fake: FakeProviders | RemoteFakeProviders) -> Send:
    """The SendGrid SDK used directly: the same mail built with its helpers, with a timeout."""
    client = SendGridAPIClient(api_key=fake.sendgrid_api_key, host=fake.url)
    client.client.timeout = TIMEOUT

    def send(index: int) -> object:
        message = email(index)
        mail = Mail(
            from_email=From(FROM_EMAIL, "Souq Example"),
            to_emails=To(message.to, message.to_name),
            subject=message.subject,
            plain_text_content=message.text,
            html_content=message.html,
            is_multiple=True,
        )
        mail.add_custom_arg(CustomArg("outbox_id", message.outbox_id, p=0))
        mail.add_category(Category(message.rule))
        mail.asm = Asm(GroupId(GROUP))
        return client.send(mail).headers.get("X-Message-Id")

    return send


def sendgrid_channel(fake: FakeProviders | RemoteFakeProviders) -> Send:
    channel = SendGridChannel(
        api_key=fake.sendgrid_api_key,
        from_email=FROM_EMAIL,
        from_name="Souq Example",
        host=fake.url,
        unsubscribe_group_id=GROUP,
        categories=("outreach",),
        timeout=TIMEOUT,
    )
    return lambda index: channel.send(email(index))


VARIANTS: dict[str, tuple[Callable[[Any], Send], Callable[[Any], Send]]] = {
    "twilio": (twilio_sdk, twilio_channel),
    "sendgrid": (sendgrid_sdk, sendgrid_channel),
}


def run(send: Send, indices: range, threads: int) -> tuple[float, float]:
    """Send one message per index from `threads` threads; wall seconds and this process's CPU seconds."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        started, cpu = time.perf_counter(), time.process_time()
        for _ in pool.map(send, indices):
            pass
        return time.perf_counter() - started, time.process_time() - cpu


@dataclass
class Tally:
    messages: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    rates: list[float] = field(default_factory=list)

    def add(self, messages: int, seconds: float, cpu: float) -> None:
        self.messages += messages
        self.seconds += seconds
        self.cpu += cpu
        self.rates.append(messages / seconds)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us(self) -> float:
        """Client CPU per message: steadier than throughput on a machine shared with the fake."""
        return self.cpu / self.messages * 1e6


def compare(
    fake: FakeProviders | RemoteFakeProviders, provider: str, messages: int, threads: int, rounds: int
) -> dict[str, Any]:
    """Interleaved rounds of SDK and channel sends for one provider; their throughputs and ratio."""
    make_sdk, make_channel = VARIANTS[provider]
    senders = {"sdk": make_sdk(fake), "channel": make_channel(fake)}
    for send in senders.values():
        run(send, range(threads * 4), threads)  # warm connections, imports and caches
    tallies = {name: Tally() for name in senders}
    per_round = max(1, messages // rounds)
    for round_index in range(rounds):
        order = ["sdk", "channel"] if round_index % 2 == 0 else ["channel", "sdk"]
        for name in order:
            start = (round_index * 2 + order.index(name)) * per_round
            tallies[name].add(per_round, *run(senders[name], range(start, start + per_round), threads))
    sdk, channel = tallies["sdk"], tallies["channel"]
    return {
        "provider": provider,
        "threads": threads,
        "messages": sdk.messages,
        "sdk_per_s": round(sdk.rate, 1),
        "channel_per_s": round(channel.rate, 1),
        "ratio": round(channel.rate / sdk.rate, 3),
        "sdk_round_median_per_s": round(statistics.median(sdk.rates), 1),
        "channel_round_median_per_s": round(statistics.median(channel.rates), 1),
        "sdk_cpu_us_per_msg": round(sdk.cpu_us),
        "channel_cpu_us_per_msg": round(channel.cpu_us),
        "cpu_ratio": round(channel.cpu_us / sdk.cpu_us, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=5000, help="messages per variant and provider")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (ABBA…)")
    parser.add_argument("--providers", default="twilio,sendgrid")
    parser.add_argument("--in-process", action="store_true", help="run the fake in this process")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    args = parser.parse_args(argv)
    for name in ("no_proxy", "NO_PROXY"):
        os.environ[name] = "127.0.0.1,localhost"

    fake: FakeProviders | RemoteFakeProviders
    fake = FakeProviders(record=False).start() if args.in_process else spawn(record=False)
    try:
        results = [
            compare(fake, provider.strip(), args.messages, args.threads, args.rounds)
            for provider in args.providers.split(",")
        ]
    finally:
        fake.stop() if isinstance(fake, FakeProviders) else fake.close()
    if args.json:
        print(json.dumps({"results": results}, indent=2))
        return 0
    print(
        f"{'provider':<10}{'threads':>8}{'messages':>10}{'SDK msg/s':>12}{'channel msg/s':>15}{'ratio':>8}"
        f"{'SDK CPU µs/msg':>17}{'channel CPU µs/msg':>21}{'ratio':>8}"
    )
    for r in results:
        print(
            f"{r['provider']:<10}{r['threads']:>8}{r['messages']:>10}{r['sdk_per_s']:>12.0f}"
            f"{r['channel_per_s']:>15.0f}{r['ratio']:>8.2f}"
            f"{r['sdk_cpu_us_per_msg']:>17}{r['channel_cpu_us_per_msg']:>21}{r['cpu_ratio']:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A channel that prints each message to a terminal, for people watching a run by eye."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from outreach.channels.base import EMAIL, OutgoingMessage, Receipt


def console_receipt_id(outbox_id: str) -> str:
    """The receipt id of a printed message: a function of the outbox id alone."""
    return f"console:{outbox_id}"


class ConsoleChannel:
    """Writes each message as one readable block; sends nothing anywhere."""

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> Receipt:
        block = format_message(message)
        # Resolved at send time so pytest's capsys and redirected stdout see the output.
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(block)
            stream.flush()
        return Receipt(provider=self.name, provider_id=console_receipt_id(message.outbox_id))


def format_message(message: OutgoingMessage) -> str:
    """The block the console channel prints: a header line, then the message as sent."""
    recipient = f"{message.to_name} <{message.to}>" if message.to_name else message.to
    lines = [
        f"── {message.channel} to {recipient} · rule {message.rule} · customer {message.customer_id}"
        f" · {message.locale} · outbox {message.outbox_id}",
    ]
    if message.channel == EMAIL:
        lines.append(f"Subject: {message.subject}")
        lines.append("")
        lines.append((message.text or message.html or "").rstrip())
    else:
        lines.append((message.sms or "").rstrip())
    return "\n".join(lines) + "\n\n"

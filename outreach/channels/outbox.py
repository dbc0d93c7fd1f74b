"""The default channel: one JSON line per message appended to a file (`var/outbox.jsonl`).

It serves the demo, dry runs and tests. Several threads and processes may append at once:
each line is written whole by one `write` on an `O_APPEND` descriptor while holding an
in-process lock and an advisory `flock`, so lines never interleave or tear.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from outreach.channels.base import Clock, OutgoingMessage, Receipt
from outreach.clock import utcnow
from outreach.errors import TransientDeliveryError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; O_APPEND alone must do there.
    fcntl = None  # type: ignore[assignment]  # the module, or None where it does not exist


def outbox_receipt_id(outbox_id: str) -> str:
    """The receipt id of a message in the outbox file: a function of the outbox id alone."""
    return f"outbox:{outbox_id}"


class OutboxChannel:
    """Appends each message as one JSON object on its own line; sends nothing anywhere."""

    name = "outbox"

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False, clock: Clock = utcnow) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._clock = clock
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> Receipt:
        receipt = Receipt(provider=self.name, provider_id=outbox_receipt_id(message.outbox_id))
        line = json.dumps(self._record(message, receipt), ensure_ascii=False, separators=(",", ":"))
        try:
            self._append((line + "\n").encode("utf-8"))
        except OSError as exc:
            # A full disk or a missing permission may clear up; nothing reached the file whole.
            raise TransientDeliveryError(
                f"outbox {message.outbox_id!r}: cannot append to {self.path}: {exc.strerror or exc}"
                " (check the disk and the permissions of paths.outbox)",
                code="outbox-write",
            ) from exc
        return receipt

    def _record(self, message: OutgoingMessage, receipt: Receipt) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": receipt.provider_id,
            "outbox_id": message.outbox_id,
            "written_at": self._clock().isoformat().replace("+00:00", "Z"),
            "channel": message.channel,
            "to": message.to,
            "to_name": message.to_name,
            "customer_id": message.customer_id,
            "rule": message.rule,
            "locale": message.locale,
        }
        for field in ("subject", "text", "html", "sms"):
            value = getattr(message, field)
            if value is not None:
                record[field] = value
        if message.test:
            record["test"] = True
        return record

    def _append(self, data: bytes) -> None:
        # Opened per message so a rotated or deleted file is recreated instead of written unseen.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                view = memoryview(data)
                while view:
                    # A short write is possible for large lines; the lock keeps the rest adjacent.
                    written = os.write(fd, view)
                    view = view[written:]
                if self._fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)  # also releases the flock

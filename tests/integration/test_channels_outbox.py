"""The outbox file stays one whole JSON line per message under concurrent threads and processes."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from outreach.channels import OutboxChannel, OutgoingMessage

# Lines far larger than a pipe buffer or a page, so a torn or interleaved write would show.
BODY = "<p>" + "late parcel " * 6000 + "</p>"


def message(outbox_id: str) -> OutgoingMessage:
    return OutgoingMessage(
        outbox_id=outbox_id,
        channel="email",
        to="ann@example.com",
        customer_id="c-1",
        rule="late-delivery",
        locale="en",
        subject="Late",
        html=BODY,
    )


def written_ids(path: Path) -> list[str]:
    ids = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert record["html"] == BODY
        ids.append(record["outbox_id"])
    return ids


def test_threads_sharing_one_outbox_write_every_message_as_one_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    outbox = OutboxChannel(path)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: outbox.send(message(f"ob-{i}")), range(400)))
    assert sorted(written_ids(path)) == sorted(f"ob-{i}" for i in range(400))


def _append_from_process(path: str, prefix: str, count: int) -> None:
    outbox = OutboxChannel(path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: outbox.send(message(f"{prefix}-{i}")), range(count)))


def test_processes_appending_to_one_outbox_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_from_process, args=(str(path), f"p{n}", 150)) for n in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    expected = {f"p{n}-{i}" for n in range(3) for i in range(150)}
    ids = written_ids(path)
    assert len(ids) == len(expected) and set(ids) == expected

"""The outbox and console channels record messages locally and never fail for provider reasons."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from outreach.channels import Channel, ConsoleChannel, OutboxChannel, OutgoingMessage, Receipt
from outreach.errors import TransientDeliveryError

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)

EMAIL = OutgoingMessage(
    outbox_id="ob-1",
    channel="email",
    to="ann@example.com",
    to_name="Ann Lee",
    customer_id="c-1",
    rule="late-delivery",
    locale="en",
    subject="Your parcel is late",
    text="Sorry.",
    html="<p>Sorry.</p>",
)
SMS = OutgoingMessage(
    outbox_id="ob-2",
    channel="sms",
    to="+201001234567",
    customer_id="c-2",
    rule="late-delivery",
    locale="ar",
    sms="طلبك متأخر",
)


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_local_channels_satisfy_the_channel_protocol(tmp_path: Path) -> None:
    assert isinstance(OutboxChannel(tmp_path / "outbox.jsonl"), Channel)
    assert isinstance(ConsoleChannel(io.StringIO()), Channel)


def test_the_outbox_appends_one_json_line_per_message_with_everything_rendered(tmp_path: Path) -> None:
    path = tmp_path / "var" / "outbox.jsonl"
    outbox = OutboxChannel(path, clock=lambda: NOW)
    outbox.send(EMAIL)
    outbox.send(SMS)
    first, second = lines(path)
    assert first == {
        "id": "outbox:ob-1",
        "outbox_id": "ob-1",
        "written_at": "2026-11-24T09:30:00Z",
        "channel": "email",
        "to": "ann@example.com",
        "to_name": "Ann Lee",
        "customer_id": "c-1",
        "rule": "late-delivery",
        "locale": "en",
        "subject": "Your parcel is late",
        "text": "Sorry.",
        "html": "<p>Sorry.</p>",
    }
    assert second["sms"] == "طلبك متأخر" and "subject" not in second


def test_the_outbox_keeps_arabic_readable_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    OutboxChannel(path).send(SMS)
    assert "طلبك متأخر" in path.read_text(encoding="utf-8")


def test_the_outbox_receipt_is_a_function_of_the_outbox_id_alone(tmp_path: Path) -> None:
    first = OutboxChannel(tmp_path / "a.jsonl").send(EMAIL)
    again = OutboxChannel(tmp_path / "b.jsonl").send(EMAIL)
    assert first == again == Receipt(provider="outbox", provider_id="outbox:ob-1")


def test_the_outbox_recreates_a_file_deleted_between_sends(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    outbox = OutboxChannel(path)
    outbox.send(EMAIL)
    path.unlink()
    outbox.send(SMS)
    assert [line["outbox_id"] for line in lines(path)] == ["ob-2"]


def test_an_outbox_that_cannot_be_written_is_a_transient_error_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(TransientDeliveryError, match="not-a-directory") as caught:
        OutboxChannel(blocker / "outbox.jsonl").send(EMAIL)
    assert caught.value.code == "outbox-write"


def test_the_console_prints_the_email_as_the_customer_would_read_it() -> None:
    stream = io.StringIO()
    receipt = ConsoleChannel(stream).send(EMAIL)
    assert stream.getvalue() == (
        "── email to Ann Lee <ann@example.com> · rule late-delivery · customer c-1 · en · outbox ob-1\n"
        "Subject: Your parcel is late\n\nSorry.\n\n"
    )
    assert receipt == Receipt(provider="console", provider_id="console:ob-1")


def test_the_console_prints_an_sms_body() -> None:
    stream = io.StringIO()
    ConsoleChannel(stream).send(SMS)
    assert stream.getvalue().splitlines()[1] == "طلبك متأخر"


def test_the_console_writes_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleChannel().send(SMS)
    assert "outbox ob-2" in capsys.readouterr().out

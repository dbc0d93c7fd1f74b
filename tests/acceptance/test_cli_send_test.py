"""`outreach send-test` and `outreach studio` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from outreach.cli import cli
from outreach.state import ledger
from outreach.state.test_sends import test_sends
from outreach.testing.fakeproviders import TWILIO, FakeProviders
from tests.studio_world import NOW, TEST_EMAIL, TEST_PHONE, write_workspace
from tests.worlds import customer, late_order

AT = NOW.isoformat()


def outreach(settings: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--settings", str(settings), *args], catch_exceptions=False, env=env)


def outbox(root: Path) -> list[dict[str, Any]]:
    path = root / "var" / "outbox.jsonl"
    return (
        [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
    )


def test_send_test_renders_as_the_customer_and_writes_one_line_marked_as_a_test(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path)
    result = outreach(
        settings, "send-test", "late-delivery", "--customer", "c-1005", "--to", TEST_EMAIL, "--json"
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["test"], document["outcome"], document["channel"], document["locale"]) == (
        True,
        "sent",
        "email",
        "ar",
    )
    assert document["subject"].startswith("[TEST] تأخّر طلبك")
    [line] = outbox(tmp_path)
    assert (line["test"], line["to"], line["customer_id"], line["outbox_id"]) == (
        True,
        TEST_EMAIL,
        "c-1005",
        document["id"],
    )
    assert line["subject"] == document["subject"] and line["text"].startswith("[TEST] ")


def test_a_test_sms_starts_with_test_and_counts_its_segments(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path)
    result = outreach(settings, "send-test", "late-delivery", "--customer", "c-1001", "--to", TEST_PHONE)
    assert result.exit_code == 0, result.output
    assert "test sent: late-delivery (sms, en) as c-1001, o-2001" in result.stdout
    assert "[TEST] Souq Example: sorry, your order o-2001 is running late." in result.stdout
    # 154 characters with the opt-out line, 161 with "[TEST] ": a test can cost a segment more.
    assert "[2 segment(s), GSM-7]" in result.stdout
    [line] = outbox(tmp_path)
    assert line["sms"].startswith("[TEST] ")


def test_an_address_not_allow_listed_is_refused_with_exit_1_and_nothing_sent(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path)
    result = outreach(
        settings, "send-test", "late-delivery", "--customer", "c-1001", "--to", "ceo@example.com"
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "ceo@example.com is not a test recipient: tests go only to the addresses in settings "
        "[studio] test_recipients (marketing@example.com, +442079460999)"
    )
    assert outbox(tmp_path) == []


def test_a_channel_the_address_cannot_take_and_an_unknown_rule_are_refused(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path)
    mismatch = outreach(
        settings, "send-test", "late-delivery", "--customer", "c-1001", "--to", TEST_EMAIL, "--channel", "sms"
    )
    assert mismatch.exit_code == 1
    assert "marketing@example.com is an email address: it can get a test email, not sms" in mismatch.stderr
    unknown = outreach(settings, "send-test", "late-delivry", "--customer", "c-1001", "--to", TEST_EMAIL)
    assert unknown.exit_code == 1 and "did you mean 'late-delivery'?" in unknown.stderr
    missing = outreach(settings, "send-test", "late-delivery", "--to", TEST_EMAIL)
    assert missing.exit_code == 2


def test_a_test_counts_against_no_cap_and_the_real_contact_still_goes_out(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path, delivery={"max_per_day": 1, "quiet_hours": "off"})
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'var' / 'outreach.db'}")
    assert outreach(settings, "db", "upgrade").exit_code == 0
    customer(engine, "c-1")
    late_order(engine, "o-1", "c-1", NOW)
    for _ in range(2):
        sent = outreach(settings, "send-test", "late-delivery", "--customer", "c-1", "--to", TEST_EMAIL)
        assert sent.exit_code == 0, sent.output
    run = outreach(settings, "run", "--once", "--now", AT)
    assert run.exit_code == 0, run.output
    lines = outbox(tmp_path)
    assert [(line.get("test", False), line["to"]) for line in lines] == [
        (True, TEST_EMAIL),
        (True, TEST_EMAIL),
        (False, "+447700900123"),
    ]
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(test_sends)).scalar() == 2
        states = connection.execute(sa.select(ledger.contacts.c.state)).scalars().all()
        assert states == ["sent"]
    engine.dispose()


def test_in_live_mode_a_test_sms_goes_through_twilio_with_smart_encoding_when_set(
    tmp_path: Path, fake_providers: FakeProviders
) -> None:
    settings = write_workspace(
        tmp_path,
        delivery={"mode": "live"},
        twilio={
            "messaging_service_sid": "MG" + "1" * 32,
            "base_url": fake_providers.url,
            "smart_encoding": True,
        },
        sendgrid={"host": fake_providers.url},
    )
    env = {**os.environ, **fake_providers.environ()}
    result = outreach(
        settings, "send-test", "late-delivery", "--customer", "c-1001", "--to", TEST_PHONE, env=env
    )
    assert result.exit_code == 0, result.output
    [request] = fake_providers.requests(TWILIO)
    assert request.form["To"] == TEST_PHONE and request.form["Body"].startswith("[TEST] Souq Example")
    assert request.form["SmartEncoded"] == "true"
    assert "StatusCallback" not in request.form  # no public_url: nothing would call back
    assert outbox(tmp_path) == []


@pytest.mark.parametrize("said", [None, "refused\x00 \ud83d number"])
def test_a_provider_refusal_is_recorded_as_a_failed_test_and_exits_1(
    tmp_path: Path, fake_providers: FakeProviders, said: str | None
) -> None:
    settings = write_workspace(
        tmp_path,
        delivery={"mode": "live"},
        twilio={"messaging_service_sid": "MG" + "1" * 32, "base_url": fake_providers.url},
        sendgrid={"host": fake_providers.url},
    )
    # A refusal's text may hold what neither database stores (a NUL, a lone surrogate).
    fake_providers.fail_next(TWILIO, status=400, twilio_code=21211, message=said)
    env = {**os.environ, **fake_providers.environ()}
    result = outreach(
        settings, "send-test", "late-delivery", "--customer", "c-1001", "--to", TEST_PHONE, "--json", env=env
    )
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["outcome"] == "failed" and "21211" in document["error"]
    if said is not None:
        assert "refused\ufffd \ufffd number" in document["error"]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'var' / 'outreach.db'}")
    with engine.connect() as connection:
        [row] = connection.execute(sa.select(test_sends)).mappings().all()
        assert (row["outcome"], row["recipient"], row["error"]) == ("failed", TEST_PHONE, document["error"])
        assert connection.execute(sa.select(sa.func.count()).select_from(ledger.suppressions)).scalar() == 0
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_outreach_studio_serves_the_page_on_loopback_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    settings = write_workspace(tmp_path)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "outreach", "--settings", str(settings), "studio", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"outreach studio on http://127.0.0.1:{port}/")
        deadline = time.monotonic() + 20
        while True:
            try:
                catalog = httpx.get(f"http://127.0.0.1:{port}/api/catalog", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the studio did not answer"
                time.sleep(0.1)
        assert [r["name"] for r in catalog["rules"]] == [
            "late-delivery",
            "stalled-checkout",
            "detractor-follow-up",
        ]
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert "outreach studio" in page.text and "/static/studio.js" in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/static/studio.js", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0

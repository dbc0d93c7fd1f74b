"""Respect between decision and send, on SQLite and PostgreSQL: one decision point for caps, the
send-time gate (consent, quiet hours, pause), claims owned by their dispatcher, tasks for people.

Each test builds a small deployment (tests/worlds.py), decides and dispatches at explicit instants
through the outbox channel or the fake providers, and reads what was sent and what the ledger says.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from outreach import controls
from outreach.app import App
from outreach.channels import OutgoingMessage, Receipt
from outreach.cli import cli
from outreach.daemon.http import Health, Inbound, make_app
from outreach.daemon.metrics import Metrics
from outreach.errors import TransientDeliveryError
from outreach.feedback import Secrets
from outreach.state import ledger
from outreach.state.models import Customer, Order, SurveyResponse
from outreach.tick import run_tick
from outreach.vocabulary import LIVE_STATES
from tests.integration.http_app import SendGridKey
from tests.worlds import (
    NOON,
    World,
    build_world,
    contact_of,
    contact_rows,
    customer,
    insert,
    late_order,
    stalled_checkout,
)

# 22:00 in London on a Tuesday: inside the default quiet hours (21:00-09:00).
TEN_PM = datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
NINE_AM = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def world(tmp_path: Path, database_url: str, engine: Engine) -> Iterator[World]:
    built = build_world(tmp_path, database_url)
    yield built
    built.app.close()


def capped(tmp_path: Path, database_url: str) -> World:
    return build_world(tmp_path, database_url, max_per_day=1, max_per_week=5)


def set_customer(engine: Engine, customer_id: str, **values: Any) -> None:
    table = Customer.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(sa.update(table).where(table.c.id == customer_id).values(**values))


def live_per_customer_day(world: World) -> Counter[tuple[str, str]]:
    return Counter(
        (c.customer_id, (c.send_at or c.decided_at).date().isoformat())
        for c in contact_rows(world.engine)
        if c.state in LIVE_STATES
    )


# -- one decision point ---------------------------------------------------------------------------


def test_two_rules_decided_at_once_in_two_threads_never_both_take_a_customer_s_only_slot(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = capped(tmp_path, database_url)
    for n in range(25):
        customer(world.engine, f"c{n}")
        late_order(world.engine, f"o{n}", f"c{n}")
        stalled_checkout(world.engine, f"k{n}", f"c{n}")
    rules = {rule.name: rule for rule in world.app.load_rules()}
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def decide(name: str) -> None:
        try:
            start.wait()
            run_tick(world.app, [rules[name]], NOON)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=decide, args=(name,)) for name in ("late-delivery", "stalled-checkout")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = live_per_customer_day(world)
    assert len(counts) == 25 and max(counts.values()) == 1, "a customer got two contacts in one day"
    world.app.close()


def test_rules_due_together_are_decided_together_and_the_higher_priority_wins(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = capped(tmp_path, database_url)
    for n in range(10):
        customer(world.engine, f"c{n}")
        late_order(world.engine, f"o{n}", f"c{n}")
        stalled_checkout(world.engine, f"k{n}", f"c{n}")
    world.tick(NOON)
    assert Counter(m["rule"] for m in world.outbox()) == {"late-delivery": 10}
    world.app.close()


def test_a_higher_priority_decided_later_takes_the_place_of_a_lower_one_waiting_for_the_morning(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = capped(tmp_path, database_url)
    customer(world.engine, "c1", timezone="Europe/London")
    stalled_checkout(world.engine, "k1", "c1", now=TEN_PM)
    rules = {rule.name: rule for rule in world.app.load_rules()}
    run_tick(world.app, [rules["stalled-checkout"]], TEN_PM)
    assert contact_of(world.engine, "stalled-checkout", "k1").send_at == NINE_AM
    late_order(world.engine, "o1", "c1", now=TEN_PM)
    run_tick(world.app, [rules["late-delivery"]], TEN_PM + timedelta(minutes=90))
    stalled = contact_of(world.engine, "stalled-checkout", "k1")
    assert stalled.state == "skipped"
    assert stalled.reason.startswith("gave its place to late-delivery (priority 20 over 10)")
    assert stalled.recheck_at == datetime(2026, 11, 26, 0, 0, tzinfo=UTC)
    world.tick(NINE_AM)
    assert [m["rule"] for m in world.outbox()] == ["late-delivery"]
    world.app.close()


# -- the send-time gate: consent --------------------------------------------------------------------


def waiting_sms(world: World) -> None:
    """c1's late parcel, decided at 22:00 in London: an SMS waiting for 09:00."""
    customer(world.engine, "c1", timezone="Europe/London")
    late_order(world.engine, "o1", "c1", now=TEN_PM)
    world.tick(TEN_PM)
    row = contact_of(world.engine, "late-delivery", "o1")
    assert (row.state, row.channel, row.send_at) == ("pending", "sms", NINE_AM)


def test_an_sms_opt_out_ingested_while_it_waits_moves_the_contact_to_email_at_once(
    world: World, tmp_path: Path
) -> None:
    waiting_sms(world)
    update = tmp_path / "customers.jsonl"
    update.write_text(json.dumps({"id": "c1", "sms_opt_in": False}) + "\n")
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text("")
    environ = {
        "OUTREACH_DATABASE__URL": world.settings.database.url,
        "OUTREACH_PATHS__RULES": str(world.root / "rules"),
        "OUTREACH_PATHS__TEMPLATES": str(world.root / "templates"),
    }
    result = CliRunner().invoke(cli, ["--settings", str(settings_file), "ingest", str(update)], env=environ)
    assert result.exit_code == 0, result.output
    row = contact_of(world.engine, "late-delivery", "o1")
    assert (row.state, row.channel) == ("pending", "email")
    assert "no SMS consent" in row.reason
    world.tick(NINE_AM)
    assert [(m["channel"], m["to"]) for m in world.outbox()] == [("email", "c1@example.com")]


def test_consent_withdrawn_behind_the_ledger_s_back_is_caught_by_the_gate_and_nothing_goes_by_sms(
    world: World,
) -> None:
    waiting_sms(world)
    set_customer(world.engine, "c1", sms_opt_in=False, email_opt_in=False)
    world.tick(NINE_AM)
    assert world.outbox() == []
    row = contact_of(world.engine, "late-delivery", "o1")
    assert row.state == "suppressed" and "no SMS consent" in row.reason


def test_a_suppression_added_while_it_waits_reroutes_at_send_time(world: World) -> None:
    waiting_sms(world)
    with world.engine.begin() as connection:
        ledger.add_suppression(connection, "c1", "sms", "carrier says unreachable", "30006", TEN_PM)
    world.tick(NINE_AM)
    assert [m["channel"] for m in world.outbox()] == ["email"]
    assert contact_of(world.engine, "late-delivery", "o1").channel == "email"


def test_a_bounce_posted_to_the_webhook_while_emails_wait_reroutes_or_holds_them_back_at_once(
    world: World,
) -> None:
    # Two emails waiting for 09:00 in London: a late parcel (SMS is its other channel) and a
    # detractor's apology (email only). The address bounces at 23:00.
    customer(world.engine, "c1", timezone="Europe/London")
    set_customer(world.engine, "c1", preferred_channel="email")
    late_order(world.engine, "o1", "c1", now=TEN_PM)
    insert(
        world.engine,
        SurveyResponse,
        id="s1",
        customer_id="c1",
        kind="nps",
        score=3,
        comment="late again",
        responded_at=TEN_PM - timedelta(hours=1),
        attributes={},
    )
    world.tick(TEN_PM)
    assert {(c.rule, c.state, c.channel, c.send_at) for c in contact_rows(world.engine)} == {
        ("late-delivery", "pending", "email", NINE_AM),
        ("detractor-follow-up", "pending", "email", NINE_AM),
    }
    key = SendGridKey()
    eleven_pm = TEN_PM + timedelta(hours=1)
    rules = world.app.load_rules()
    client = TestClient(
        make_app(
            lambda: Health(True, {}),
            Metrics(),
            Inbound(
                world.engine,
                Secrets(sendgrid_public_key=key.public_base64),
                clock=lambda: eleven_pm,
                rules=lambda: rules,
            ),
        )
    )
    stamp = str(int(eleven_pm.timestamp()))
    bounce = {"event": "bounce", "type": "bounce", "email": "c1@example.com", "timestamp": int(stamp)}
    body = json.dumps([{**bounce, "sg_event_id": "ev-1"}]).encode()
    response = client.post(
        "/webhooks/sendgrid/events",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": key.sign(stamp, body),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        },
    )
    assert response.status_code == 204
    late = contact_of(world.engine, "late-delivery", "o1")
    assert (late.state, late.channel, late.send_at) == ("pending", "sms", NINE_AM)
    assert "email" in late.reason and "while it waited" in late.reason
    apology = contact_of(world.engine, "detractor-follow-up", "s1")
    assert apology.state == "suppressed" and "no consented channel left" in apology.reason
    world.tick(NINE_AM)
    assert [(m["rule"], m["channel"]) for m in world.outbox()] == [("late-delivery", "sms")]


# -- the send-time gate: quiet hours and pause ------------------------------------------------------


def test_a_customer_who_moves_time_zone_while_a_contact_waits_is_not_woken_in_the_new_one(
    world: World,
) -> None:
    customer(world.engine, "c1", timezone="Europe/Berlin")
    late_order(world.engine, "o1", "c1")
    world.evaluate(NOON)  # 13:00 in Berlin: due now
    set_customer(world.engine, "c1", timezone="Pacific/Auckland")  # 01:00 there
    stats = world.dispatch(NOON)
    assert world.outbox() == [] and stats.deferred == 1
    row = contact_of(world.engine, "late-delivery", "o1")
    assert (row.state, row.send_at) == ("pending", datetime(2026, 11, 24, 20, 0, tzinfo=UTC))
    assert "quiet hours 21:00-09:00 in Pacific/Auckland" in row.reason
    world.dispatch(datetime(2026, 11, 24, 20, 0, tzinfo=UTC))
    assert len(world.outbox()) == 1


def test_a_customer_who_moves_east_while_a_contact_waits_gets_no_second_message_in_the_new_local_day(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = capped(tmp_path, database_url)
    customer(world.engine, "c1", timezone="Europe/London")
    eight_pm = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)
    late_order(world.engine, "o1", "c1", now=eight_pm)
    world.tick(eight_pm)  # Tuesday's message in London
    stalled_checkout(world.engine, "k1", "c1", now=TEN_PM)
    world.tick(TEN_PM)
    assert contact_of(world.engine, "stalled-checkout", "k1").send_at == NINE_AM  # Wednesday's
    # In Kolkata both are Wednesday: 01:30 and 14:30.
    set_customer(world.engine, "c1", timezone="Asia/Kolkata")
    world.tick(NINE_AM)
    assert [m["rule"] for m in world.outbox()] == ["late-delivery"]
    row = contact_of(world.engine, "stalled-checkout", "k1")
    assert row.state == "skipped"
    assert row.reason.startswith("at send time: daily cap reached (1 a day) by late-delivery on 2026-11-25")
    thursday = datetime(2026, 11, 25, 18, 30, tzinfo=UTC)  # 00:00 in Kolkata
    world.tick(thursday + timedelta(hours=4))  # 04:30 there: decided again, for 09:00
    world.tick(datetime(2026, 11, 26, 3, 30, tzinfo=UTC))
    assert [m["rule"] for m in world.outbox()] == ["late-delivery", "stalled-checkout"]
    world.app.close()


def test_a_backlog_held_by_a_pause_and_resumed_at_night_waits_for_the_morning(world: World) -> None:
    customer(world.engine, "c1", timezone="Asia/Kolkata")
    late_order(world.engine, "o1", "c1")
    controls.pause(world.app, "carrier outage", NOON - timedelta(hours=8))
    world.tick(NOON - timedelta(hours=7))  # 10:30 in Kolkata: decided, but paused
    assert world.outbox() == []
    controls.resume(world.app)
    night = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)  # 23:30 in Kolkata
    world.dispatch(night)
    assert world.outbox() == []
    assert contact_of(world.engine, "late-delivery", "o1").send_at == datetime(
        2026, 11, 25, 3, 30, tzinfo=UTC
    )


class Busy:
    """A channel whose provider is rate-limited for the first N sends (Retry-After 60 s)."""

    name = "busy"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[OutgoingMessage] = []

    def send(self, message: OutgoingMessage) -> Receipt:
        if self.failures > 0:
            self.failures -= 1
            raise TransientDeliveryError("rate limited", code="429", retry_after=60)
        self.sent.append(message)
        return Receipt("busy", f"busy:{message.outbox_id}")


def test_a_retry_that_would_land_in_quiet_hours_waits_for_them_to_end(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    busy = Busy(failures=1)
    world = build_world(tmp_path, database_url, channels={"email": busy, "sms": busy})
    customer(world.engine, "c1", timezone="Europe/London")
    late_order(world.engine, "o1", "c1")
    just_before_nine_pm = datetime(2026, 11, 24, 20, 59, 30, tzinfo=UTC)
    world.tick(just_before_nine_pm)
    row = contact_of(world.engine, "late-delivery", "o1")
    assert row.state == "pending" and row.send_at == NINE_AM, "the retry after 60 s would be 21:00:30"
    assert busy.sent == []
    world.dispatch(NINE_AM)
    assert len(busy.sent) == 1
    world.app.close()


# -- claims belong to the dispatcher that made them ------------------------------------------------------


class Slow:
    """A channel that takes SECONDS per message (the first one, FIRST seconds), thread-safe."""

    name = "slow"

    def __init__(self, seconds: float, first: float | None = None) -> None:
        self.seconds, self.first = seconds, first
        self.sent: list[str] = []
        self.sending = threading.Event()  # set when the first message starts
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> Receipt:
        self.sending.set()
        with self._lock:
            first = not self.sent and self.first is not None
        time.sleep(self.first if first and self.first is not None else self.seconds)
        with self._lock:
            self.sent.append(message.outbox_id)
        return Receipt("slow", f"slow:{message.outbox_id}")


def race(world: World, channel: Slow, lease: float) -> int:
    """Dispatcher A claims one batch and works through it while dispatcher B, from A's first send
    on, keeps trying to take over. Returns how many B sent."""
    world.channels = {"email": channel, "sms": channel}
    first = world.dispatcher("worker-a", lease=timedelta(seconds=lease), batch=50)
    second = world.dispatcher("worker-b", lease=timedelta(seconds=lease), batch=50)
    done = threading.Event()
    taken: list[int] = []

    def other() -> None:
        channel.sending.wait(10)
        while not done.is_set():
            taken.append(second.dispatch_once(datetime.now(UTC)).sent)
            time.sleep(0.05)

    thread = threading.Thread(target=other)
    try:
        thread.start()
        first.dispatch_once(datetime.now(UTC), clock=lambda: datetime.now(UTC))
        time.sleep(lease * 2)
    finally:
        done.set()
        thread.join()
        first.close()
        second.close()
    return sum(taken)


def test_a_lease_shorter_than_a_batch_is_renewed_and_nothing_is_sent_twice(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = build_world(tmp_path, database_url, quiet_hours="off")
    for n in range(8):
        customer(world.engine, f"c{n}")
        late_order(world.engine, f"o{n}", f"c{n}")
    world.evaluate(NOON)
    slow = Slow(seconds=0.2)  # 8 messages one at a time: 1.6 s, twice the lease
    assert race(world, slow, lease=0.8) == 0, "the other worker took over a batch still being worked"
    assert sorted(Counter(slow.sent).values()) == [1] * 8, "a contact was sent twice"
    assert {c.state for c in contact_rows(world.engine)} == {"sent"}
    world.app.close()


def test_a_claim_taken_over_after_its_lease_ran_out_is_sent_by_its_new_owner_only(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = build_world(tmp_path, database_url, quiet_hours="off")
    for n in range(4):
        customer(world.engine, f"c{n}")
        late_order(world.engine, f"o{n}", f"c{n}")
    world.evaluate(NOON)
    # The first send outlasts the lease: the other worker recovers and sends what A still held.
    slow = Slow(seconds=0.01, first=1.0)
    assert race(world, slow, lease=0.3) == 3, "the other worker sent what A still held"
    assert sorted(Counter(slow.sent).values()) == [1] * 4, "a contact was sent twice"
    states = Counter(c.state for c in contact_rows(world.engine))
    assert states == {"sent": 4}, "A's late answer records its send over `unknown`"
    world.app.close()


# -- tasks for people ----------------------------------------------------------------------------------


def detractor(world: World, cid: str = "c1", score: int = 2) -> None:
    customer(world.engine, cid, phone="+447700900123")
    insert(
        world.engine,
        SurveyResponse,
        id=f"s-{cid}",
        customer_id=cid,
        kind="nps",
        score=score,
        comment="my parcel never came",
        responded_at=NOON - timedelta(hours=1),
        attributes={},
    )


def test_a_detractor_whose_day_is_full_still_gets_a_person_on_the_phone(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = build_world(tmp_path, database_url, max_per_day=0)
    detractor(world)
    world.tick(NOON)
    assert world.outbox() == []
    assert contact_of(world.engine, "detractor-follow-up", "s-c1").state == "skipped"
    with world.engine.connect() as connection:
        [task] = ledger.list_tasks(connection)
    assert task.detail["record"]["score"] == 2
    assert task.detail["record"]["comment"] == "my parcel never came"
    assert task.detail["customer"]["phone"] == "+447700900123"
    assert task.detail["message"]["decision"] == "skipped"
    world.app.close()


@pytest.fixture
def flaky_webhook() -> Iterator[tuple[str, list[int]]]:
    """An endpoint that answers 503 twice, then 204; the statuses it gave, in order."""
    answers = [503, 503]
    given: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = answers.pop(0) if answers else 204
            given.append(status)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tasks", given
    finally:
        server.shutdown()
        server.server_close()


def test_a_task_webhook_is_retried_with_backoff_until_it_is_answered(
    world: World, flaky_webhook: tuple[str, list[int]]
) -> None:
    url, given = flaky_webhook
    settings = world.settings.model_copy(
        update={"escalation": world.settings.escalation.model_copy(update={"webhook_url": url})}
    )
    app = App(settings)
    detractor(world)
    rules = [rule for rule in app.load_rules() if rule.enabled]
    at = NOON
    run_tick(app, rules, at)
    for _ in range(12):
        with world.engine.connect() as connection:
            [task] = ledger.list_tasks(connection)
        if task.webhook_next_at is None:
            break
        at = max(at, task.webhook_next_at)
        run_tick(app, [], at)
    assert given == [503, 503, 204]
    assert (task.webhook_status, task.webhook_attempts, task.webhook_next_at) == ("http 204", 3, None)
    app.close()


def test_a_task_is_closed_with_a_note_and_the_list_filters_by_status(world: World) -> None:
    detractor(world)
    world.tick(NOON)
    runner, environ = (
        CliRunner(),
        {
            "OUTREACH_DATABASE__URL": world.settings.database.url,
            "OUTREACH_PATHS__RULES": str(world.root / "rules"),
            "OUTREACH_PATHS__TEMPLATES": str(world.root / "templates"),
        },
    )
    listed = runner.invoke(cli, ["tasks", "--json"], env=environ)
    assert listed.exit_code == 0, listed.output
    [task] = json.loads(listed.output)["tasks"]
    assert task["record"]["comment"] == "my parcel never came"
    closed = runner.invoke(
        cli, ["tasks", "close", task["id"], "--note", "called, refund issued"], env=environ
    )
    assert closed.exit_code == 0, closed.output
    assert json.loads(runner.invoke(cli, ["tasks", "--json"], env=environ).output)["tasks"] == []
    [done] = json.loads(runner.invoke(cli, ["tasks", "--status", "closed", "--json"], env=environ).output)[
        "tasks"
    ]
    assert (done["status"], done["note"]) == ("closed", "called, refund issued")
    unknown = runner.invoke(cli, ["tasks", "close", "nope", "--note", "x"], env=environ)
    assert unknown.exit_code == 1 and "no task 'nope'" in unknown.output


def test_a_place_freed_by_a_cancelled_contact_goes_to_the_match_it_held_back(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = capped(tmp_path, database_url)
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    stalled_checkout(world.engine, "k1", "c1")
    world.evaluate(NOON)  # the late parcel takes the day; the checkout is held back until tomorrow
    assert contact_of(world.engine, "stalled-checkout", "k1").state == "skipped"
    with world.engine.begin() as connection:
        table = Order.__table__  # type: ignore[attr-defined]
        connection.execute(sa.update(table).values(delivered_at=NOON, status="delivered"))
    world.tick(NOON + timedelta(minutes=1))  # the parcel arrived: its text is cancelled at send time
    assert contact_of(world.engine, "late-delivery", "o1").state == "cancelled"
    world.tick(NOON + timedelta(minutes=16))
    assert [m["rule"] for m in world.outbox()] == ["stalled-checkout"]

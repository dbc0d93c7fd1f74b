"""Delivery end to end on SQLite and PostgreSQL: rules and state → decisions → outbox → sends.

Each test builds a small world in tmp_path (rules, templates, settings), inserts customers and
their records with SQLAlchemy Core, evaluates at an explicit instant and dispatches through the
outbox channel, then reads what was written and what the ledger recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from rich.console import Console
from sqlalchemy.engine import Engine

from outreach import controls
from outreach.app import App
from outreach.channels import OutgoingMessage, Receipt
from outreach.cli import cli
from outreach.preview import preview_tick
from outreach.state import ledger
from outreach.state.ingest import ingest_file
from outreach.state.models import Order, SurveyResponse
from outreach.tick import run_tick
from outreach.vocabulary import State
from tests.worlds import (
    NOON,
    RULES,
    World,
    build_world,
    contact_of,
    contact_rows,
    customer,
    insert,
    late_order,
    stalled_checkout,
)


@pytest.fixture
def world(tmp_path: Path, database_url: str, engine: Engine) -> Iterator[World]:
    """A deployment in outbox mode on the migrated test database."""
    built = build_world(tmp_path, database_url)
    yield built
    built.app.close()


def test_repeated_ticks_send_each_contact_once(world: World) -> None:
    for cid in ("c1", "c2", "c3"):
        customer(world.engine, cid)
        late_order(world.engine, f"o-{cid}", cid)
    for minutes in (0, 15, 30):
        world.tick(NOON + timedelta(minutes=minutes))
    sent = world.outbox()
    assert sorted(m["customer_id"] for m in sent) == ["c1", "c2", "c3"]
    assert {c.state for c in contact_rows(world.engine)} == {"sent"}
    assert all(c.provider_id for c in contact_rows(world.engine))


def test_a_daily_cap_of_one_lets_only_the_higher_priority_rule_contact_out(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = build_world(tmp_path, database_url, max_per_day=1)
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    stalled_checkout(world.engine, "k1", "c1")
    world.tick(NOON)
    world.tick(NOON + timedelta(hours=1))
    assert [m["rule"] for m in world.outbox()] == ["late-delivery"]
    assert contact_of(world.engine, "stalled-checkout", "k1").state == "skipped"
    world.app.close()


def test_quiet_hours_defer_a_contact_to_nine_in_the_morning_local_time(world: World) -> None:
    customer(world.engine, "dubai", timezone="Asia/Dubai")
    late_order(world.engine, "o1", "dubai")
    eleven_pm_dubai = datetime(2026, 11, 24, 19, 0, tzinfo=UTC)
    nine_am_dubai = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
    world.tick(eleven_pm_dubai)
    row = contact_of(world.engine, "late-delivery", "o1")
    assert (row.state, row.send_at) == ("pending", nine_am_dubai)
    world.tick(nine_am_dubai - timedelta(minutes=1))
    assert world.outbox() == []
    world.tick(nine_am_dubai)
    assert [m["customer_id"] for m in world.outbox()] == ["dubai"]


def test_without_sms_consent_the_contact_falls_back_to_email(world: World) -> None:
    customer(world.engine, "c1", sms_opt_in=False)
    late_order(world.engine, "o1", "c1")
    world.tick(NOON)
    [message] = world.outbox()
    assert (message["channel"], message["to"]) == ("email", "c1@example.com")


def test_without_any_consent_the_contact_is_suppressed_and_nothing_is_sent(world: World) -> None:
    customer(world.engine, "c1", sms_opt_in=False, email_opt_in=False)
    late_order(world.engine, "o1", "c1")
    world.tick(NOON)
    assert world.outbox() == []
    row = contact_of(world.engine, "late-delivery", "o1")
    assert row.state == "suppressed" and row.reason


def test_a_contact_held_for_want_of_consent_waits_untouched_then_goes_once_the_customer_opts_in(
    world: World, tmp_path: Path
) -> None:
    customer(world.engine, "c1", sms_opt_in=False, email_opt_in=False)
    customer(world.engine, "c2", sms_opt_in=False, email_opt_in=False)
    late_order(world.engine, "o1", "c1")
    late_order(world.engine, "o2", "c2")
    world.tick(NOON)
    held = {c.entity_id: c.updated_at for c in contact_rows(world.engine)}
    assert {c.state for c in contact_rows(world.engine)} == {"suppressed"}
    world.tick(NOON + timedelta(minutes=15))
    assert {c.entity_id: c.updated_at for c in contact_rows(world.engine)} == held, (
        "nothing that could reach the customers changed: not decided again"
    )
    update = tmp_path / "customers.jsonl"
    update.write_text(json.dumps({"id": "c1", "email_opt_in": True}) + "\n", encoding="utf-8")
    ingest_file(world.engine, update, now=NOON + timedelta(minutes=20))
    world.tick(NOON + timedelta(minutes=30))
    assert [(m["customer_id"], m["channel"]) for m in world.outbox()] == [("c1", "email")]
    assert contact_of(world.engine, "late-delivery", "o1").state == "sent"
    still = contact_of(world.engine, "late-delivery", "o2")
    assert (still.state, still.updated_at) == ("suppressed", held["o2"])


def test_a_lifted_suppression_lets_the_held_contact_go_at_the_next_tick(world: World) -> None:
    customer(world.engine, "c1", sms_opt_in=False)
    late_order(world.engine, "o1", "c1")
    with world.engine.begin() as connection:
        ledger.add_suppression(connection, "c1", "email", "unsubscribe", None, NOON)
    world.tick(NOON)
    assert contact_of(world.engine, "late-delivery", "o1").state == "suppressed"
    with world.engine.begin() as connection:
        assert ledger.remove_suppression(connection, "c1", "email")  # subscribed again
    world.tick(NOON + timedelta(minutes=15))
    assert [m["customer_id"] for m in world.outbox()] == ["c1"]


def test_a_contact_held_for_want_of_consent_expires_at_its_expiry_without_a_change(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = build_world(
        tmp_path, database_url, rules=RULES.replace("priority: 20\n", "priority: 20\n    expires: 2h\n")
    )
    customer(world.engine, "c1", sms_opt_in=False, email_opt_in=False)
    late_order(world.engine, "o1", "c1")
    world.tick(NOON)
    assert contact_of(world.engine, "late-delivery", "o1").state == "suppressed"
    world.tick(NOON + timedelta(hours=2))
    row = contact_of(world.engine, "late-delivery", "o1")
    assert row.state == "expired" and "expired" in row.reason
    world.app.close()


def test_a_holdout_contact_is_recorded_and_never_sent(world: World) -> None:
    customer(world.engine, "c1", attributes={"tier": "vip"})
    world.tick(NOON)
    world.tick(NOON + timedelta(days=1))
    assert world.outbox() == []
    assert contact_of(world.engine, "vip-welcome", "c1").state == "holdout"


def test_a_contact_whose_condition_cleared_before_sending_is_cancelled(world: World) -> None:
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    world.evaluate(NOON)
    with world.engine.begin() as connection:
        connection.execute(sa.update(Order.__table__).values(delivered_at=NOON, status="delivered"))  # type: ignore[attr-defined]
    stats = world.dispatch(NOON + timedelta(minutes=1))
    assert stats.cancelled == 1 and world.outbox() == []
    row = contact_of(world.engine, "late-delivery", "o1")
    assert row.state == "cancelled" and "no longer holds" in row.reason


def test_a_batch_sent_for_longer_than_its_lease_keeps_its_contacts_from_another_worker(
    world: World,
) -> None:
    ids = [f"c{n}" for n in range(10)]
    for cid in ids:
        customer(world.engine, cid)
        late_order(world.engine, f"o-{cid}", cid)
    world.evaluate(NOON)
    lease = timedelta(seconds=60)
    first, other = world.dispatcher("first", lease=lease), world.dispatcher("other", lease=lease)
    # Seven seconds pass whenever the first worker reads the clock: its batch of ten outlasts
    # the lease. At each of those instants, the other worker dispatches too.
    instants = (NOON + timedelta(seconds=7 * n) for n in range(1, 1000))
    taken: list[int] = []
    last = NOON

    def clock() -> datetime:
        nonlocal last
        last = next(instants)
        taken.append(other.dispatch_once(last).sent)
        return last

    try:
        assert first.dispatch_once(NOON, clock=clock).sent == len(ids)
    finally:
        first.close()
        other.close()
    assert last > NOON + lease
    assert set(taken) == {0}, "the other worker took over claimed contacts"
    assert sorted(m["customer_id"] for m in world.outbox()) == ids


class _CountingSending:
    """An email channel that, as each request leaves, counts the ledger's rows marked sending."""

    name = "counting"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[int] = []
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> Receipt:
        with self.engine.connect() as connection:
            sending = connection.execute(
                sa.select(sa.func.count())
                .select_from(ledger.contacts)
                .where(ledger.contacts.c.state == State.SENDING)
            ).scalar_one()
        with self._lock:
            self.seen.append(sending)
        time.sleep(0.002)  # on the wire a moment, so that chunks overlap
        return Receipt("counting", f"id-{message.outbox_id}")


def test_no_more_than_two_chunks_are_ever_marked_sending_at_once(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    """What a crash can leave `unknown`: the dispatcher records a chunk's answers before it marks
    the chunk after next."""
    counting = _CountingSending(engine)
    world = build_world(tmp_path, database_url, {"email": counting})
    try:
        ids = [f"c{n:02d}" for n in range(60)]
        for cid in ids:
            customer(world.engine, cid, sms_opt_in=False)
            late_order(world.engine, f"o-{cid}", cid)
        world.evaluate(NOON)
        dispatcher = world.dispatcher(concurrency=4, batch=24)
        try:
            stats = dispatcher.dispatch_once(NOON)
        finally:
            dispatcher.close()
    finally:
        world.app.close()
    assert stats.sent == len(ids)
    assert {c.state for c in contact_rows(engine)} == {"sent"}
    assert len(counting.seen) == len(ids)
    assert max(counting.seen) <= 2 * 4, counting.seen
    assert max(counting.seen) > 4, "the chunks never overlapped: the test proves nothing"


def test_pause_holds_all_sending_but_records_matches_and_resume_releases_them(world: World) -> None:
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    controls.pause(world.app, "incident", NOON)
    stats = world.tick(NOON)
    assert stats.paused and world.outbox() == []
    assert contact_of(world.engine, "late-delivery", "o1").state == "pending"
    assert controls.resume(world.app)
    world.tick(NOON + timedelta(minutes=15))
    assert [m["rule"] for m in world.outbox()] == ["late-delivery"]


def test_silence_holds_one_rule_only_until_it_ends(world: World) -> None:
    customer(world.engine, "c1")
    customer(world.engine, "c2")
    late_order(world.engine, "o1", "c1")
    stalled_checkout(world.engine, "k2", "c2")
    until = controls.silence(world.app, "late-delivery", "6h", "carrier outage", NOON)
    world.tick(NOON)
    assert [m["rule"] for m in world.outbox()] == ["stalled-checkout"]
    assert contact_of(world.engine, "late-delivery", "o1").state == "pending"
    world.tick(until + timedelta(minutes=1))
    assert sorted(m["rule"] for m in world.outbox()) == ["late-delivery", "stalled-checkout"]


def test_an_escalating_rule_opens_one_task_listed_by_outreach_tasks(
    world: World, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer(world.engine, "c1")
    insert(
        world.engine,
        SurveyResponse,
        id="s1",
        customer_id="c1",
        kind="nps",
        score=3,
        comment="slow",
        responded_at=NOON - timedelta(hours=1),
        attributes={},
    )
    first = world.tick(NOON)
    world.tick(NOON + timedelta(minutes=15))
    assert len(world.evaluate(NOON).tasks) == 0 and first.sent == 1
    with world.engine.connect() as connection:
        [task] = ledger.list_tasks(connection)
    assert (task.rule, task.customer_id, task.entity_id) == ("detractor-follow-up", "c1", "s1")
    environment = {
        "OUTREACH_DATABASE__URL": database_url,
        "OUTREACH_PATHS__RULES": str(world.root / "rules"),
        "OUTREACH_PATHS__TEMPLATES": str(world.root / "templates"),
        "OUTREACH_SETTINGS": "",
    }
    monkeypatch.setattr("outreach.cli.out_console", Console(highlight=False, width=200))
    result = CliRunner().invoke(cli, ["tasks"], env=environment)
    assert result.exit_code == 0, result.output
    assert "1 task(s)" in result.output and "detractor-follow-up" in result.output and "c1" in result.output


@pytest.fixture
def task_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP endpoint that records the JSON bodies POSTed to it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/tasks", received
    finally:
        server.shutdown()
        server.server_close()


def test_an_opened_task_is_posted_to_the_escalation_webhook_and_the_outcome_recorded(
    world: World, task_receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    """With escalation.webhook_url set, each new task is POSTed once and its answer kept on the task."""
    url, received = task_receiver
    settings = world.settings.model_copy(
        update={"escalation": world.settings.escalation.model_copy(update={"webhook_url": url})}
    )
    app = App(settings)
    customer(world.engine, "c1")
    insert(
        world.engine,
        SurveyResponse,
        id="s1",
        customer_id="c1",
        kind="nps",
        score=2,
        comment="late",
        responded_at=NOON - timedelta(hours=1),
        attributes={},
    )
    rules = [rule for rule in app.load_rules() if rule.enabled]
    run_tick(app, rules, NOON)
    assert [(body["rule"], body["customer_id"], body["entity_id"]) for body in received] == [
        ("detractor-follow-up", "c1", "s1")
    ]
    assert received[0]["record"]["score"] == 2 and received[0]["record"]["comment"] == "late"
    assert received[0]["customer"]["email"] == "c1@example.com"
    with world.engine.connect() as connection:
        [task] = ledger.list_tasks(connection)
    assert task.webhook_status == "http 204" and task.webhook_attempts == 1 and task.webhook_next_at is None
    run_tick(app, rules, NOON + timedelta(minutes=15))
    app.close()
    assert len(received) == 1, "a task is announced once"


def test_a_whole_tick_preview_reports_its_progress_to_the_end(world: World) -> None:
    for cid in ("c1", "c2"):
        customer(world.engine, cid)
        late_order(world.engine, f"o-{cid}", cid)
    told: list[tuple[int, int]] = []
    preview = preview_tick(world.app, NOON, progress=lambda done, total: told.append((done, total)))
    assert len(preview.matches) == 2
    enabled = [rule for rule in world.app.load_rules() if rule.enabled]
    total = 1 + len(enabled)  # one chunk of customers decided, then each rule's earlier decisions
    assert told == [(done, total) for done in range(1, total + 1)]

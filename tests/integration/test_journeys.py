"""Journeys on SQLite and PostgreSQL: follow-up steps, one message for several matches, rules
that quiet each other — decided and sent through the real tick at explicit instants."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from rich.console import Console
from sqlalchemy.engine import Engine

from outreach import controls
from outreach.cli.render import print_explain
from outreach.preview import explain_customer
from outreach.state.models import Checkout, Customer, Order
from tests.worlds import NOON, World, build_world, contact_rows, customer, late_order, stalled_checkout

JOURNEYS = """\
rules:
  - name: stalled-checkout
    about: checkout
    when: checkout.completed_at is null and checkout.started_at < now() - 2h
    channels: [email]
    template: journey
    goal: checkout.completed_at is not null
    quiet_hours: "off"
    holdout: 50%
    steps:
      - after: 1d
        template: journey
        channels: [sms]
      - after: 2d
        template: journey

  - name: late-delivery
    about: order
    when: order.delivered_at is null and order.promised_at < now() - 1d
    channels: [email]
    template: journey
    priority: 20
    quiet_hours: "off"
    group: customer
    group_wait: 30m
    inhibits:
      - rule: stalled-checkout
        for: 2d
"""


@pytest.fixture
def world(tmp_path: Path, database_url: str, engine: Engine) -> Iterator[World]:
    built = build_world(tmp_path, database_url, rules=JOURNEYS, max_per_day=5, max_per_week=20)
    yield built
    built.app.close()


def update(engine: Engine, model: type, key: str, **values: object) -> None:
    table = model.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(sa.update(table).where(table.c.id == key).values(**values))


def sent(world: World, rule: str) -> list[dict[str, object]]:
    return [m for m in world.outbox() if m["rule"] == rule]


# -- follow-up steps -------------------------------------------------------------------------------


def checkouts(world: World, count: int) -> None:
    for n in range(count):
        customer(world.engine, f"c{n}")
        stalled_checkout(world.engine, f"k{n}", f"c{n}")


def test_step_two_goes_a_day_after_step_one_only_to_those_who_got_it_never_to_the_holdout(
    world: World,
) -> None:
    checkouts(world, 20)
    world.tick(NOON)
    first = {m["customer_id"] for m in sent(world, "stalled-checkout")}
    held_out = {c.customer_id for c in contact_rows(world.engine) if c.state == "holdout"}
    assert first and held_out and not first & held_out
    world.tick(NOON + timedelta(hours=23))
    assert len(sent(world, "stalled-checkout")) == len(first), "no step is due before its `after`"
    world.tick(NOON + timedelta(days=1, minutes=1))
    messages = sent(world, "stalled-checkout")
    second = [m for m in messages if m["channel"] == "sms"]
    assert {m["customer_id"] for m in second} == first, "step 2 reaches exactly those who got step 1"
    assert all(m["sms"].startswith("Step 2 of 3") for m in second)
    world.tick(NOON + timedelta(days=3, minutes=2))
    third = [m for m in sent(world, "stalled-checkout") if m.get("subject") == "Step 3 of 3"]
    assert {m["customer_id"] for m in third} == first
    for tick in range(3):  # each step once, ever
        world.tick(NOON + timedelta(days=4 + tick))
    assert len(sent(world, "stalled-checkout")) == 3 * len(first)


def test_a_journey_stops_when_the_goal_is_met_or_the_condition_clears(world: World) -> None:
    checkouts(world, 20)
    world.tick(NOON)
    first = sorted({str(m["customer_id"]) for m in sent(world, "stalled-checkout")})
    converted, gone = first[0], first[1]
    update(world.engine, Checkout, f"k{converted[1:]}", completed_at=NOON + timedelta(hours=5))
    update(world.engine, Checkout, f"k{gone[1:]}", started_at=None)  # the record no longer matches
    world.tick(NOON + timedelta(days=1, minutes=1))
    second = {m["customer_id"] for m in sent(world, "stalled-checkout") if m["channel"] == "sms"}
    assert second == set(first) - {converted, gone}
    ends = {c.customer_id: c for c in contact_rows(world.engine) if c.step == 2 and c.state == "cancelled"}
    assert "the goal was met" in ends[converted].reason
    assert "the condition no longer holds" in ends[gone].reason


def test_a_step_whose_customer_converted_between_its_decision_and_its_send_is_not_sent(world: World) -> None:
    checkouts(world, 8)
    world.tick(NOON)
    first = sorted({str(m["customer_id"]) for m in sent(world, "stalled-checkout")})
    step_time = NOON + timedelta(days=1, minutes=1)
    world.evaluate(step_time)  # step 2 decided, not yet sent
    update(world.engine, Checkout, f"k{first[0][1:]}", completed_at=step_time)
    world.dispatch(step_time)
    second = {m["customer_id"] for m in sent(world, "stalled-checkout") if m["channel"] == "sms"}
    assert first[0] not in second and len(second) == len(first) - 1


def test_a_step_waiting_for_its_sms_is_held_back_when_sms_consent_goes_not_moved_to_email(
    world: World,
) -> None:
    checkouts(world, 8)
    world.tick(NOON)
    first = sorted({str(m["customer_id"]) for m in sent(world, "stalled-checkout")})
    step_time = NOON + timedelta(days=1, minutes=1)
    world.evaluate(step_time)  # step 2, by SMS only, decided and waiting
    update(world.engine, Customer, first[0], sms_opt_in=False)
    assert controls.apply_consent_changes(world.app, step_time) == 1  # as after an ingest
    [step] = [c for c in contact_rows(world.engine) if c.step == 2 and c.customer_id == first[0]]
    assert step.state == "suppressed" and "no consented channel left" in step.reason
    world.dispatch(step_time)
    second = [m for m in sent(world, "stalled-checkout") if m.get("sms", "").startswith("Step 2")]
    assert {m["customer_id"] for m in second} == set(first[1:])
    assert not [m for m in sent(world, "stalled-checkout") if m.get("subject") == "Step 2 of 3"]


# -- one message for several matches ---------------------------------------------------------------


def test_two_late_orders_within_the_group_wait_are_one_message_naming_both(world: World) -> None:
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    world.tick(NOON)
    assert world.outbox() == [], "the first waits for others to join"
    late_order(world.engine, "o2", "c1")
    world.tick(NOON + timedelta(minutes=15))
    assert world.outbox() == []
    world.tick(NOON + timedelta(minutes=30))
    [message] = sent(world, "late-delivery")
    assert message["subject"] == "Step 1 of 1" and "o1" in message["html"] and "o2" in message["html"]
    states = {c.entity_id: c.state for c in contact_rows(world.engine) if c.rule == "late-delivery"}
    assert states == {"o1": "sent", "o2": "grouped"}, "both entities count as contacted"
    world.tick(NOON + timedelta(hours=2))
    assert len(sent(world, "late-delivery")) == 1, "neither is contacted again"


def test_three_late_orders_in_one_group_are_one_message_and_every_member_is_settled(world: World) -> None:
    """Settling several members at once is one statement run for each of them."""
    customer(world.engine, "c1")
    for oid in ("o1", "o2", "o3"):
        late_order(world.engine, oid, "c1")
    world.tick(NOON)
    world.tick(NOON + timedelta(minutes=30))
    [message] = sent(world, "late-delivery")
    assert all(oid in str(message["html"]) for oid in ("o1", "o2", "o3"))
    states = {c.entity_id: c.state for c in contact_rows(world.engine) if c.rule == "late-delivery"}
    assert sorted(states.values()) == ["grouped", "grouped", "sent"]


def test_a_match_after_the_group_was_sent_starts_a_new_group(world: World) -> None:
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    world.tick(NOON)
    world.tick(NOON + timedelta(minutes=30))
    late_order(world.engine, "o3", "c1")
    world.tick(NOON + timedelta(hours=1))
    world.tick(NOON + timedelta(hours=1, minutes=30))
    messages = sent(world, "late-delivery")
    assert len(messages) == 2 and "o3" in str(messages[1]["html"]) and "o1" not in str(messages[1]["html"])


def test_a_grouped_record_that_no_longer_holds_at_send_time_is_left_out(world: World) -> None:
    customer(world.engine, "c1")
    late_order(world.engine, "o1", "c1")
    late_order(world.engine, "o2", "c1")
    world.tick(NOON)
    update(world.engine, Order, "o1", delivered_at=NOON + timedelta(minutes=10), status="delivered")
    world.tick(NOON + timedelta(minutes=30))
    [message] = sent(world, "late-delivery")
    assert "o2" in str(message["html"]) and "o1" not in str(message["html"])


# -- rules that quiet each other -----------------------------------------------------------------------


def test_an_inhibited_rule_stays_quiet_for_the_customer_for_the_period_and_resumes_after(
    world: World,
) -> None:
    for n in range(6):
        customer(world.engine, f"c{n}")
        late_order(world.engine, f"o{n}", f"c{n}")
    world.tick(NOON)
    world.tick(NOON + timedelta(minutes=30))
    assert len(sent(world, "late-delivery")) == 6
    for n in range(6):
        stalled_checkout(world.engine, f"k{n}", f"c{n}", now=NOON + timedelta(hours=1))
    world.tick(NOON + timedelta(hours=1))
    assert sent(world, "stalled-checkout") == []
    held = [c for c in contact_rows(world.engine) if c.rule == "stalled-checkout" and c.state == "skipped"]
    assert held and all(c.reason.startswith("inhibited by late-delivery") for c in held)
    assert {c.recheck_at for c in held} == {NOON + timedelta(minutes=30) + timedelta(days=2)}
    world.tick(NOON + timedelta(days=2, minutes=31))
    resumed = {m["customer_id"] for m in sent(world, "stalled-checkout")}
    assert resumed, "once the inhibition ends, the rule speaks again"


def test_report_counts_each_step_sent_and_the_goals_met_after_it(world: World) -> None:
    from outreach.controls import report_since

    checkouts(world, 20)
    world.tick(NOON)
    first = sorted({str(m["customer_id"]) for m in sent(world, "stalled-checkout")})
    early, late = first[0], first[1]
    update(world.engine, Checkout, f"k{early[1:]}", completed_at=NOON + timedelta(hours=3))
    world.tick(NOON + timedelta(hours=4))  # goals are measured at each tick
    world.tick(NOON + timedelta(days=1, minutes=1))
    update(world.engine, Checkout, f"k{late[1:]}", completed_at=NOON + timedelta(days=1, hours=2))
    world.tick(NOON + timedelta(days=1, hours=3))
    report = report_since(world.app, "7d", NOON + timedelta(days=1, hours=4))
    steps = {(s.step, s.sent, s.goal_met_after) for s in report.steps if s.rule == "stalled-checkout"}
    assert steps == {(1, len(first), 1), (2, len(first) - 1, 1)}
    assert report.as_json()["steps"][0]["rule"] == "stalled-checkout"


# -- explain ---------------------------------------------------------------------------------------


def explained(world: World, cid: str, at: datetime) -> tuple[dict[str, Any], str]:
    """`outreach explain` for CID at AT: its JSON document and the text a person reads."""
    report = explain_customer(world.app, cid, at)
    console = Console(record=True, width=200)
    print_explain(console, report)
    return report.as_json(), console.export_text()


def record_of(document: dict[str, Any], rule: str, entity_id: str) -> dict[str, Any]:
    [entry] = [r for r in document["rules"] if r["rule"] == rule]
    [record] = [r for r in entry["records"] if r["entity_id"] == entity_id]
    return record


def test_explain_names_the_step_the_group_and_the_inhibition_of_a_decision(world: World) -> None:
    checkouts(world, 4)
    world.tick(NOON)
    cid = sorted(str(m["customer_id"]) for m in sent(world, "stalled-checkout"))[0]
    kid = f"k{cid[1:]}"
    due = NOON + timedelta(days=1, minutes=1)
    document, text = explained(world, cid, due)
    record = record_of(document, "stalled-checkout", kid)
    assert (record["step"], record["of"], record["decision"]) == (2, 3, "send")
    assert (record["ledger"]["step"], record["ledger"]["state"]) == (1, "sent")
    assert f"stalled-checkout {kid} step 2 of 3 → send (sms)" in text
    assert "→ send, step 2 of 3:" in text and "ledger: step 1 of 3: sent" in text

    late_order(world.engine, "o1", cid, now=due)
    late_order(world.engine, "o2", cid, now=due)
    world.tick(due)  # step 2 meets the late-delivery group waiting for this customer
    document, text = explained(world, cid, due + timedelta(minutes=10))
    grouped = record_of(document, "late-delivery", "o2")
    assert grouped["ledger"]["state"] == "grouped" and "joins the message" in grouped["ledger"]["reason"]
    assert "step" not in text.split("rule late-delivery", 1)[1], "a rule without steps speaks of none"
    waiting = record_of(document, "stalled-checkout", kid)
    assert (waiting["step"], waiting["decision"]) == (2, "duplicate")
    assert waiting["reason"].startswith("held back: inhibited by late-delivery")
    inhibited = waiting["ledger"]
    assert (inhibited["step"], inhibited["state"]) == (2, "skipped")
    assert inhibited["reason"].startswith("inhibited by late-delivery")
    assert "ledger: step 2 of 3: skipped (inhibited by late-delivery" in text

    world.tick(due + timedelta(minutes=30))  # the group goes: the inhibition runs 2 days from then
    document, _ = explained(world, cid, due + timedelta(days=2, minutes=31))
    resumed = record_of(document, "stalled-checkout", kid)
    assert (resumed["step"], resumed["decision"]) == (2, "send")

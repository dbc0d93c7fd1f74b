"""A change of a customer's reach loaded while a tick decides reaches what that tick held back.

A decider reads the customer as committed; a load that gives consent commits only at its end.
A contact held back for want of a channel in between must still be decided again once the
consent lands (`ledger.reachable_again` runs at the end of the load, under the decision lock)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from outreach.state import ledger
from outreach.state.ingest import ingest_file
from outreach.vocabulary import State
from tests.integration.test_ingest import write_jsonl
from tests.worlds import NOON, build_world, contact_of, customer, late_order


def test_consent_loaded_while_a_tick_holds_the_contact_back_makes_it_due(
    tmp_path: Path, postgres_url: str, postgres_engine: Engine
) -> None:
    world = build_world(tmp_path, postgres_url)
    engine = world.engine
    customer(engine, "c1", sms_opt_in=False, email_opt_in=False)
    late_order(engine, "o1", "c1")
    consent = {
        "id": "c1",
        "name": "Customer c1",
        "email": "c1@example.com",
        "phone": "+447911123456",
        "locale": "en",
        "timezone": "UTC",
        "email_opt_in": False,
        "sms_opt_in": True,
    }
    path = write_jsonl(tmp_path / "customers.jsonl", [consent])
    during: list[str] = []

    def tick_between_batches(_done: int, _total: int | None) -> None:
        # The load has written its batch and not committed: the tick reads no consent.
        if not during:
            during.extend(str(d.state) for d in world.evaluate(NOON).decisions if d.rule == "late-delivery")

    report = ingest_file(engine, path, batch_size=1, progress=tick_between_batches)

    assert not report.rejected
    assert during == [State.SUPPRESSED]
    later = NOON + timedelta(minutes=15)
    with engine.connect() as connection:
        assert [h.entity_id for h in ledger.held_due(connection, "late-delivery", later)] == ["o1"]
    world.evaluate(later)
    decided = contact_of(engine, "late-delivery", "o1")
    assert (decided.state, decided.channel) == (State.PENDING, "sms")

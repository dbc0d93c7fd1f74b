"""A tick after a sweep looks only at what can have changed, and misses nothing a whole sweep finds.

On PostgreSQL a rule's evaluation remembers its instant and the database's horizon
(`outreach.state.sweeps`); the next one leaves out every record written before it whose
condition already held then. These tests change records, customers and the clock between ticks
and check, after every tick, that every current match of every rule has its decision — on both
databases, so SQLite (which sweeps whole) is the reference behaviour.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from outreach.rules.evaluate import Since, find_matches, query_fingerprint
from outreach.rules.loader import load_rules
from outreach.state import ledger, sweeps
from outreach.state.db import make_engine
from outreach.state.migrate import upgrade
from outreach.state.models import Checkout, Customer, Order
from tests.worlds import NOON, RULES, World, build_world, customer, insert, late_order, write_world

# late-delivery and stalled-checkout read only their record, vip-welcome only the customer;
# vip-late reads both, so a change of the customer alone can make an unchanged order match.
# gold-or-very-late is unknown (SQL's NULL, not false) for a customer without a tier until its
# order is two days late: it comes true by time from unknown, not from false.
SWEEP_RULES = (
    RULES
    + """
  - name: vip-late
    about: order
    when: >
      customer.attributes.tier == "vip" and order.delivered_at is null
      and order.promised_at < now() - 6h
    channels: [email]
    template: notice
    priority: 5

  - name: gold-or-very-late
    about: order
    when: >
      order.delivered_at is null
      and (customer.attributes.tier == "gold" or order.promised_at < now() - 2d)
    channels: [email]
    template: notice
    priority: 4
"""
)
SWEEP_RULE_NAMES = {
    "late-delivery",
    "stalled-checkout",
    "detractor-follow-up",
    "vip-welcome",
    "vip-late",
    "gold-or-very-late",
}
STEPS = (timedelta(minutes=15), timedelta(hours=1), timedelta(hours=7), timedelta(days=1))


def undecided_matches(world: World, now: datetime) -> dict[str, set[str]]:
    """Per rule, the records that match at NOW (the bare query, no ledger) without a decision."""
    missing: dict[str, set[str]] = {}
    with world.engine.connect() as connection:
        decided = {
            (rule, entity)
            for rule, entity in connection.execute(
                sa.select(ledger.contacts.c.rule, ledger.contacts.c.entity_id).where(
                    ledger.contacts.c.step == 1
                )
            )
        }
        for rule in world.app.load_rules():
            found = {m.entity_id for m in find_matches(connection, rule, now)}
            left = {entity for entity in found if (rule.name, entity) not in decided}
            if left:
                missing[rule.name] = left
    return missing


def update(engine: Engine, model: type, record_id: str, **values: object) -> None:
    table = model.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(sa.update(table).where(table.c.id == record_id).values(**values))


PEOPLE = 12


def add_people(world: World) -> None:
    """The customers `churn` writes for: one in four a vip, the rest with no tier at all."""
    for n in range(PEOPLE):
        customer(world.engine, f"c{n}", attributes={"tier": "vip"} if n % 4 == 0 else {})


def churn(world: World, rng: random.Random, now: datetime, serial: int) -> None:
    """Records and customers written between two ticks: new ones, changed ones, most left alone."""
    engine = world.engine
    people = [f"c{n}" for n in range(PEOPLE)]
    for n in range(rng.randint(0, 4)):
        insert(
            engine,
            Order,
            id=f"o{serial}-{n}",
            customer_id=rng.choice(people),
            status=rng.choice(["placed", "shipped", "cancelled"]),
            promised_at=now + timedelta(hours=rng.randint(-72, 48)),
            delivered_at=None,
            total=10.0,
            attributes={},
        )
    for n in range(rng.randint(0, 2)):
        insert(
            engine,
            Checkout,
            id=f"k{serial}-{n}",
            customer_id=rng.choice(people),
            started_at=now + timedelta(minutes=rng.randint(-300, 60)),
            completed_at=None,
            items=[],
            attributes={},
        )
    with engine.connect() as connection:
        orders = sorted(connection.execute(sa.select(Order.__table__.c.id)).scalars())  # type: ignore[attr-defined]
    for oid in rng.sample(orders, k=min(len(orders), rng.randint(0, 3))):
        change = rng.choice(["deliver", "undeliver", "promise", "cancel"])
        if change == "deliver":
            update(engine, Order, oid, delivered_at=now)
        elif change == "undeliver":
            update(engine, Order, oid, delivered_at=None, status="shipped")
        elif change == "promise":
            update(engine, Order, oid, promised_at=now + timedelta(hours=rng.randint(-60, 30)))
        else:
            update(engine, Order, oid, status="cancelled")
    for cid in rng.sample(people, k=rng.randint(0, 2)):
        update(engine, Customer, cid, attributes={"tier": rng.choice(["vip", "gold", "basic"])})


@pytest.mark.parametrize("seed", range(4))
def test_every_match_is_decided_after_every_tick_while_records_customers_and_time_change(
    tmp_path: Path, database_url: str, engine: Engine, seed: int
) -> None:
    world = build_world(tmp_path, database_url, rules=SWEEP_RULES)
    rng = random.Random(seed)
    add_people(world)
    now = NOON
    for serial in range(10):
        churn(world, rng, now, serial)
        world.evaluate(now)
        assert undecided_matches(world, now) == {}, f"tick {serial} at {now:%d %H:%M}"
        now += rng.choice(STEPS)
    if world.engine.dialect.name == "postgresql":  # every tick after the first built on a sweep
        with world.engine.connect() as connection:
            recorded = connection.execute(
                sa.select(sweeps.rule_sweeps.c.rule, sweeps.rule_sweeps.c.swept_at)
            ).all()
        assert {rule for rule, _at in recorded} == SWEEP_RULE_NAMES


@pytest.mark.postgres
def test_the_query_after_a_sweep_reads_only_records_written_since_or_come_due_by_time(
    tmp_path: Path, postgres_url: str, postgres_engine: Engine
) -> None:
    world = build_world(tmp_path, postgres_url, rules=SWEEP_RULES)
    customer(world.engine, "c1")
    for n in range(20):
        late_order(world.engine, f"late-{n}", "c1")
    # Promised 20 hours ago: late (more than a day) only in 5 hours.
    insert(
        world.engine,
        Order,
        id="soon",
        customer_id="c1",
        status="shipped",
        promised_at=NOON - timedelta(hours=20),
        total=1.0,
        attributes={},
    )
    sweep_past_every_write(world, NOON)
    update(world.engine, Order, "late-3", carrier="new carrier")
    late_order(world.engine, "new", "c1")
    later = NOON + timedelta(hours=5)
    [rule] = [r for r in world.app.load_rules() if r.name == "late-delivery"]
    with world.engine.connect() as connection:
        [sweep] = sweeps.usable(
            connection, {rule.name: query_fingerprint(rule.about, rule.condition)}
        ).values()
        since = Since(sweep.swept_at, sweeps.written_since(sweep.horizon))
        narrowed = {m.entity_id for m in find_matches(connection, rule, later, since=since)}
        whole = {m.entity_id for m in find_matches(connection, rule, later)}
    assert narrowed == {"late-3", "new", "soon"}
    assert len(whole) == 22


@pytest.mark.postgres
def test_a_record_written_by_a_load_still_running_during_a_sweep_is_decided_at_the_next(
    tmp_path: Path, postgres_url: str, postgres_engine: Engine
) -> None:
    world = build_world(tmp_path, postgres_url, rules=SWEEP_RULES)
    customer(world.engine, "c1")
    late_order(world.engine, "seen", "c1")
    with world.engine.connect() as load:
        loading = load.begin()
        load.execute(
            sa.insert(Order.__table__).values(  # type: ignore[attr-defined]
                id="in-flight",
                customer_id="c1",
                status="shipped",
                promised_at=NOON - timedelta(days=2),
                total=1.0,
                attributes={},
            )
        )
        customer(world.engine, "c2")  # written after the load began, committed before the sweep
        world.evaluate(NOON)  # the load has not committed: this sweep cannot see its order
        loading.commit()
    assert undecided_matches(world, NOON) == {"late-delivery": {"in-flight"}}
    world.evaluate(NOON + timedelta(minutes=15))
    assert undecided_matches(world, NOON + timedelta(minutes=15)) == {}


def test_a_rule_whose_condition_changed_is_swept_whole(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    world = build_world(tmp_path, database_url, rules=RULES.replace("now() - 1d", "now() - 3d"))
    customer(world.engine, "c1")
    late_order(world.engine, "two-days-late", "c1")  # promised two days ago: not late by three
    world.evaluate(NOON)
    assert undecided_matches(world, NOON) == {}
    (tmp_path / "rules" / "rules.yaml").write_text(RULES, encoding="utf-8")  # late by one day again
    world.evaluate(NOON + timedelta(minutes=15))
    assert ledger_entities(world.engine, "late-delivery") == {"two-days-late"}


def sweep_past_every_write(world: World, now: datetime) -> None:
    """A sweep at NOW whose horizon lies past every order written so far. Another test's
    transaction still running on the server holds the horizon back (a sweep cannot know what
    such a transaction wrote): sweep again until none from before is left."""
    for _attempt in range(100):
        world.evaluate(now)
        with world.engine.connect() as connection:
            newest = connection.exec_driver_sql("SELECT max(xmin::text::bigint) FROM orders").scalar_one()
            horizon = connection.execute(sa.select(sa.func.min(sweeps.rule_sweeps.c.horizon))).scalar_one()
        if horizon % 2**32 > newest:
            return
        time.sleep(0.05)
    pytest.fail("another transaction on the server ran through 100 sweeps")


def ledger_entities(engine: Engine, rule: str) -> set[str]:
    with engine.connect() as connection:
        query = sa.select(ledger.contacts.c.entity_id).where(ledger.contacts.c.rule == rule)
        return set(connection.execute(query).scalars())


@pytest.mark.postgres
def test_a_tick_builds_on_the_sweep_until_its_row_is_deleted(
    tmp_path: Path, postgres_url: str, postgres_engine: Engine
) -> None:
    # What the README says: a ledger row deleted by hand is not decided again while the rule's
    # sweep stands, because the record was seen; deleting the sweep's row sweeps whole.
    world = build_world(tmp_path, postgres_url, rules=SWEEP_RULES)
    customer(world.engine, "c1")
    late_order(world.engine, "late", "c1")
    sweep_past_every_write(world, NOON)
    with world.engine.begin() as connection:
        connection.execute(sa.delete(ledger.contacts).where(ledger.contacts.c.rule == "late-delivery"))
    world.evaluate(NOON + timedelta(minutes=15))
    assert ledger_entities(world.engine, "late-delivery") == set()
    with world.engine.begin() as connection:
        connection.execute(sa.delete(sweeps.rule_sweeps).where(sweeps.rule_sweeps.c.rule == "late-delivery"))
    world.evaluate(NOON + timedelta(minutes=30))
    assert ledger_entities(world.engine, "late-delivery") == {"late"}


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("change", "used"),
    [
        ({}, True),
        ({"swept_at": NOON + timedelta(days=1)}, True),  # a sweep "after" the tick: a clock set back
        ({"horizon": sweeps.rule_sweeps.c.horizon - 2**30 - 1}, False),  # too old to compare xids
        ({"horizon": sweeps.rule_sweeps.c.horizon + 2**20}, False),  # ahead of the server: a restore
        ({"database": "7000000000000000000/16384"}, False),  # another server or database
        ({"condition": "an older compiler"}, False),
    ],
    ids=["as-recorded", "later-instant", "too-old", "ahead", "other-database", "other-query"],
)
def test_a_sweep_is_built_on_only_on_the_database_and_query_it_was_made_for(
    tmp_path: Path, postgres_url: str, postgres_engine: Engine, change: dict[str, object], used: bool
) -> None:
    world = build_world(tmp_path, postgres_url, rules=SWEEP_RULES)
    customer(world.engine, "c1")
    world.evaluate(NOON)
    [rule] = [r for r in world.app.load_rules() if r.name == "late-delivery"]
    with world.engine.begin() as connection:
        table = sweeps.rule_sweeps
        if change:
            connection.execute(sa.update(table).where(table.c.rule == rule.name).values(**change))
        found = sweeps.usable(connection, {rule.name: query_fingerprint(rule.about, rule.condition)})
    assert (rule.name in found) is used


@pytest.mark.postgres
def test_ticks_racing_on_one_database_decide_every_match_once(
    tmp_path: Path, postgres_url: str, postgres_engine: Engine
) -> None:
    # Two workers evaluate the same rules at the same instant; whichever records its sweep last,
    # the next round builds on a sweep that saw everything it claims to have seen.
    world = build_world(tmp_path, postgres_url, rules=SWEEP_RULES)
    add_people(world)
    rng = random.Random(7)
    now = NOON
    for serial in range(6):
        churn(world, rng, now, serial)
        start = threading.Barrier(2)

        def tick(at: datetime = now, start: threading.Barrier = start) -> None:
            start.wait()
            world.evaluate(at)

        with ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(tick) for _ in range(2)]:
                future.result()
        assert undecided_matches(world, now) == {}, f"round {serial}"
        now += rng.choice(STEPS)
    with world.engine.connect() as connection:
        keys = connection.execute(
            sa.select(ledger.contacts.c.rule, ledger.contacts.c.entity_id, ledger.contacts.c.step)
        ).all()
    assert len(keys) == len(set(keys)) > 0


def test_a_rules_fingerprint_is_its_query_the_same_in_every_process(tmp_path: Path) -> None:
    # A fingerprint that differed between two `outreach run` processes would make every tick
    # sweep whole; one that ignored the query would let a changed rule build on an old sweep.
    def fingerprints(rules: str) -> dict[str, str]:
        write_world(tmp_path / "w", rules)
        return {
            rule.name: query_fingerprint(rule.about, rule.condition)
            for rule in load_rules(tmp_path / "w" / "rules").rules
        }

    here = fingerprints(SWEEP_RULES)
    assert fingerprints(SWEEP_RULES.replace("now() - 1d", "now() - 24h")) == here  # the same query
    moved = fingerprints(SWEEP_RULES.replace("now() - 1d", "now() - 25h"))
    assert {name for name in here if moved[name] != here[name]} == {"late-delivery"}
    script = (
        "import json, sys; from pathlib import Path; from outreach.rules.loader import load_rules;"
        " from outreach.rules.evaluate import query_fingerprint;"
        " print(json.dumps({r.name: query_fingerprint(r.about, r.condition)"
        " for r in load_rules(Path(sys.argv[1])).rules}))"
    )
    for seed in ("1", "2"):
        shown = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "w" / "rules")],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(shown.stdout) == moved


@pytest.mark.postgres
def test_a_role_that_may_not_read_the_servers_identity_sweeps_whole_and_misses_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    # `pg_control_system()` revoked from PUBLIC, as a hardened server may have it: no horizon can
    # be told apart from another server's, so no sweep is recorded and every tick sweeps whole.
    name = f"revoked_{uuid.uuid4().hex[:10]}"
    admin_url = sa.make_url(postgres_url).set(query={})
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:  # whatever fails, the role and its database are dropped
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE ROLE {name} LOGIN")
            connection.exec_driver_sql(f"CREATE DATABASE {name} OWNER {name}")
        own = sa.create_engine(admin_url.set(database=name), isolation_level="AUTOCOMMIT")
        with own.connect() as connection:
            connection.exec_driver_sql("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
        own.dispose()
        url = admin_url.set(username=name, database=name).render_as_string(False)
        migrating = make_engine(url)
        upgrade(migrating)
        migrating.dispose()
        world = build_world(tmp_path, url)
        customer(world.engine, "c1")
        late_order(world.engine, "late", "c1")
        world.evaluate(NOON)
        late_order(world.engine, "later", "c1")
        world.evaluate(NOON + timedelta(minutes=15))
        assert ledger_entities(world.engine, "late-delivery") == {"late", "later"}
        with world.engine.connect() as connection:
            assert (
                connection.execute(sa.select(sa.func.count()).select_from(sweeps.rule_sweeps)).scalar_one()
                == 0
            )
        world.engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            connection.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
        admin.dispose()

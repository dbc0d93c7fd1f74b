"""`outreach preview --all` as a user runs it: a dry run of the whole tick that decides, decision
for decision, what `run --once --now T` then records — rules competing for one customer's cap,
quiet hours, consent, a holdout, a held-back contact decided again the next day — and writes
nothing."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from outreach.state import ledger
from tests.acceptance.test_cli_delivery import outreach, write_settings
from tests.worlds import NOON, RULES, customer, late_order, stalled_checkout


def _deployment(tmp_path: Path, database_url: str, engine: Engine) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text(RULES, encoding="utf-8")
    settings = write_settings(tmp_path, database_url, rules=rules)
    with settings.open("a", encoding="utf-8") as file:
        file.write("[delivery]\nmax_per_day = 1\nmax_per_week = 5\n")
    customer(engine, "c1")  # a late parcel and a stalled basket: one message a day between them
    late_order(engine, "o1", "c1")
    stalled_checkout(engine, "k1", "c1")
    customer(engine, "c2")  # a stalled basket only
    stalled_checkout(engine, "k2", "c2")
    customer(engine, "c3", email_opt_in=False, sms_opt_in=False)  # no consent
    late_order(engine, "o3", "c3")
    customer(engine, "c4", timezone="Asia/Tokyo")  # 21:00 in Tokyo: quiet hours
    late_order(engine, "o4", "c4")
    customer(engine, "c5", attributes={"tier": "vip"})  # the 100% holdout
    return settings


def _ledger(engine: Engine) -> dict[tuple[str, str], dict[str, Any]]:
    """Every contact row by (rule, record)."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(ledger.contacts)).mappings()
        return {(row["rule"], row["entity_id"]): dict(row) for row in rows}


def _as_recorded(match: dict[str, Any], row: dict[str, Any]) -> tuple[str | None, str, str]:
    """A previewed decision as the ledger holds it once `run --once` sent what was due (a sent
    contact's reason then says who accepted it)."""
    state = {"send": "sent", "deferred": "pending"}.get(match["decision"], match["decision"])
    return match["channel"], state, row["reason"] if state == "sent" else match["reason"]


def test_preview_all_is_what_run_once_then_decides_and_writes_nothing(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    settings = _deployment(tmp_path, database_url, engine)
    seen_decisions: set[str] = set()
    for now in (NOON, NOON + timedelta(days=1)):
        before = _ledger(engine)
        result = outreach(settings, "preview", "--all", "--json", "--now", now.isoformat())
        assert result.exit_code == 0, result.output
        document = json.loads(result.stdout)
        assert list(document) == ["now", "matches"]
        assert all(
            list(m) == ["rule", "customer_id", "entity_id", "channel", "decision", "reason"]
            for m in document["matches"]
        )
        assert _ledger(engine) == before, "preview --all wrote to the ledger"

        ran = outreach(settings, "run", "--once", "--now", now.isoformat())
        assert ran.exit_code == 0, ran.output
        after = _ledger(engine)
        previewed = {(m["rule"], m["entity_id"]): m for m in document["matches"]}
        new = {key: m for key, m in previewed.items() if m["decision"] != "duplicate"}
        assert new, "the tick decided nothing"
        for key, match in new.items():
            row = after[key]
            assert (row["channel"], row["state"], row["reason"]) == _as_recorded(match, row), key
        for key in set(after) - set(new):  # sending may move them on; nothing decided them again
            assert after[key]["decided_at"] == before[key]["decided_at"], f"{key} decided again unannounced"
        seen_decisions.update(m["decision"] for m in new.values())

    # The day's cap went to the late parcel (priority 20): the basket waited for the next day,
    # which a preview of stalled-checkout on its own cannot tell.
    alone = outreach(settings, "preview", "stalled-checkout", "--json", "--now", NOON.isoformat())
    assert {m["entity_id"]: m["decision"] for m in json.loads(alone.stdout)["matches"]}["k1"] != "skipped"
    assert _ledger(engine)[("stalled-checkout", "k1")]["state"] == "sent"
    assert {"send", "skipped", "suppressed", "deferred", "holdout"} <= seen_decisions


def test_preview_all_in_a_terminal_shows_every_rule_and_the_counts(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    settings = _deployment(tmp_path, database_url, engine)
    result = outreach(settings, "preview", "--all", "--now", NOON.isoformat())
    assert result.exit_code == 0, result.output
    for word in ("late-delivery", "stalled-checkout", "vip-welcome", "skipped", "holdout"):
        assert word in result.stdout


def test_preview_needs_a_rule_or_all_but_not_both(tmp_path: Path, sqlite_url: str, engine: Engine) -> None:
    settings = _deployment(tmp_path, sqlite_url, engine)
    for args in (["preview"], ["preview", "late-delivery", "--all"]):
        result = outreach(settings, *args)
        assert result.exit_code == 2, result.output
        assert "--all" in result.output

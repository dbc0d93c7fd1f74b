"""`outreach explain` as a user runs it: the failing clauses of `when` with the values read, the
other rules competing for the customer in the same tick, and the pause and silences in force."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine

from tests.acceptance.test_cli_delivery import outreach, write_settings

RULES = """\
rules:
  - name: late-delivery
    about: order
    when: >
      order.status != "cancelled" and order.delivered_at is null
      and order.promised_at < now() - 1d
    channels: [sms, email]
    template: notice
    priority: 20

  - name: stalled-checkout
    about: checkout
    when: checkout.completed_at is null and checkout.started_at < now() - 2h
    channels: [email]
    template: notice
"""

RECORDS = {
    "customers.jsonl": [
        {
            "id": "c1",
            "name": "Ann",
            "email": "ann@example.com",
            "phone": "+447911123456",
            "timezone": "Europe/London",
            "email_opt_in": True,
            "sms_opt_in": True,
        },
    ],
    "orders.jsonl": [
        {"id": "o-late", "customer_id": "c1", "status": "shipped", "promised_at": "2026-11-22T09:00:00Z"},
        {
            "id": "o-home",
            "customer_id": "c1",
            "status": "delivered",
            "promised_at": "2026-11-22T09:00:00Z",
            "delivered_at": "2026-11-23T08:00:00Z",
        },
    ],
    "checkouts.jsonl": [
        {"id": "k1", "customer_id": "c1", "started_at": "2026-11-24T08:00:00Z", "cart_value": 30}
    ],
}
NOW = "2026-11-24T12:00:00Z"


def _deployment(tmp_path: Path, database_url: str) -> Path:
    settings = write_settings(tmp_path, database_url)
    (tmp_path / "rules" / "rules.yaml").write_text(RULES, encoding="utf-8")
    files = []
    for name, rows in RECORDS.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        files.append(str(tmp_path / name))
    result = outreach(settings, "ingest", *files)
    assert result.exit_code == 0, result.output
    return settings


def test_explain_names_the_false_clause_and_the_value_it_read(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    settings = _deployment(tmp_path, database_url)
    result = outreach(settings, "explain", "c1", "--now", NOW)
    assert result.exit_code == 0, result.output
    assert "order o-home: condition does not hold" in result.stdout
    assert "`order.delivered_at is null` is false: order.delivered_at = 2026-11-23T08:00Z" in result.stdout

    document = json.loads(outreach(settings, "explain", "c1", "--now", NOW, "--json").stdout)
    [late] = [r for r in document["rules"] if r["rule"] == "late-delivery"]
    home = next(r for r in late["records"] if r["entity_id"] == "o-home")
    assert home["condition"] == "does not hold" and home["decision"] is None
    assert home["failing"] == [
        {
            "clause": "order.delivered_at is null",
            "value": False,
            "reads": {"order.delivered_at": "2026-11-23T08:00:00+00:00"},
        }
    ]


def test_explain_shows_the_rule_that_took_the_last_slot_of_the_day(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    """With one message a day, late-delivery (priority 20) wins the slot the stalled checkout wanted."""
    settings = _deployment(tmp_path, database_url)
    document = json.loads(outreach(settings, "explain", "c1", "--now", NOW, "--json").stdout)
    assert {(d["rule"], d["entity_id"], d["decision"]) for d in document["tick"]} == {
        ("late-delivery", "o-late", "send"),
        ("stalled-checkout", "k1", "skipped"),
    }
    [stalled] = [r for r in document["rules"] if r["rule"] == "stalled-checkout"]
    [checkout] = stalled["records"]
    assert checkout["decision"] == "skipped" and "by late-delivery" in checkout["reason"]
    assert [(c["rule"], c["decision"]) for c in checkout["competing"]] == [("late-delivery", "send")]
    human = outreach(settings, "explain", "c1", "--now", NOW).stdout
    assert "competing in this tick: late-delivery o-late → send (sms)" in human


def test_explain_says_what_the_pause_and_a_silence_hold_back(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    settings = _deployment(tmp_path, database_url)
    assert outreach(settings, "pause", "--reason", "carrier outage").exit_code == 0
    assert (
        outreach(settings, "silence", "late-delivery", "--for", "3650d", "--reason", "freeze").exit_code == 0
    )
    document = json.loads(outreach(settings, "explain", "c1", "--now", NOW, "--json").stdout)
    assert document["paused"] is True and document["pause_reason"] == "carrier outage"
    [late] = [r for r in document["rules"] if r["rule"] == "late-delivery"]
    assert late["silenced"]["reason"] == "freeze"
    sending = next(r for r in late["records"] if r["entity_id"] == "o-late")
    assert sending["decision"] == "send" and sending["held"].startswith("paused (carrier outage)")
    human = outreach(settings, "explain", "c1", "--now", NOW).stdout
    assert "PAUSED (carrier outage): nothing is sent" in human and "silenced until" in human

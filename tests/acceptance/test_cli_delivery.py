"""The delivery commands as a user runs them: preview, explain, run --once, check, and usage errors.

Each test writes a settings.toml, rules and templates to tmp_path and invokes `outreach` with
click's CliRunner; exit codes are the contract's (0 success, 1 wrong input, 2 usage error).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from outreach.cli import cli
from outreach.state.models import Customer, Order
from tests.worlds import TEMPLATES

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

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
"""


def write_settings(
    root: Path, database_url: str, rules: Path | None = None, templates: Path | None = None
) -> Path:
    if rules is None:
        rules = root / "rules"
        rules.mkdir(exist_ok=True)
        (rules / "rules.yaml").write_text(RULES, encoding="utf-8")
    if templates is None:
        templates = root / "templates"
        for name, text in TEMPLATES.items():
            (templates / name).parent.mkdir(parents=True, exist_ok=True)
            (templates / name).write_text(text, encoding="utf-8")
    settings = root / "settings.toml"
    settings.write_text(
        f'[database]\nurl = "{database_url}"\n'
        f'[paths]\nrules = "{rules}"\ntemplates = "{templates}"\noutbox = "var/outbox.jsonl"\n',
        encoding="utf-8",
    )
    return settings


def outreach(settings: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--settings", str(settings), *args], catch_exceptions=False)


def add_customer(
    engine: Engine, cid: str, *, email_opt_in: bool = True, sms_opt_in: bool = True, order: str | None = None
) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(Customer.__table__).values(  # type: ignore[attr-defined]
                id=cid,
                name=f"Customer {cid}",
                email=f"{cid}@example.com",
                phone="+447700900123",
                locale="en",
                timezone="UTC",
                email_opt_in=email_opt_in,
                sms_opt_in=sms_opt_in,
                attributes={},
            )
        )
        if order:
            connection.execute(
                sa.insert(Order.__table__).values(  # type: ignore[attr-defined]
                    id=order,
                    customer_id=cid,
                    status="shipped",
                    placed_at=NOW - timedelta(days=5),
                    promised_at=NOW - timedelta(days=2),
                    total=40.0,
                    currency="GBP",
                    attributes={},
                )
            )


def test_preview_json_is_the_documented_shape_and_changes_nothing(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    settings = write_settings(tmp_path, database_url)
    add_customer(engine, "c1", order="o1")
    add_customer(engine, "c2", order="o2", email_opt_in=False, sms_opt_in=False)
    result = outreach(settings, "preview", "late-delivery", "--json", "--now", "2026-11-24T12:00:00Z")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    assert list(document) == ["rule", "now", "matches"]
    assert document["rule"] == "late-delivery" and datetime.fromisoformat(document["now"]) == NOW
    assert [list(m) for m in document["matches"]] == [
        ["customer_id", "entity_id", "channel", "decision", "reason"]
    ] * 2
    first, second = document["matches"]
    assert (first["customer_id"], first["entity_id"], first["channel"], first["decision"]) == (
        "c1",
        "o1",
        "sms",
        "send",
    )
    assert (second["customer_id"], second["entity_id"], second["decision"]) == ("c2", "o2", "suppressed")
    assert all(m["reason"] for m in document["matches"])
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM contacts")).scalar_one() == 0


def test_explain_json_says_for_each_rule_whether_it_holds_and_what_would_be_decided(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    settings = write_settings(tmp_path, database_url)
    add_customer(engine, "c1", order="o1", sms_opt_in=False)
    result = outreach(settings, "explain", "c1", "--json", "--now", "2026-11-24T12:00:00Z")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["customer_id"] == "c1" and datetime.fromisoformat(document["now"]) == NOW
    [rule] = document["rules"]
    [record] = rule["records"]
    assert (rule["rule"], record["entity_id"], record["condition"], record["decision"]) == (
        "late-delivery",
        "o1",
        "holds",
        "send",
    )
    assert record["reason"] and any(step["step"] for step in record["steps"])


def test_explain_of_an_unknown_customer_exits_1(tmp_path: Path, sqlite_url: str, engine: Engine) -> None:
    result = outreach(write_settings(tmp_path, sqlite_url), "explain", "nobody", "--json")
    assert result.exit_code == 1 and "nobody" in result.stderr


def test_run_once_sends_what_is_due_and_a_second_run_sends_nothing_more(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    settings = write_settings(tmp_path, database_url)
    add_customer(engine, "c1", order="o1")
    for _ in range(2):
        result = outreach(settings, "run", "--once", "--now", "2026-11-24T12:00:00Z")
        assert result.exit_code == 0, result.output
    lines = (tmp_path / "var" / "outbox.jsonl").read_text(encoding="utf-8").splitlines()
    [message] = [json.loads(line) for line in lines]
    assert (message["customer_id"], message["rule"], message["channel"]) == ("c1", "late-delivery", "sms")


def test_check_exits_1_listing_the_problems_of_a_broken_rules_folder(tmp_path: Path, sqlite_url: str) -> None:
    settings = write_settings(tmp_path, sqlite_url, rules=REPO / "tests" / "data" / "rules_bad")
    result = outreach(settings, "check")
    assert result.exit_code == 1
    assert "checkout.yaml:" in result.stderr and "cart_valu" in result.stderr


@pytest.mark.skipif(not (REPO / "templates").is_dir(), reason="the shipped templates folder is not there yet")
def test_check_exits_0_on_the_shipped_rules_and_templates(tmp_path: Path, sqlite_url: str) -> None:
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    settings = write_settings(tmp_path, sqlite_url, rules=tmp_path / "rules", templates=REPO / "templates")
    result = outreach(settings, "check")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok: 3 rule(s)")


@pytest.mark.parametrize(
    "args",
    [
        ["preview"],
        ["preview", "late-delivery", "--now", "next tuesday"],
        ["run", "--twice"],
        ["explain"],
    ],
    ids=["missing rule", "bad instant", "unknown option", "missing customer"],
)
def test_a_usage_error_exits_2(tmp_path: Path, sqlite_url: str, args: list[str]) -> None:
    result = outreach(write_settings(tmp_path, sqlite_url), *args)
    assert result.exit_code == 2, result.output

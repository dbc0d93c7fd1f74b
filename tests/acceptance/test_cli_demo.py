"""`outreach demo`, the README's first command: the whole flow on the bundled sample customers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from outreach.cli import cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The shipped settings, rules and templates, as a fresh clone has them."""
    for folder in ("rules", "templates"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    shutil.copy(REPO / "settings.toml", tmp_path / "settings.toml")
    return tmp_path


def demo(root: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--settings", str(root / "settings.toml"), "demo", *args])


def test_the_demo_runs_and_says_what_was_sent_and_why_the_others_were_not(checkout: Path) -> None:
    result = demo(checkout)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "bundled sample customers, outbox channel" in out
    for rule in ("late-delivery", "stalled-checkout", "detractor-follow-up"):
        assert rule in out
    assert "sent by outbox" in out  # what was sent, with its reason
    assert "no channel left" in out  # why a customer without consent was not contacted
    outbox = checkout / "var" / "outbox.jsonl"
    assert f"messages written to {outbox}" in out
    assert outbox.read_text(encoding="utf-8").strip()


def test_the_demo_at_an_instant_counts_each_outcome_and_writes_one_outbox_line_per_message(
    checkout: Path,
) -> None:
    result = demo(checkout, "--now", "2026-03-02T12:00:00Z", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    outcomes = {c["outcome"] for c in document["contacts"]}
    assert {"sent", "suppressed", "skipped: cap", "deferred"} <= outcomes
    assert sum(c["count"] for c in document["counts"]) == len(document["contacts"])
    lines = Path(document["outbox"]).read_text(encoding="utf-8").splitlines()
    assert len(lines) == document["sent"] == sum(c["outcome"] == "sent" for c in document["contacts"])
    assert {json.loads(line)["customer_id"] for line in lines} == {
        c["customer_id"] for c in document["contacts"] if c["outcome"] == "sent"
    }


def test_the_demo_starts_from_a_clean_slate_each_time(checkout: Path) -> None:
    first = demo(checkout, "--now", "2026-03-02T12:00:00Z", "--json")
    second = demo(checkout, "--now", "2026-03-02T12:00:00Z", "--json")
    assert first.exit_code == second.exit_code == 0
    assert json.loads(first.stdout)["contacts"] == json.loads(second.stdout)["contacts"]
    outbox = checkout / "var" / "outbox.jsonl"
    assert len(outbox.read_text(encoding="utf-8").splitlines()) == json.loads(second.stdout)["sent"]

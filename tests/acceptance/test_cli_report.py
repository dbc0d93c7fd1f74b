"""`outreach report` as a user runs it: goals for rules with a goal only, the documented JSON,
the funnel, a warning on small groups, and a bad --since as a usage error."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine

from tests.acceptance.test_cli_delivery import NOW, add_customer, outreach, write_settings

RULES = """\
rules:
  - name: late-delivery
    about: order
    when: order.delivered_at is null and order.promised_at < now() - 1d
    channels: [email]
    template: notice
    holdout: 50%
    goal: order.status == "delivered"

  - name: no-goal
    about: order
    when: order.delivered_at is null
    channels: [email]
    template: notice
"""


def test_report_json_compares_goal_rates_of_rules_with_a_goal_and_lists_the_funnel(
    tmp_path: Path, database_url: str, engine: Engine
) -> None:
    settings = write_settings(tmp_path, database_url)
    (tmp_path / "rules" / "rules.yaml").write_text(RULES, encoding="utf-8")
    for i in range(6):
        add_customer(engine, f"c{i}", order=f"o{i}")
    assert outreach(settings, "run", "--once", "--now", NOW.isoformat()).exit_code == 0

    result = outreach(settings, "report", "--json", "--since", "3650d")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {"since", "now", "paused", "silenced", "contacts", "goals", "funnel"} <= set(document)
    [goal] = document["goals"]
    assert list(goal) == ["rule", "contacted", "holdout", "uplift", "ci95", "p_value", "enough"]
    assert goal["rule"] == "late-delivery" and goal["enough"] is False
    assert goal["contacted"]["count"] + goal["holdout"]["count"] == 6
    assert {f["rule"]: f["matched"] for f in document["funnel"]} == {"late-delivery": 6, "no-goal": 6}
    assert {f["rule"]: f["goal_met"] for f in document["funnel"]} == {"late-delivery": 0, "no-goal": None}

    human = outreach(settings, "report", "--since", "3650d")
    assert human.exit_code == 0, human.output
    assert "warning: late-delivery: too few to tell" in human.stdout
    assert "funnel" in human.stdout


def test_a_bad_since_is_a_usage_error(tmp_path: Path, sqlite_url: str) -> None:
    result = outreach(write_settings(tmp_path, sqlite_url), "report", "--since", "7x")
    assert result.exit_code == 2
    assert "'7x' is not a duration" in result.output

"""A rule's goal, measured for contacted and held-out matches alike."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Engine

from outreach.rules.evaluate import matches_query
from outreach.rules.loader import Rule
from outreach.state import ledger


def measure_goals(engine: Engine, rules: Sequence[Rule], now: datetime) -> int:
    """Mark contacted and held-out matches whose rule's `goal` holds at NOW, within `goal_window`.

    Both groups are measured the same way, so `outreach report` can compare them: the holdout
    is what would have happened without the message. Returns how many goals were newly met.
    """
    met = 0
    with engine.begin() as connection:
        for rule in rules:
            if rule.goal_condition is None or rule.goal_window is None:
                continue
            since = now - rule.goal_window
            # One query: the goal's, among the rule's open matches (the ledger's subquery), so
            # only the matches that reached it leave the database.
            query = matches_query(
                rule.about,
                rule.goal_condition,
                connection.dialect.name,
                now,
                restrict=ledger.goal_open(rule.name, since),
            )
            reached = [str(entity) for entity, _customer in connection.execute(query)]
            met += ledger.mark_goal_met(connection, rule.name, reached, since, now)
    return met

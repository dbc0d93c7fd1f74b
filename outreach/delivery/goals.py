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
            candidates = ledger.goal_candidates(connection, rule.name, now - rule.goal_window)
            for start in range(0, len(candidates), 500):
                chunk = candidates[start : start + 500]
                query = matches_query(
                    rule.about,
                    rule.goal_condition,
                    connection.dialect.name,
                    now,
                    entity_ids=[e for _c, e in chunk],
                )
                reached = {str(entity) for entity, _customer in connection.execute(query)}
                done = [contact for contact, entity in chunk if entity in reached]
                ledger.mark_goal_met(connection, done, now)
                met += len(done)
    return met

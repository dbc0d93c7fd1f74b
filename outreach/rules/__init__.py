"""The rule language: rules files, the `when` grammar, and its compilers to SQL and to Python."""

from outreach.rules.evaluate import Match, condition_holds, find_matches, matches_query
from outreach.rules.loader import Rule, RuleSet, check_rules, load_rules

__all__ = [
    "Match",
    "Rule",
    "RuleSet",
    "check_rules",
    "condition_holds",
    "find_matches",
    "load_rules",
    "matches_query",
]

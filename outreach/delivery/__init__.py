"""Delivery: decide what to do with each match, dispatch what is due, measure goals, open tasks.

decide     matches → policy decisions → the ledger (the one decision point)
dispatch   due contacts → send-time checks → render → channel → outcome
goals      a rule's goal, for contacted and held-out matches
tasks      tasks for a person (`escalate: true`) and their webhook
"""

"""The table printed after a tick: what was sent, and why the others were not."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from outreach.daemon import OnceResult
from outreach.preview import decision_word


def print_summary(console: Console, result: OnceResult) -> None:
    table = Table(title=f"{len(result.tick.decisions)} match(es), {result.dispatch.sent} sent")
    for column in ("rule", "customer", "record", "channel", "outcome", "reason"):
        table.add_column(column)
    for decision in sorted(result.tick.decisions, key=lambda d: (d.rule, d.customer_id, d.entity_id)):
        # A contact sent (or cancelled, failed…) in this tick shows its final state.
        state, reason = result.dispatch.outcomes.get(
            decision.dedupe_key, (decision_word(decision, result.now), decision.reason)
        )
        if state == "sent":
            reason = f"{decision.reason}; {reason}"
        table.add_row(
            decision.rule, decision.customer_id, decision.entity_id, decision.channel or "-", state, reason
        )
    console.print(table)
    d = result.dispatch
    console.print(
        f"dispatch: {d.sent} sent, {d.cancelled} cancelled, {d.failed} failed, {d.retried} to retry, "
        f"{d.unknown} unknown, {d.expired} expired" + (" — PAUSED, nothing sent" if d.paused else ""),
        markup=False,
    )
    if result.tick.tasks:
        console.print(f"{len(result.tick.tasks)} task(s) opened for a person (outreach tasks)", markup=False)

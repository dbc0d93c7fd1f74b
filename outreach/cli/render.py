"""How the CLI shows results to people: Rich tables on a terminal. The library returns values;
only this module knows how they look."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from outreach.preview import PreviewResult, decision_word
from outreach.state import ledger
from outreach.tick import TickReport

if TYPE_CHECKING:
    from outreach.studio.sending import TestSendResult


def print_preview(console: Console, result: PreviewResult) -> None:
    table = Table(title=f"{result.rule} at {result.now.isoformat()}: {len(result.matches)} match(es)")
    for column in ("customer", "entity", "channel", "decision", "reason"):
        table.add_column(column)
    for row in result.matches:
        table.add_row(
            row["customer_id"], row["entity_id"], row["channel"] or "-", row["decision"], row["reason"]
        )
    console.print(table)
    for row in result.matches:
        message = row.get("message")
        if not message:
            continue
        console.rule(f"{row['customer_id']} · {row['entity_id']} · {row['channel']}")
        if "error" in message:
            console.print(f"cannot render: {message['error']}", markup=False)
        elif row["channel"] == "email":
            console.print(f"Subject: {message['subject']}\n\n{message['text']}", markup=False)
        else:
            console.print(
                f"{message['sms']}\n[{message['segments']} segment(s), {message['encoding']}]", markup=False
            )


def print_explain(console: Console, report: dict[str, Any]) -> None:
    console.print(f"customer {report['customer_id']} at {report['now']}", markup=False)
    for entry in report["rules"]:
        state = "" if entry["enabled"] else " (disabled)"
        console.print(f"\nrule {entry['rule']}{state}: when {entry['when']}", markup=False)
        if not entry["records"]:
            console.print(f"  no {entry['about']} records for this customer", markup=False)
        for record in entry["records"]:
            console.print(
                f"  {entry['about']} {record['entity_id']}: condition {record['condition']}", markup=False
            )
            for step in record.get("steps", []):
                console.print(f"    {step['step']}: {step['outcome']}", markup=False)
            if "decision" in record:
                console.print(f"    → {record['decision']}: {record['reason']}", markup=False)
            if "ledger" in record:
                row = record["ledger"]
                console.print(
                    f"    ledger: {row['state']} ({row['reason']}) via {row['channel'] or '-'} at {row['decided_at']}",
                    markup=False,
                )


def print_tasks(console: Console, found: list[ledger.Task]) -> None:
    table = Table(title=f"{len(found)} task(s)")
    for column in ("created", "rule", "customer", "record", "status", "summary"):
        table.add_column(column)
    for task in found:
        table.add_row(
            task.created_at.isoformat(timespec="minutes"),
            task.rule,
            task.customer_id,
            task.entity_id,
            task.status,
            task.summary,
        )
    console.print(table)


def print_report(console: Console, data: dict[str, Any]) -> None:
    if data["paused"]:
        console.print("ledger.PAUSED: nothing is being sent (outreach resume)", markup=False)
    for rule, silence_info in data["silenced"].items():
        console.print(
            f"silenced: {rule} until {silence_info['until']} ({silence_info['reason']})", markup=False
        )
    table = Table(title=f"contacts decided since {data['since']}")
    for column in ("rule", "state", "channel", "count"):
        table.add_column(column)
    for row in data["contacts"]:
        table.add_row(row["rule"], row["state"], row["channel"] or "-", str(row["count"]))
    console.print(table)
    if data["goals"]:
        goals = Table(title="goals: contacted vs held out")
        for column in ("rule", "contacted", "met", "holdout", "met", "uplift"):
            goals.add_column(column)
        for entry in data["goals"]:
            contacted, holdout = entry.get("contacted") or {}, entry.get("holdout") or {}

            def rate(group: dict[str, Any]) -> str:
                return "-" if not group else f"{group['goal_met']} ({group['rate']:.0%})"

            uplift = f"{entry['uplift']:+.1%}" if "uplift" in entry else "-"
            goals.add_row(
                entry["rule"],
                str(contacted.get("count", 0)),
                rate(contacted),
                str(holdout.get("count", 0)),
                rate(holdout),
                uplift,
            )
        console.print(goals)


def print_summary(console: Console, result: TickReport) -> None:
    assert result.dispatch is not None, "a summary is printed for a tick that dispatched"
    table = Table(title=f"{len(result.decided.decisions)} match(es), {result.dispatch.sent} sent")
    for column in ("rule", "customer", "record", "channel", "outcome", "reason"):
        table.add_column(column)
    for decision in sorted(result.decided.decisions, key=lambda d: (d.rule, d.customer_id, d.entity_id)):
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
    if result.decided.tasks:
        console.print(
            f"{len(result.decided.tasks)} task(s) opened for a person (outreach tasks)", markup=False
        )


def print_test_send(console: Console, result: TestSendResult) -> None:
    record = f", {result.record_id}" if result.record_id else ""
    via = f"{result.provider} {result.provider_id}" if result.provider else "nothing"
    console.print(
        f"test {result.outcome}: {result.target} ({result.channel}, {result.locale}) as {result.customer_id}"
        f"{record} to {result.to} via {via}",
        markup=False,
        soft_wrap=True,
    )
    if result.channel == "email":
        console.print(f"Subject: {result.subject}", markup=False, soft_wrap=True)
    else:
        console.print(
            f"{result.sms}\n[{result.segments} segment(s), {result.encoding}]", markup=False, soft_wrap=True
        )

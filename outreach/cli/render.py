"""How the CLI shows results to people: Rich tables on a terminal. The library returns values;
only this module knows how they look."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from outreach.controls import Report
from outreach.preview import CustomerExplanation, PreviewResult, TickDecision, decision_word
from outreach.rules.testing import RuleTestRun
from outreach.state import ledger
from outreach.tick import TickReport
from outreach.uplift import Group

if TYPE_CHECKING:
    from outreach.studio.sending import TestSendResult


def print_preview(console: Console, result: PreviewResult) -> None:
    table = Table(title=f"{result.rule} at {result.now.isoformat()}: {len(result.matches)} match(es)")
    for column in ("customer", "entity", "channel", "decision", "reason"):
        table.add_column(column)
    for match in result.matches:
        table.add_row(match.customer_id, match.entity_id, match.channel or "-", match.decision, match.reason)
    console.print(table)
    for match in result.matches:
        message = match.message
        if message is None:
            continue
        console.rule(f"{match.customer_id} · {match.entity_id} · {match.channel}")
        if message.error is not None:
            console.print(f"cannot render: {message.error}", markup=False)
        elif match.channel == "email":
            console.print(f"Subject: {message.subject}\n\n{message.text}", markup=False)
        else:
            console.print(f"{message.sms}\n[{message.segments} segment(s), {message.encoding}]", markup=False)


def _decision_line(d: TickDecision) -> str:
    return f"{d.rule} {d.entity_id} → {d.decision}" + (f" ({d.channel})" if d.channel else "")


def print_explain(console: Console, report: CustomerExplanation) -> None:
    def say(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True)

    say(f"customer {report.customer_id} at {report.now.isoformat()}")
    if report.paused is not None:
        say(f"PAUSED ({report.paused.reason}): nothing is sent until `outreach resume`")
    if report.tick:
        say("this tick for the customer: " + "; ".join(_decision_line(d) for d in report.tick))
    for entry in report.rules:
        state = "" if entry.enabled else " (disabled: what it would decide on its own)"
        say(f"\nrule {entry.rule}{state}: when {entry.when}")
        if entry.silenced is not None:
            say(f"  {entry.silenced.describe()}")
        if not entry.records:
            say(f"  no {entry.about} records for this customer")
        for record in entry.records:
            say(
                f"  {entry.about} {record.entity_id}: condition {'holds' if record.holds else 'does not hold'}"
            )
            for clause in record.failing:
                say(f"    {clause.describe()}")
            for step, outcome in record.steps:
                say(f"    {step}: {outcome}")
            if record.decision is not None:
                say(f"    → {record.decision}: {record.reason}")
            if record.held is not None:
                say(f"    held: {record.held.describe()}")
            if record.competing:
                say("    competing in this tick: " + "; ".join(_decision_line(d) for d in record.competing))
            if record.ledger is not None:
                row = record.ledger
                say(
                    f"    ledger: {row.state} ({row.reason}) via {row.channel or '-'} at {row.decided_at.isoformat()}"
                )


def print_rule_tests(console: Console, errors: Console, run: RuleTestRun) -> None:
    """promtool-style: a line per test; for a failure, which instant, which contact, expected vs got."""
    for result in run.results:
        if result.passed:
            console.print(f"ok   {result.name}", markup=False, soft_wrap=True)
            continue
        console.print(f"FAIL {result.name} ({result.file}:{result.line})", markup=False, soft_wrap=True)
        for failure in result.failures:
            for line in failure.describe().splitlines():
                console.print(f"    {line}", markup=False, soft_wrap=True)
    for problem in run.problems:
        errors.print(problem.format(), markup=False, soft_wrap=True)
    summary = f"{len(run.results) - run.failed} passed, {run.failed} failed"
    if run.problems:
        summary += f", {len(run.problems)} problem(s) in the test files"
    console.print(summary, markup=False)


def print_tasks(console: Console, found: list[ledger.Task]) -> None:
    table = Table(title=f"{len(found)} task(s)")
    for column in ("id", "created", "rule", "customer", "reach", "status", "summary"):
        table.add_column(column)
    for task in found:
        who = task.detail.get("customer", {}) if isinstance(task.detail, dict) else {}
        reach = " / ".join(str(who[k]) for k in ("name", "phone", "email") if who.get(k))
        status = task.status if task.status == "open" else f"closed: {task.note or ''}"
        table.add_row(
            task.id,
            task.created_at.isoformat(timespec="minutes"),
            task.rule,
            task.customer_id,
            reach,
            status,
            task.summary,
        )
    console.print(table)


def task_json(task: ledger.Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "rule": task.rule,
        "customer_id": task.customer_id,
        "entity_id": task.entity_id,
        "summary": task.summary,
        "status": task.status,
        "created_at": task.created_at.isoformat(),
        "closed_at": task.closed_at.isoformat() if task.closed_at else None,
        "note": task.note,
        "webhook": {"status": task.webhook_status, "attempts": task.webhook_attempts},
        **task.detail,
    }


def _rate(group: Group) -> str:
    rate = group.rate
    return "-" if rate is None else f"{group.goal_met}/{group.count} ({rate:.1%})"


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def print_report(console: Console, report: Report) -> None:
    if report.pause_reason is not None:
        console.print(
            f"PAUSED: nothing is being sent ({report.pause_reason}); `outreach resume` to resume",
            markup=False,
        )
    for silence in report.silences:
        until = silence.until.isoformat() if silence.until else "further notice"
        console.print(f"silenced: {silence.rule} until {until} ({silence.reason})", markup=False)
    table = Table(title=f"contacts decided since {report.since.isoformat()}")
    for column in ("rule", "state", "channel", "count"):
        table.add_column(column)
    for row in report.contacts:
        table.add_row(row.rule, row.state, row.channel or "-", str(row.count))
    console.print(table)
    if report.funnel:
        funnel = Table(
            title="funnel: matched → decided (assigned to the message) → sent → delivered → goal met"
        )
        for column in ("rule", "matched", "decided", "held out", "sent", "delivered", "goal met"):
            funnel.add_column(column, justify="left" if column == "rule" else "right")
        for f in report.funnel:
            goal = "-" if f.goal_met is None else str(f.goal_met)
            numbers = (f.matched, f.decided, f.held_out, f.sent, f.delivered)
            funnel.add_row(f.rule, *(str(n) for n in numbers), goal)
        console.print(funnel)
        console.print(
            "delivered: as the provider reported it (SendGrid, Twilio); the outbox and console report nothing",
            markup=False,
        )
    if report.goals:
        goals = Table(title="goals: every match assigned to the message vs the holdout (intention to treat)")
        for column in ("rule", "contacted: met", "holdout: met", "uplift (points)", "95% CI", "p"):
            goals.add_column(column)
        for entry in report.goals:
            u = entry.uplift
            interval = "-" if u.ci95 is None else f"{_points(u.ci95[0])} to {_points(u.ci95[1])}"
            goals.add_row(
                entry.rule,
                _rate(u.contacted),
                _rate(u.holdout),
                "-" if u.difference is None else _points(u.difference),
                interval,
                "-" if u.p_value is None else f"{u.p_value:.3g}",
            )
        console.print(goals)
        for entry in report.goals:
            if entry.warning:
                console.print(f"warning: {entry.rule}: {entry.warning}", markup=False)
    if report.steps:
        steps = Table(title="journeys: each step sent, and the goals met after it (before the next step)")
        for column in ("rule", "step", "sent", "goal met after"):
            steps.add_column(column, justify="left" if column == "rule" else "right")
        for s in report.steps:
            steps.add_row(s.rule, str(s.step), str(s.sent), str(s.goal_met_after))
        console.print(steps)


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

"""How the CLI shows results to people: Rich tables on a terminal. The library returns values;
only this module knows how they look."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # names for annotations only: a command imports what it runs, no more
    from outreach.backtest import BacktestResult
    from outreach.checks import Checked
    from outreach.controls import Report, SilenceInfo
    from outreach.preview import CustomerExplanation, PreviewMatch, PreviewResult, TickDecision, TickPreview
    from outreach.rule_tests import RuleTestRun
    from outreach.state import ledger
    from outreach.studio.sending import TestSendResult
    from outreach.summary import ContactOutcome, RunSummary
    from outreach.uplift import Group


def print_preview(console: Console, result: PreviewResult) -> None:
    table = Table(title=f"{result.rule} at {result.now.isoformat()}: {len(result.matches)} match(es)")
    for column in ("customer", "entity", "channel", "decision", "reason"):
        table.add_column(column)
    for match in result.matches:
        table.add_row(match.customer_id, match.entity_id, match.channel or "-", match.decision, match.reason)
    console.print(table)
    _print_messages(console, result.matches)


def print_tick_preview(console: Console, result: TickPreview) -> None:
    """`preview --all`: every match of the tick with its rule, then the decisions counted."""
    table = Table(title=f"the tick at {result.now.isoformat()}: {len(result.matches)} match(es)")
    for column in ("rule", "customer", "entity", "channel", "decision", "reason"):
        table.add_column(column)
    for m in result.matches:
        match = m.match
        table.add_row(
            m.rule, match.customer_id, match.entity_id, match.channel or "-", match.decision, match.reason
        )
    console.print(table)
    counts = Counter((m.rule, m.match.decision) for m in result.matches)
    if counts:
        console.print(
            "; ".join(f"{rule}: {count} {decision}" for (rule, decision), count in sorted(counts.items())),
            markup=False,
        )
    _print_messages(console, [m.match for m in result.matches])


def _print_messages(console: Console, matches: Sequence[PreviewMatch]) -> None:
    for match in matches:
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
    return f"{d.rule} {d.entity_id}{_step_words(d.step, d.of)} → {d.decision}" + (
        f" ({d.channel})" if d.channel else ""
    )


def _step_words(step: int, of: int) -> str:
    """ " step 2 of 3" for a rule with follow-up steps; nothing for one without."""
    return f" step {step} of {of}" if of > 1 else ""


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
                step = f",{_step_words(record.step, record.of)}" if record.of > 1 else ""
                say(f"    → {record.decision}{step}: {record.reason}")
            if record.held is not None:
                say(f"    held: {record.held.describe()}")
            if record.competing:
                say("    competing in this tick: " + "; ".join(_decision_line(d) for d in record.competing))
            if record.ledger is not None:
                row = record.ledger
                say(
                    f"    ledger:{_step_words(row.step, record.of) + ':' if record.of > 1 else ''}"
                    f" {row.state} ({row.reason})"
                    f" via {row.channel or '-'} at {row.decided_at.isoformat()}"
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


# The order of outcome columns in the run summary: what left, what waits, what was held back.
_OUTCOMES = ("sent", "send", "deferred", "held", "to retry", "holdout", "suppressed")


def _outcome_order(outcome: str) -> tuple[int, str]:
    if outcome in _OUTCOMES:
        return (_OUTCOMES.index(outcome), outcome)
    return (len(_OUTCOMES) + (0 if outcome.startswith("skipped") else 1), outcome)


def print_holds(console: Console, paused: str | None, silences: Sequence[SilenceInfo]) -> None:
    """The pause and the silences in force, one line each."""
    if paused is not None:
        console.print(
            f"PAUSED ({paused}): nothing is sent until `outreach resume`", markup=False, soft_wrap=True
        )
    for silence in silences:
        until = silence.until.isoformat() if silence.until else "further notice"
        console.print(
            f"silenced: {silence.rule} until {until} ({silence.reason})", markup=False, soft_wrap=True
        )


def print_summary(console: Console, summary: RunSummary, *, rows: bool = False) -> None:
    """A tick for people: outcome counts per rule; with ROWS, every contact and its reason."""
    console.print(
        f"tick at {summary.now.isoformat()}: {summary.matches} match(es), {summary.sent} sent",
        markup=False,
        soft_wrap=True,
    )
    print_holds(console, summary.pause_reason, summary.silences)
    outcomes = sorted({c.outcome for c in summary.counts}, key=_outcome_order)
    if outcomes:
        table = Table(title="contacts by rule and outcome")
        table.add_column("rule")
        for outcome in outcomes:
            table.add_column(outcome, justify="right")
        by_rule: dict[str, dict[str, int]] = {}
        for count in summary.counts:
            by_rule.setdefault(count.rule, {})[count.outcome] = count.count
        for rule, counted in sorted(by_rule.items()):
            table.add_row(rule, *(str(counted.get(o, "")) for o in outcomes))
        console.print(table)
    if rows and summary.contacts:
        _print_contacts(console, summary.contacts)
        console.print()
    if summary.decided_before:
        console.print(f"{summary.decided_before} match(es) decided at an earlier tick", markup=False)
    if summary.dispatch is not None:
        d = summary.dispatch
        shown = ", ".join(f"{n} {word}" for word, n in d.items() if n or word == "sent")
        console.print(
            f"dispatch: {shown}" + (" — PAUSED, nothing sent" if summary.pause_reason else ""), markup=False
        )
    for rule, error in sorted(summary.failed_rules.items()):
        console.print(f"rule {rule} failed: {error}", markup=False, soft_wrap=True)
    if summary.tasks:
        console.print(f"{summary.tasks} task(s) opened for a person (outreach tasks)", markup=False)
    if summary.contacts and not rows:
        console.print("every contact with its reason: --rows (or --json)", markup=False)


def _print_contacts(console: Console, contacts: Sequence[ContactOutcome]) -> None:
    """A line per contact under its rule, columns aligned, the reason left to wrap: a table would
    squeeze the reason into a sliver on an 80-column terminal."""
    widths = [
        max(len(value) for value in column) for column in zip(*(_cells(c) for c in contacts), strict=True)
    ]
    rule = None
    for contact in contacts:
        if contact.rule != rule:
            rule = contact.rule
            console.print(f"\n{rule}", markup=False)
        cells = "  ".join(value.ljust(width) for value, width in zip(_cells(contact), widths, strict=True))
        console.print(f"  {cells}  {contact.reason}", markup=False, soft_wrap=True)


def _cells(contact: ContactOutcome) -> tuple[str, str, str, str]:
    return (contact.customer_id, contact.entity_id, contact.channel or "-", contact.outcome)


def print_silences(console: Console, paused: str | None, silences: Sequence[SilenceInfo]) -> None:
    if paused is not None:
        console.print(f"PAUSED ({paused}): nothing is sent until `outreach resume`", markup=False)
    if not silences:
        console.print("no rule is silenced", markup=False)
        return
    table = Table(title=f"{len(silences)} silence(s)")
    for column in ("rule", "until", "reason", "since"):
        table.add_column(column)
    for silence in silences:
        table.add_row(
            silence.rule,
            silence.until.isoformat(timespec="minutes") if silence.until else "further notice",
            silence.reason,
            silence.since.isoformat(timespec="minutes") if silence.since else "-",
        )
    console.print(table)


def print_check(console: Console, errors: Console, result: Checked) -> None:
    for problem in result.problems:
        errors.print(problem.format(), markup=False, soft_wrap=True)
    if result.ok:
        console.print(
            f"ok: {len(result.rules)} rule(s) in {result.rules_dir}, {len(result.warnings)} warning(s)",
            markup=False,
            soft_wrap=True,
        )
    else:
        errors.print(f"{len(result.errors)} error(s), {len(result.warnings)} warning(s)", markup=False)


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


def _counts(counts: Any) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "-"


def print_backtest(console: Console, result: BacktestResult) -> None:
    span = f"{result.start.isoformat()} to {result.end.isoformat()}"
    console.print(
        f"backtest of {', '.join(result.rules)}: {result.ticks:,} ticks every "
        f"{result.as_json()['every']}, {span}; nothing was sent",
        markup=False,
    )
    if result.forecast_from is not None:
        console.print(
            f"forecast: the ticks after {result.forecast_from.isoformat()} run on today's state",
            markup=False,
        )
    table = Table(title="per day (UTC) and rule")
    for column in ("day", "rule", "decided", "sent", "held back", "deferred", "holdout", "expired"):
        table.add_column(
            column, justify="right" if column in ("decided", "deferred", "holdout", "expired") else "left"
        )
    for d in result.tally.days:
        table.add_row(
            d.day.isoformat(),
            d.rule,
            str(d.decided),
            _counts(d.sent),
            _counts(d.held),
            str(d.deferred),
            str(d.holdout),
            str(d.expired),
        )
    console.print(table)
    if result.tally.per_week:
        most = max((n for hist in result.tally.per_week.values() for n in hist), default=1)
        weeks = Table(title="customers by messages received in the week")
        weeks.add_column("week")
        for n in range(1, most + 1):
            weeks.add_column(f"{n} message{'s' if n > 1 else ''}", justify="right")
        for week, hist in result.tally.per_week.items():
            weeks.add_row(week, *(str(hist.get(n, 0)) for n in range(1, most + 1)))
        console.print(weeks)
    for rule, fields in result.approximate.items():
        console.print(
            f"approximate: {rule} reads {', '.join(fields)}, which a record's own instants cannot give"
            " back: before the earliest version outreach kept of a record, they are that version's",
            markup=False,
        )

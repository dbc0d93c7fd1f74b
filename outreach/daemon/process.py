"""The long-running `outreach run`: rule ticks on their cadence, continuous dispatch, reload, signals.

    BackgroundScheduler ── one job per enabled rule, fired on the rule's slot boundaries
                       │     (every `every` since the epoch) ── tick_due: every rule due now,
                       │     decided together (outreach.tick.run_tick), higher priority first
                       └── reload job: rules/templates edited? swap in the new set if it is valid
    dispatch thread ────── Dispatcher.dispatch_once and due task webhooks, every `dispatch_interval`
    http thread ────────── GET /healthz, GET /metrics, POST /events, provider webhooks
    main thread ────────── waits for SIGTERM/SIGINT, then stops within `daemon.grace_seconds`

Several daemons may share one PostgreSQL database: contacts are claimed with `FOR UPDATE SKIP
LOCKED`; tick slots are taken under an advisory lock (ledger.take_ticks), so each rule's tick
is evaluated once across the cluster and the rules due at one instant by one worker; decisions
are serialised by the ledger's decision lock. APScheduler's job stores cannot be shared between
processes, so nothing is coordinated through them. SQLite has one writer: a second daemon on
the same file is refused (an exclusive flock on `DATABASE.lock`, held for the process lifetime).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO

import sqlalchemy as sa
import structlog
from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import make_url

from outreach.app import App
from outreach.checks import check_all
from outreach.clock import utcnow
from outreach.daemon.http import Health, HttpServer, Inbound, make_app
from outreach.daemon.metrics import Metrics
from outreach.delivery.decide import evaluate, evaluate_records, limits_of
from outreach.delivery.dispatch import revive_unrendered
from outreach.delivery.tasks import post_due_tasks
from outreach.durations import parse_duration
from outreach.errors import OutreachError, RulesError, describe
from outreach.feedback import Keywords, Secrets
from outreach.policy import DUPLICATE
from outreach.rendering import Renderer
from outreach.rules.loader import Rule, RuleSet
from outreach.state import ledger
from outreach.state.models import BY_NAME
from outreach.state.records import changes_since
from outreach.tick import make_dispatcher, run_tick, worker_name

log = structlog.get_logger("outreach.daemon")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Rule jobs only wait on the daemon's tick lock while another runs the due ticks: a few threads.
TICK_THREADS = 3


class AlreadyRunning(OutreachError):
    """Another `outreach run` is already using this database."""


# -- the SQLite single-daemon lock ------------------------------------------------------------
def sqlite_lock_path(database_url: str) -> Path | None:
    """`DATABASE.lock` beside a SQLite file; None for PostgreSQL or an in-memory database."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database + ".lock")


def hold_sqlite_lock(database_url: str) -> IO[str] | None:
    """Take the exclusive lock of a SQLite database for this process; AlreadyRunning if taken.

    The lock goes with the open file: the kernel releases it when the process ends, however it
    ends, so a crashed daemon never leaves a stale lock behind.
    """
    path = sqlite_lock_path(database_url)
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115  (held until the process ends)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise AlreadyRunning(
            f"another `outreach run` (pid {holder}) is already using {url_database(database_url)}: "
            f"SQLite allows one daemon per database file (lock {path}). Stop it first, or use "
            "PostgreSQL to run several workers."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def url_database(database_url: str) -> str:
    return str(make_url(database_url).database)


# -- jobs (module functions: APScheduler must be able to name them) ---------------------------
def tick_job(daemon: Daemon) -> None:
    daemon.tick_due()


def reload_job(daemon: Daemon) -> None:
    daemon.reload()


def tick_slot(now: datetime, every: timedelta) -> datetime:
    """The start of the `every`-long slot holding NOW; equal on every worker for the same tick."""
    return EPOCH + ((now - EPOCH) // every) * every


@dataclass
class _Failures:
    """A rule's ticks that failed in a row, and the last error (for /healthz)."""

    count: int = 0
    last_error: str = ""


class Daemon:
    """One `outreach run` process; `run()` blocks until SIGTERM/SIGINT (or `stop()`)."""

    def __init__(self, app: App, stopping: threading.Event | None = None) -> None:
        self.app = app
        self.options = app.settings.daemon
        self.worker = worker_name()
        self.stopping = stopping or threading.Event()
        self.started_at = time.monotonic()
        self.last_tick: float | None = None
        self.last_dispatch: float | None = None
        self.engine = app.engine
        checked = check_all(app)
        if not checked.ok or checked.renderer is None:
            # The same refusal `outreach check` prints: the daemon does not start on a bad set.
            raise RulesError(problems=checked.errors)
        self._rules: RuleSet = checked.rules
        self._renderer: Renderer = checked.renderer
        self._fingerprint = self._files_fingerprint()
        self._scheduled: dict[str, timedelta] = {}
        self._slots: dict[str, datetime] = {}  # the newest slot of each rule this worker saw done
        self._tick_lock = threading.Lock()
        self._failures: dict[str, _Failures] = {}
        self._rejected_since: float | None = None  # monotonic time of the first rejected edit
        self._rejected: list[str] = []
        self.metrics = Metrics(queue_depth=self._queue_depth)
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": JobExecutor(TICK_THREADS)},
            job_defaults={
                "max_instances": 1,
                "coalesce": True,
                "misfire_grace_time": self.options.misfire_grace_seconds,
            },
        )
        self.dispatcher = make_dispatcher(
            app,
            lambda: self._rules,
            lambda: self._renderer,
            observe=self.metrics.observe_send,
            stopping=self.stopping,
        )
        self._dispatch_thread = threading.Thread(target=self._dispatch_loop, name="dispatch", daemon=True)
        # Records that arrived (POST /events) and tables loaded by `outreach ingest`, evaluated at
        # once by their own thread; the dispatcher is woken as soon as something was decided.
        self._arrived: queue.Queue[tuple[str, list[str]]] = queue.Queue()
        self._events_thread = threading.Thread(target=self._events_loop, name="events", daemon=True)
        self._wake = threading.Event()
        self._changes_seen: int | None = None
        server, heard = app.settings.server, app.settings.feedback
        inbound = Inbound(
            self.engine,
            Secrets.from_environ(),
            public_url=server.public_url,
            rules=lambda: self._rules,
            keywords=Keywords.of(heard.opt_out_keywords, heard.opt_in_keywords),
            sendgrid_max_age=parse_duration(heard.sendgrid_event_max_age),
            on_records=self.on_records,
        )
        self.http = HttpServer(make_app(self.health, self.metrics, inbound), server.host, server.port)

    # -- lifecycle ------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until asked to stop; 0 once in-flight sends are done (or the grace ran out)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        if self.stopping.is_set():  # asked to stop while starting up
            log.info("stopped", worker=self.worker)
            return 0
        self.http.start()
        self._schedule(self._rules)
        self.scheduler.add_job(
            reload_job,
            IntervalTrigger(seconds=self.options.reload_interval),
            args=(self,),
            id="reload",
        )
        self.scheduler.start()
        self._dispatch_thread.start()
        self._events_thread.start()
        log.info(
            "started",
            worker=self.worker,
            rules=[r.name for r in self._rules if r.enabled],
            http_port=self.http.port,
            database=self.engine.dialect.name,
        )
        while not self.stopping.wait(0.5):
            pass
        return self._shutdown()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        self.stopping.set()
        self._wake.set()

    def _shutdown(self) -> int:
        deadline = time.monotonic() + self.options.grace_seconds
        # No new ticks; ticks already running finish (their decisions are committed a chunk at a time).
        self.scheduler.pause()
        stopper = threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True}, daemon=True)
        stopper.start()
        self._dispatch_thread.join(max(0.0, deadline - time.monotonic()))
        self._events_thread.join(max(0.0, deadline - time.monotonic()))
        stopper.join(max(0.0, deadline - time.monotonic()))
        clean = not self._dispatch_thread.is_alive() and not stopper.is_alive()
        if clean:
            self.dispatcher.close()
        self.http.stop(timeout=2)
        if not clean:
            # Sends still on the wire stay `sending`: when their lease ends, the next daemon
            # marks them unknown rather than sending them again.
            log.warning("grace_exceeded", grace_seconds=self.options.grace_seconds)
            os._exit(0)
        log.info("stopped", worker=self.worker)
        self.app.close()
        return 0

    # -- scheduling -----------------------------------------------------------------------
    def _schedule(self, rules: RuleSet) -> None:
        """Add, remove and re-time the tick jobs so there is one per enabled rule.

        A rule's job fires on its slot boundaries (multiples of `every` since the epoch), so rules
        due at the same instant fire together and the first job to run ticks all of them."""
        wanted = {rule.name: rule.every for rule in rules if rule.enabled}
        for name in set(self._scheduled) - set(wanted):
            self.scheduler.remove_job(f"rule:{name}")
            log.info("rule_unscheduled", rule=name)
        for name, every in wanted.items():
            if self._scheduled.get(name) == every:
                continue
            self.scheduler.add_job(
                tick_job,
                IntervalTrigger(seconds=every.total_seconds(), start_date=EPOCH, timezone=UTC),
                args=(self,),
                id=f"rule:{name}",
                replace_existing=True,
                next_run_time=datetime.now(UTC),
            )
            log.info("rule_scheduled", rule=name, every_seconds=every.total_seconds())
        self._scheduled = wanted

    def tick_due(self) -> None:
        """Tick every enabled rule whose slot has come and that no worker has done yet, together."""
        if self.stopping.is_set():
            return
        with self._tick_lock:
            now = utcnow()
            due = [
                (rule, tick_slot(now, rule.every))
                for rule in self._rules
                if rule.enabled
                and tick_slot(now, rule.every) > self._slots.get(rule.name, EPOCH - rule.every)
            ]
            if not due:
                return
            slots = [(rule.name, slot) for rule, slot in due]
            with self.engine.begin() as connection:
                taken = set(ledger.take_ticks(connection, slots, now, self.worker))
            for name, slot in slots:
                self._slots[name] = slot
                if name not in taken:
                    self.metrics.ticks.labels(name, "skipped").inc()
            rules = [rule for rule, _slot in due if rule.name in taken]
            if rules:
                self._tick(rules, [s for s in slots if s[0] in taken], now)
            self.last_tick = time.monotonic()

    def _tick(self, rules: list[Rule], slots: list[tuple[str, datetime]], now: datetime) -> None:
        started = time.perf_counter()
        try:
            report = run_tick(self.app, rules, now)
        except Exception as exc:
            for rule in rules:
                self._failed(rule.name, exc)
            log.exception("tick_failed", rules=[r.name for r in rules])
            # Give the slots back: the next job (here or on another worker) runs them again.
            with contextlib.suppress(Exception), self.engine.begin() as connection:
                ledger.release_ticks(connection, slots, self.worker)
            for name, _slot in slots:
                self._slots.pop(name, None)
            return
        seconds = time.perf_counter() - started
        for rule in rules:
            error = report.decided.failed.get(rule.name)
            if error is not None:
                self._failed(rule.name, error)
                continue
            self._failures.pop(rule.name, None)
            mine = [d for d in report.decided.decisions if d.rule == rule.name]
            self.metrics.observe_tick(rule.name, mine, seconds)
        log.info(
            "tick",
            rules=[r.name for r in rules],
            now=now.isoformat(),
            matches=len(report.decided.decisions),
            recorded=report.decided.recorded,
            displaced=report.decided.displaced,
            tasks=len(report.decided.tasks),
            goals_met=report.goals_met,
            failed=sorted(report.decided.failed),
            seconds=round(seconds, 3),
        )

    def _failed(self, rule: str, error: BaseException | str) -> None:
        entry = self._failures.setdefault(rule, _Failures())
        entry.count += 1
        entry.last_error = error if isinstance(error, str) else describe(error)
        self.metrics.ticks.labels(rule, "failed").inc()

    # -- dispatch -------------------------------------------------------------------------
    def on_records(self, table: str, ids: list[str]) -> None:
        """Records of TABLE were loaded (POST /events): evaluate them now, not at the next tick."""
        self._arrived.put((table, ids))

    def _events_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                table, ids = self._arrived.get(timeout=0.5)
            except queue.Empty:
                continue
            # Everything that arrived meanwhile is evaluated together, a table at a time.
            arrived: dict[str, set[str]] = {table: set(ids)}
            while True:
                try:
                    more_table, more_ids = self._arrived.get_nowait()
                except queue.Empty:
                    break
                arrived.setdefault(more_table, set()).update(more_ids)
            for name, found in arrived.items():
                self._evaluate_arrivals(name, sorted(found))

    def _evaluate_arrivals(self, table: str, ids: list[str]) -> None:
        rules = [rule for rule in self._rules if rule.enabled]
        now = utcnow()
        try:
            result = evaluate_records(
                self.engine,
                rules,
                table,
                ids,
                now,
                limits_of(self.app.settings),
                announce_tasks=bool(self.app.settings.escalation.webhook_url),
            )
        except Exception:
            log.exception("event_evaluation_failed", table=table, records=len(ids))
            return
        new = [d for d in result.decisions if d.state != DUPLICATE]
        log.info(
            "records_evaluated", table=table, records=len(ids), decided=len(new), recorded=result.recorded
        )
        if result.recorded:
            self._wake.set()

    def _notice_ingests(self) -> None:
        """Tables `outreach ingest` loaded since the last look: evaluate the rules about them now."""
        with self.engine.connect() as connection:
            newest, tables = changes_since(connection, self._changes_seen)
        first = self._changes_seen is None
        self._changes_seen = newest
        if first or not tables:
            return
        abouts = {str(BY_NAME[t].about) for t in tables if t in BY_NAME}
        everything = "customer" in abouts  # a customer's change can matter to any rule
        rules = [r for r in self._rules if r.enabled and (everything or r.about in abouts)]
        if not rules:
            return
        now = utcnow()
        result = evaluate(self.engine, rules, now, limits_of(self.app.settings))
        log.info(
            "ingest_noticed", tables=sorted(tables), rules=[r.name for r in rules], recorded=result.recorded
        )

    def _dispatch_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self._notice_ingests()
            except Exception:
                log.exception("ingest_notice_failed")
            try:
                now = utcnow()
                stats = self.dispatcher.dispatch_once(now, clock=utcnow)
                post_due_tasks(self.engine, self.app.settings, now)
                self.last_dispatch = time.monotonic()
                if stats.outcomes:
                    log.info(
                        "dispatched",
                        sent=stats.sent,
                        retried=stats.retried,
                        deferred=stats.deferred,
                        held=stats.held,
                        rerouted=stats.rerouted,
                        failed=stats.failed,
                        cancelled=stats.cancelled,
                        expired=stats.expired,
                        suppressed=stats.suppressed,
                        unknown=stats.unknown,
                    )
            except Exception:
                self.metrics.dispatch_errors.inc()
                log.exception("dispatch_failed")
            # Until the next round, or at once when an arrival was decided.
            self._wake.wait(self.options.dispatch_interval)
            self._wake.clear()

    # -- reload ---------------------------------------------------------------------------
    def _files_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        found: list[tuple[str, int, int]] = []
        for folder in (self.app.rules_dir, self.app.templates_dir):
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted while we looked: the next poll sees it
                    continue
                found.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(sorted(found))

    def reload(self) -> bool:
        """Swap in edited rules and templates if `outreach check` accepts them; True if it did.

        The reload runs exactly `check` (outreach.checks.check_all): an edit it refuses is logged
        with every message `check` prints and the last good set keeps running."""
        fingerprint = self._files_fingerprint()
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        try:
            checked = check_all(self.app)
        except OutreachError as exc:
            problems = [p.format() for p in getattr(exc, "problems", [])] or [str(exc)]
        else:
            problems = [p.format() for p in checked.errors]
        if problems or checked.renderer is None:
            self.metrics.reload_failures.inc()
            if self._rejected_since is None:
                self._rejected_since = time.monotonic()
            self._rejected = problems
            log.error("reload_rejected", problems=problems, keeping=[r.name for r in self._rules])
            return False
        self._rules, self._renderer = checked.rules, checked.renderer
        self._rejected_since, self._rejected = None, []
        self.metrics.reloads.inc()
        self._schedule(checked.rules)
        with self.engine.begin() as connection:
            revived = revive_unrendered(connection, utcnow())
        log.info("reloaded", rules=[r.name for r in checked.rules if r.enabled], revived=revived)
        return True

    # -- health ---------------------------------------------------------------------------
    def _queue_depth(self) -> int:
        with self.engine.connect() as connection:
            return ledger.queue_depth(connection, utcnow())

    def health(self) -> Health:
        now = time.monotonic()
        scheduler_running = bool(self.scheduler.running) and not self.stopping.is_set()
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            database = True
        except Exception as exc:  # noqa: BLE001 - any failure means unreachable
            database = False
            log.warning("health_database_unreachable", error=type(exc).__name__)
        enabled = [r for r in self._rules if r.enabled]
        tick_age = now - (self.last_tick if self.last_tick is not None else self.started_at)
        # A tick is late when it missed its own cadence twice (plus a minute for a slow one).
        limit = 2 * max((r.every for r in enabled), default=timedelta(0)).total_seconds() + 60
        ticks_ok = not enabled or tick_age <= limit
        failing = {
            rule: {"failures": f.count, "last_error": f.last_error}
            for rule, f in self._failures.items()
            if f.count >= self.options.unhealthy_after_failures
        }
        rejected_for = None if self._rejected_since is None else now - self._rejected_since
        reload_ok = (
            rejected_for is None or rejected_for <= self.options.unhealthy_after_rejected_reload_seconds
        )
        dispatch_age = None if self.last_dispatch is None else round(now - self.last_dispatch, 3)
        healthy = scheduler_running and database and ticks_ok and not failing and reload_ok
        return Health(
            healthy,
            {
                "worker": self.worker,
                "scheduler_running": scheduler_running,
                "database_reachable": database,
                "last_tick_age_seconds": None if self.last_tick is None else round(now - self.last_tick, 3),
                "ticks_on_time": ticks_ok,
                "failing_rules": failing,
                "reload_rejected_for_seconds": None if rejected_for is None else round(rejected_for, 1),
                "reload_problems": self._rejected,
                "last_dispatch_age_seconds": dispatch_age,
                "rules": [r.name for r in enabled],
            },
        )


def serve(app: App) -> int:
    """Run the daemon until SIGTERM/SIGINT; the process exit code."""
    lock = hold_sqlite_lock(app.settings.database_url)
    # A SIGTERM while the database, rules and templates load means "don't start": exit 0.
    stopping = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stopping.set())
    try:
        return Daemon(app, stopping).run()
    finally:
        if lock is not None:
            lock.close()

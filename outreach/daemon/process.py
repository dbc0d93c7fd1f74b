"""The long-running `outreach run`: rule ticks on their cadence, continuous dispatch, reload, signals.

    BackgroundScheduler ── one job per enabled rule (every `every`) ── tick: evaluate + tasks
                       └── reload job: rules/templates edited? swap in the new set if it is valid
    dispatch thread ────── Dispatcher.dispatch_once every `daemon.dispatch_interval`
    http thread ────────── GET /healthz, GET /metrics
    main thread ────────── waits for SIGTERM/SIGINT, then stops within `daemon.grace_seconds`

Several daemons may share one PostgreSQL database: contacts are claimed with `FOR UPDATE SKIP
LOCKED`, and each rule's tick slot is taken under an advisory lock (ledger.take_tick), so a
tick is evaluated once across the cluster. APScheduler's job stores cannot be shared between
processes, so nothing is coordinated through them. SQLite has one writer: a second daemon on
the same file is refused (an exclusive flock on `DATABASE.lock`, held for the process lifetime).
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
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
from outreach.clock import utcnow
from outreach.daemon.http import Health, HttpServer, Inbound, make_app
from outreach.daemon.metrics import Metrics
from outreach.errors import OutreachError
from outreach.feedback import Secrets
from outreach.rendering import Renderer
from outreach.rules.loader import Rule, RuleSet
from outreach.state import ledger
from outreach.tick import make_dispatcher, run_tick, worker_name

log = structlog.get_logger("outreach.daemon")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Each tick holds two connections on PostgreSQL (the tick slot and the evaluation); a few
# concurrent ticks plus the dispatcher's senders stay within SQLAlchemy's default pool.
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
def tick_job(daemon: Daemon, rule_name: str) -> None:
    daemon.tick(rule_name)


def reload_job(daemon: Daemon) -> None:
    daemon.reload()


def tick_slot(now: datetime, every: timedelta) -> datetime:
    """The start of the `every`-long slot holding NOW; equal on every worker for the same tick."""
    return EPOCH + ((now - EPOCH) // every) * every


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
        self._rules: RuleSet = app.load_rules()
        self._renderer = Renderer(app.settings)
        self._fingerprint = self._files_fingerprint()
        self._scheduled: dict[str, timedelta] = {}
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
        server = app.settings.server
        inbound = Inbound(self.engine, Secrets.from_environ(), public_url=server.public_url)
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

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("stop_requested", signal=signal.Signals(signum).name)
        self.stopping.set()

    def _shutdown(self) -> int:
        deadline = time.monotonic() + self.options.grace_seconds
        # No new ticks; ticks already running finish (they are one transaction each).
        self.scheduler.pause()
        stopper = threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True}, daemon=True)
        stopper.start()
        self._dispatch_thread.join(max(0.0, deadline - time.monotonic()))
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
        """Add, remove and re-time the tick jobs so there is one per enabled rule."""
        wanted = {rule.name: rule.every for rule in rules if rule.enabled}
        for name in set(self._scheduled) - set(wanted):
            self.scheduler.remove_job(f"rule:{name}")
            log.info("rule_unscheduled", rule=name)
        for name, every in wanted.items():
            if self._scheduled.get(name) == every:
                continue
            self.scheduler.add_job(
                tick_job,
                IntervalTrigger(seconds=every.total_seconds(), timezone=UTC),
                args=(self, name),
                id=f"rule:{name}",
                replace_existing=True,
                next_run_time=datetime.now(UTC),
            )
            log.info("rule_scheduled", rule=name, every_seconds=every.total_seconds())
        self._scheduled = wanted

    def tick(self, rule_name: str) -> None:
        """Run one rule's tick at one instant, unless another worker did this slot already."""
        rules = self._rules
        rule: Rule | None = next((r for r in rules if r.name == rule_name and r.enabled), None)
        if rule is None or self.stopping.is_set():
            return
        now = utcnow()
        slot = tick_slot(now, rule.every)
        started = time.perf_counter()
        try:
            if self.engine.dialect.name == "sqlite":
                # One writer: the slot row must be committed before the tick writes, or the
                # two connections wait on each other. The file lock makes this daemon the only one.
                with self.engine.begin() as connection:
                    ledger.take_tick(connection, rule.name, slot, now, self.worker)
                report = run_tick(self.app, [rule], now)
            else:
                with self.engine.begin() as connection:
                    if not ledger.take_tick(connection, rule.name, slot, now, self.worker):
                        self.metrics.ticks.labels(rule.name, "skipped").inc()
                        self.last_tick = time.monotonic()
                        log.debug("tick_skipped", rule=rule.name, slot=slot.isoformat())
                        return
                    # Run while the slot row and the advisory lock are held: if this fails,
                    # the slot is released for another worker.
                    report = run_tick(self.app, [rule], now)
        except Exception:
            self.metrics.ticks.labels(rule.name, "failed").inc()
            log.exception("tick_failed", rule=rule.name)
            return
        seconds = time.perf_counter() - started
        self.last_tick = time.monotonic()
        self.metrics.observe_tick(rule.name, report.decided.decisions, seconds)
        log.info(
            "tick",
            rule=rule.name,
            now=now.isoformat(),
            matches=len(report.decided.decisions),
            recorded=report.decided.recorded,
            tasks=len(report.decided.tasks),
            goals_met=report.goals_met,
            seconds=round(seconds, 3),
        )

    # -- dispatch -------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                stats = self.dispatcher.dispatch_once(utcnow(), clock=utcnow)
                self.last_dispatch = time.monotonic()
                if stats.outcomes:
                    log.info(
                        "dispatched",
                        sent=stats.sent,
                        retried=stats.retried,
                        failed=stats.failed,
                        cancelled=stats.cancelled,
                        expired=stats.expired,
                        unknown=stats.unknown,
                    )
            except Exception:
                self.metrics.dispatch_errors.inc()
                log.exception("dispatch_failed")
            self.stopping.wait(self.options.dispatch_interval)

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
        """Swap in edited rules and templates if they are valid; True if anything changed."""
        fingerprint = self._files_fingerprint()
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        try:
            rules = self.app.load_rules()
            renderer = Renderer(self.app.settings)
        except OutreachError as exc:
            self.metrics.reload_failures.inc()
            problems = [p.format() for p in getattr(exc, "problems", [])] or [str(exc)]
            log.error("reload_rejected", problems=problems, keeping=[r.name for r in self._rules])
            return False
        self._rules, self._renderer = rules, renderer
        self.metrics.reloads.inc()
        self._schedule(rules)
        log.info("reloaded", rules=[r.name for r in rules if r.enabled])
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
        dispatch_age = None if self.last_dispatch is None else round(now - self.last_dispatch, 3)
        healthy = scheduler_running and database and ticks_ok
        return Health(
            healthy,
            {
                "worker": self.worker,
                "scheduler_running": scheduler_running,
                "database_reachable": database,
                "last_tick_age_seconds": None if self.last_tick is None else round(now - self.last_tick, 3),
                "ticks_on_time": ticks_ok,
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

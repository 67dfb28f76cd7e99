"""When runs happen: the APScheduler 3.x loop behind ``digest schedule``, its cron trigger and
fire times, and the signal handling that makes a stop clean.

Who is due at a given run is decided by ``digest.subscribers`` (pure functions of ``now``);
the run itself is ``digest.pipeline.run``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from .config import Config, Schedule, load
from .errors import ConfigError, DigestError, LockedError
from .subscribers import describe_timing, load_profiles, never_due

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger(__name__)

Runner = Callable[[Config, threading.Event], Any]


def cron_trigger(
    schedule: Schedule, *, seconds: str | None = None, where: object = "config"
) -> CronTrigger:
    """The trigger for ``[schedule]`` (``where`` names the file in errors); ``seconds`` (a
    cron field for seconds) replaces the expression, so a test sees a run within a second."""
    from apscheduler.triggers.cron import CronTrigger

    tz = ZoneInfo(schedule.timezone)
    try:
        if seconds is not None:
            return CronTrigger(second=seconds, timezone=tz)
        return CronTrigger.from_crontab(schedule.cron, timezone=tz)
    except ValueError as exc:
        raise ConfigError(
            f"{where}: [schedule] cron: {schedule.cron!r} is not a cron expression ({exc}); use "
            "five fields: minute hour day month weekday, e.g. '0 7 * * *' or '0 * * * *'"
        ) from exc


def fire_times(
    trigger: CronTrigger, after: datetime, until: datetime, *, limit: int = 100_000
) -> list[datetime]:
    """Every time ``trigger`` fires in (after, until], in order (as the scheduler sees it),
    at most ``limit`` of them."""
    tz = trigger.timezone
    out: list[datetime] = []
    previous: datetime | None = None
    now = (after.astimezone(UTC) + timedelta(microseconds=1)).astimezone(tz)
    end = until.astimezone(UTC)
    while True:
        nxt = trigger.get_next_fire_time(previous, now)
        if nxt is None or nxt.astimezone(UTC) > end or len(out) >= limit:
            return out
        out.append(nxt)
        # The scheduler asks again just after a fire, with a local "now" (fold set right).
        previous, now = nxt, (nxt.astimezone(UTC) + timedelta(microseconds=1)).astimezone(tz)


def next_run(cfg: Config, now: datetime) -> datetime | None:
    """When ``digest schedule`` fires next after ``now``."""
    return cron_trigger(cfg.schedule, where=cfg.path).get_next_fire_time(None, now)


def run_pipeline(cfg: Config, stop: threading.Event) -> Any:
    from .pipeline import run  # when a run starts: `digest status` needs only the trigger

    return run(cfg, stop=stop)


def run_job(config_path: Any, stop: threading.Event, runner: Runner = run_pipeline) -> bool:
    """One scheduled run: re-read the config, take the run lock, run, log the outcome.

    Never raises: a failing run is logged and the scheduler carries on. Returns whether
    the run completed without problems.
    """
    from .pipeline import run_lock

    if stop.is_set():
        return False
    try:
        cfg = load(config_path)
        with run_lock(cfg):
            summary = runner(cfg, stop)
    except LockedError as exc:
        log.warning("skipping this run: %s", exc)
        return False
    except DigestError as exc:
        log.error("run failed: %s; the scheduler carries on", exc)
        return False
    except Exception:
        log.exception("run failed with an unexpected error; the scheduler carries on")
        return False
    log.info("run finished: %s", summary_line(summary))
    return bool(getattr(summary, "ok", True))


def summary_line(summary: Any) -> str:
    """One log line for a RunSummary."""
    if not hasattr(summary, "as_dict"):
        return str(summary)
    d = summary.as_dict()
    parts = [
        f"edition {d['edition']}",
        f"{d.get('due', 0)} due",
        f"{d['sent']} sent",
        f"{d['already_sent']} already sent",
        f"{d['deferred_total']} deferred",
        f"{d['failed_total']} failed",
    ]
    if d.get("elsewhere"):
        parts.append(f"{d['elsewhere']} sent by another run")
    if d["nothing"]:
        parts.append(f"{d['nothing']} with nothing new")
    if d["feed_errors"]:
        parts.append(f"{len(d['feed_errors'])} feed(s) failed")
    if d["profile_errors"]:
        parts.append(f"{len(d['profile_errors'])} subscriber error(s)")
    if d.get("stopped"):
        parts.append(f"stopped early, {d.get('left', 0)} left for the next run")
    return ", ".join(parts)


def serve(
    cfg: Config,
    stop: threading.Event,
    *,
    runner: Runner = run_pipeline,
    trigger: CronTrigger | None = None,
    run_now: bool = False,
) -> None:
    """Run the pipeline on ``[schedule]`` until ``stop`` is set, then wait for the run in
    progress (which stops after the message in flight) and return."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
    from apscheduler.schedulers.background import BackgroundScheduler

    tz = ZoneInfo(cfg.schedule.timezone)
    label = f"cron {cfg.schedule.cron!r}" if trigger is None else str(trigger)
    trigger = trigger or cron_trigger(cfg.schedule, where=cfg.path)
    warn_never_due(cfg, trigger)
    scheduler = BackgroundScheduler(timezone=tz)
    extra: dict[str, Any] = {"next_run_time": datetime.now(tz)} if run_now else {}
    job = scheduler.add_job(
        run_job,
        trigger,
        args=(cfg.path, stop, runner),
        id="digest-run",
        name="digest run",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=cfg.schedule.misfire_grace_seconds,
        **extra,
    )

    def log_next(_event: JobExecutionEvent) -> None:
        if not stop.is_set() and job.next_run_time is not None:
            log.info("next run at %s", _when(job.next_run_time))

    scheduler.add_listener(log_next, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()
    log.info(
        "scheduler started: %s (%s); next run at %s",
        label,
        cfg.schedule.timezone,
        _when(job.next_run_time),
    )
    try:
        while not stop.wait(1.0):
            pass
        log.info("stopping; a run in progress first finishes the message in flight")
    finally:
        scheduler.shutdown(wait=True)
    log.info("scheduler stopped")


def warn_never_due(cfg: Config, trigger: CronTrigger, now: datetime | None = None) -> None:
    """Warn about subscribers whose send hour this schedule never reaches."""
    try:
        profiles, _ = load_profiles(cfg.subscribers_path)
    except DigestError as exc:
        log.warning("%s", exc)
        return
    start = now or datetime.now(ZoneInfo(cfg.schedule.timezone))
    times = fire_times(trigger, start, start + timedelta(days=8), limit=10_000)
    missed = never_due(cfg, profiles, times)
    for p in missed:
        log.warning(
            "%s (%s) is never due with this schedule: they want theirs %s, but the schedule "
            'does not run then; run hourly ([schedule] cron = "0 * * * *")',
            p.email,
            p.path or "",
            describe_timing(p),
        )


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM / SIGINT set ``stop`` (a clean exit); a second one exits at once."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: exiting now, without waiting for the run", name)
            for h in logging.getLogger().handlers:
                h.flush()
            os._exit(1)
        log.info("%s received: stopping after the message in flight", name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _when(value: datetime | None) -> str:
    if value is None:
        return "never (the schedule has no more fire times)"
    return value.strftime("%Y-%m-%d %H:%M:%S %Z")

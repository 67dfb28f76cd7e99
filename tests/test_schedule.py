"""When runs fire and who is due: cron triggers across DST, the `due` rule, the job wrapper,
and `digest schedule` as a real process stopped by a signal."""

from __future__ import annotations

import itertools
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from digest.config import Config, Schedule, load
from digest.models import Profile
from digest.pipeline import run_lock
from digest.schedule import cron_trigger, fire_times, run_job
from digest.subscribers import (
    NOT_DUE,
    NOT_THEIR_DAY,
    due,
    never_due,
    subscriber_edition,
    why_not_due,
)

from .conftest import FEEDS, write_config, write_subscriber

PARIS = ZoneInfo("Europe/Paris")
TOKYO = ZoneInfo("Asia/Tokyo")
LA = ZoneInfo("America/Los_Angeles")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local_times(times: list[datetime], tz: ZoneInfo) -> list[str]:
    return [t.astimezone(tz).strftime("%m-%d %H:%M %Z") for t in times]


# ---------------------------------------------------------------- the trigger


def test_daily_cron_fires_at_the_local_hour_across_both_dst_changes() -> None:
    trigger = cron_trigger(Schedule(cron="0 7 * * *", timezone="Europe/Paris"))
    spring = fire_times(trigger, utc(2026, 3, 27), utc(2026, 3, 31))
    assert local_times(spring, PARIS) == [
        "03-27 07:00 CET",
        "03-28 07:00 CET",
        "03-29 07:00 CEST",  # the clocks went forward that night
        "03-30 07:00 CEST",
    ]
    assert [t.astimezone(UTC).hour for t in spring] == [6, 6, 5, 5]
    autumn = fire_times(trigger, utc(2026, 10, 24), utc(2026, 10, 27))
    assert local_times(autumn, PARIS) == ["10-24 07:00 CEST", "10-25 07:00 CET", "10-26 07:00 CET"]
    assert [t.astimezone(UTC).hour for t in autumn] == [5, 6, 6]


def test_hourly_cron_fires_every_real_hour_through_dst_changes() -> None:
    trigger = cron_trigger(Schedule(cron="0 * * * *", timezone="Europe/Paris"))
    spring_day = fire_times(
        trigger,
        datetime(2026, 3, 29, tzinfo=PARIS) - timedelta(seconds=1),
        datetime(2026, 3, 29, 23, 59, tzinfo=PARIS),
    )
    autumn_day = fire_times(
        trigger,
        datetime(2026, 10, 25, tzinfo=PARIS) - timedelta(seconds=1),
        datetime(2026, 10, 25, 23, 59, tzinfo=PARIS),
    )
    assert len(spring_day) == 23 and len(autumn_day) == 25
    for times in (spring_day, autumn_day):
        in_utc = [t.astimezone(UTC) for t in times]  # (same-zone arithmetic is wall-clock)
        assert {b - a for a, b in itertools.pairwise(in_utc)} == {timedelta(hours=1)}
    assert "03-29 02:00" not in " ".join(local_times(spring_day, PARIS))


def test_a_time_inside_the_changed_hour() -> None:
    """02:30 does not exist on the spring day and happens twice on the autumn day.

    APScheduler fires once at 03:30 in spring and twice in autumn; the second run finds every
    digest of that edition already in the delivery log, so nobody gets two.
    """
    trigger = cron_trigger(Schedule(cron="30 2 * * *", timezone="Europe/Paris"))
    spring = fire_times(trigger, utc(2026, 3, 29), utc(2026, 3, 29, 23))
    assert [t.astimezone(UTC).strftime("%H:%M") for t in spring] == ["01:30"]  # 03:30 CEST
    autumn = fire_times(trigger, utc(2026, 10, 25), utc(2026, 10, 25, 23))
    assert [t.astimezone(UTC).strftime("%H:%M") for t in autumn] == ["00:30", "01:30"]


@pytest.mark.parametrize("cron", ["0 * * * *", "30 2 * * *"])
@pytest.mark.parametrize("late", [timedelta(0), timedelta(milliseconds=500)])
def test_the_scheduler_moves_on_after_the_repeated_hour(cron: str, late: timedelta) -> None:
    """The scheduler asks for the next fire time until it is after "now" (APScheduler's
    Job._get_run_times). APScheduler 3.11.0 answered the second 02:00 again, forever
    (agronholm/apscheduler#1021, fixed in 3.11.1/3.11.2): the scheduler hung that night."""
    trigger = cron_trigger(Schedule(cron=cron, timezone="Europe/Paris"))
    second_pass = utc(2026, 10, 25, 1, 0 if cron.startswith("0 ") else 30).astimezone(PARIS)
    assert second_pass.fold == 1
    now = (second_pass.astimezone(UTC) + late).astimezone(PARIS)
    run_times, nxt = [], second_pass
    for _ in range(5):  # the scheduler's loop, bounded
        if nxt is None or nxt.astimezone(UTC) > now.astimezone(UTC):
            break
        run_times.append(nxt)
        nxt = trigger.get_next_fire_time(nxt, now)
    assert run_times == [second_pass]
    expected = utc(2026, 10, 25, 2, 0) if cron.startswith("0 ") else utc(2026, 10, 26, 1, 30)
    assert nxt is not None and nxt.astimezone(UTC) == expected


def test_a_bad_cron_expression_is_rejected_with_the_config() -> None:
    with pytest.raises(ValidationError, match=r"'0 7 \* \*' is not a cron expression"):
        Schedule(cron="0 7 * *", timezone="UTC")


# ---------------------------------------------------------------- who is due


def profile(**kw: object) -> Profile:
    return Profile(email=str(kw.pop("email", "a@example.org")), interests="x", **kw)  # type: ignore[arg-type]


def test_due_at_or_after_the_local_send_hour_on_the_local_date() -> None:
    p = profile(timezone="Europe/Paris", send_hour=7)
    day = date(2026, 6, 12)
    assert why_not_due(p, datetime(2026, 6, 12, 6, 59, tzinfo=PARIS), day) == NOT_DUE
    assert due(p, datetime(2026, 6, 12, 7, 0, tzinfo=PARIS), day)
    assert due(p, datetime(2026, 6, 12, 23, 30, tzinfo=PARIS), day)  # a late run still sends
    assert not due(p, datetime(2026, 6, 11, 23, 0, tzinfo=PARIS), day)  # the day before
    assert due(p, datetime(2026, 6, 14, 1, 0, tzinfo=PARIS), day)  # a past edition: backfill


def test_each_subscriber_is_on_their_own_local_date() -> None:
    cfg = Config.model_validate({"sender": {"address": "d@example.org"}, "timezone": "UTC"})
    at = utc(2026, 6, 12, 23, 0)  # 08:00 on the 13th in Tokyo, 16:00 on the 12th in LA
    tokyo = profile(timezone="Asia/Tokyo", send_hour=8)
    la = profile(timezone="America/Los_Angeles", send_hour=8)
    anytime = profile(timezone="Asia/Tokyo")  # no send hour: the service's date and schedule
    assert subscriber_edition(cfg, tokyo, at) == date(2026, 6, 13)
    assert subscriber_edition(cfg, la, at) == date(2026, 6, 12)
    assert subscriber_edition(cfg, anytime, at) == date(2026, 6, 12)
    assert due(tokyo, at, date(2026, 6, 13)) and due(la, at, date(2026, 6, 12))
    assert due(anytime, at, date(2026, 6, 12))


def test_weekly_is_due_on_its_weekday_only() -> None:
    p = profile(frequency="weekly", weekday="friday", timezone="UTC", send_hour=7)
    friday, saturday = date(2026, 6, 12), date(2026, 6, 13)
    assert due(p, utc(2026, 6, 12, 7), friday)
    assert why_not_due(p, utc(2026, 6, 13, 7), saturday) == NOT_THEIR_DAY
    assert why_not_due(p, utc(2026, 6, 12, 6), friday) == NOT_DUE


def simulate_hourly(p: Profile, start: datetime, until: datetime) -> list[datetime]:
    """Hourly runs in [start, until) with a delivery log keyed by (email, edition): when
    each send happens."""
    cfg = Config.model_validate({"sender": {"address": "d@example.org"}})
    sent: set[date] = set()
    times = []
    now = start.astimezone(UTC)
    while now < until:
        ed = subscriber_edition(cfg, p, now)
        if ed not in sent and due(p, now, ed):
            sent.add(ed)
            times.append(now)
        now += timedelta(hours=1)
    return times


@pytest.mark.parametrize("hour", [1, 2, 3])
def test_dst_neither_skips_nor_doubles_a_send(hour: int) -> None:
    p = profile(timezone="Europe/Paris", send_hour=hour)
    spring = simulate_hourly(
        p, datetime(2026, 3, 27, tzinfo=PARIS), datetime(2026, 3, 31, tzinfo=PARIS)
    )
    autumn = simulate_hourly(
        p, datetime(2026, 10, 23, tzinfo=PARIS), datetime(2026, 10, 27, tzinfo=PARIS)
    )
    for sends in (spring, autumn):
        days = [t.astimezone(PARIS).date() for t in sends]
        assert len(days) == len(set(days)) == 4  # one a day, every day
    spring_hours = [t.astimezone(PARIS).hour for t in spring]
    # 02:00 does not exist on 29 March: that day's digest comes at 03:00.
    assert spring_hours == [hour, hour, 3 if hour == 2 else hour, hour]
    assert [t.astimezone(PARIS).hour for t in autumn] == [hour] * 4


def test_two_zones_each_at_their_own_hour() -> None:
    start, until = utc(2026, 6, 12, 15), utc(2026, 6, 14, 15)
    tokyo = simulate_hourly(profile(timezone="Asia/Tokyo", send_hour=8), start, until)
    la = simulate_hourly(profile(timezone="America/Los_Angeles", send_hour=8), start, until)
    assert [t.strftime("%d %H") for t in tokyo] == ["12 23", "13 23"]  # 08:00 JST
    assert [t.strftime("%d %H") for t in la] == ["12 15", "13 15"]  # 08:00 PDT


def test_subscribers_a_schedule_never_reaches_are_found() -> None:
    cfg = Config.model_validate({"sender": {"address": "d@example.org"}})
    la = profile(email="la@example.org", timezone="America/Los_Angeles", send_hour=8)
    paris = profile(email="paris@example.org", timezone="Europe/Paris", send_hour=8)
    anytime = profile(email="any@example.org")
    start = utc(2026, 6, 12)
    daily = fire_times(cron_trigger(Schedule(cron="0 7 * * *")), start, start + timedelta(days=8))
    hourly = fire_times(cron_trigger(Schedule(cron="0 * * * *")), start, start + timedelta(days=8))
    # 07:00 UTC is midnight in Los Angeles (never past 08:00 on that date) and 09:00 in Paris.
    assert never_due(cfg, [la, paris, anytime], daily) == [la]
    assert never_due(cfg, [la, paris, anytime], hourly) == []


# ---------------------------------------------------------------- one scheduled job


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def test_a_failing_run_is_logged_and_the_scheduler_carries_on(
    config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stop = threading.Event()
    calls: list[str] = []

    def broken(cfg: Config, _stop: threading.Event) -> None:
        calls.append("broken")
        raise RuntimeError("boom")

    def fine(cfg: Config, _stop: threading.Event) -> str:
        calls.append("fine")
        return "edition 2026-06-12: 3 sent"

    with caplog.at_level(logging.INFO, logger="digest"):
        assert run_job(config_path, stop, broken) is False
        assert run_job(config_path, stop, fine) is True
    assert calls == ["broken", "fine"]
    assert "run failed with an unexpected error; the scheduler carries on" in caplog.text
    assert "RuntimeError: boom" in caplog.text
    assert "run finished: edition 2026-06-12: 3 sent" in caplog.text


def test_a_run_already_in_progress_is_skipped(
    config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    with run_lock(load(config_path)), caplog.at_level(logging.INFO, logger="digest"):
        assert run_job(config_path, threading.Event(), lambda c, s: calls.append(1)) is False
    assert calls == []
    assert "skipping this run: another digest run holds" in caplog.text


def test_a_broken_config_fails_the_run_not_the_scheduler(
    config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_path.write_text(config_path.read_text() + "\ntypo_key = 1\n")
    with caplog.at_level(logging.INFO, logger="digest"):
        assert run_job(config_path, threading.Event(), lambda c, s: None) is False
    assert "run failed:" in caplog.text and "typo_key" in caplog.text


# ---------------------------------------------------------------- `digest schedule` for real


def _lines(stream: object) -> Iterator[str]:
    yield from iter(stream.readline, "")  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_digest_schedule_runs_then_stops_cleanly_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    cfg_path = write_config(
        tmp_path, feeds=[("huggingface", str(FEEDS / "hf-daily-papers-2026-06-12.json"))]
    )
    write_subscriber(
        tmp_path / "subscribers",
        "ada",
        """
        email = "ada@example.org"
        interests = "large language models, reasoning, reinforcement learning"
    """,
    )
    digest = Path(sys.executable).with_name("digest")
    proc = subprocess.Popen(
        [str(digest), "schedule", "--config", str(cfg_path), "--cron-seconds", "*"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(x) for x in _lines(proc.stdout)], daemon=True
    )
    reader.start()
    seen: list[str] = []

    def wait_for(text: str, timeout: float = 60) -> None:
        deadline = datetime.now() + timedelta(seconds=timeout)
        while not any(text in line for line in seen):
            left = (deadline - datetime.now()).total_seconds()
            if left <= 0 or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"no {text!r} in the output:\n{''.join(seen)}")
            try:
                seen.append(lines.get(timeout=left))
            except queue.Empty:
                continue

    try:
        wait_for("scheduler started")
        wait_for("run finished")
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()
    while not lines.empty():
        seen.append(lines.get())
    out = "".join(seen)
    assert "run finished: edition" in out and "1 sent" in out
    assert f"{sig.name} received: stopping after the message in flight" in out
    assert "scheduler stopped" in out
    assert "Traceback" not in out
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 1

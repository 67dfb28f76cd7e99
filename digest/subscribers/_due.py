"""Who is due when: the edition each subscriber is on at a given moment and whether it is
due then (pure functions of ``now``).

A subscriber with a ``send_hour`` is on the edition of their own local date and is due
once their local wall-clock hour is at or past ``send_hour`` on that date. "At or past"
(not "equal to") is what makes daylight-saving changes safe: a skipped hour still sends
later that day, and the delivery log, keyed by (email, edition), stops a repeated hour
from sending twice. A subscriber without a ``send_hour`` is on the service's date (the
config's ``timezone``) and is due at every run: the schedule decides when.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from ..config import Config
from ..models import Profile
from ._files import WEEKDAYS

NOT_DUE = "not due yet (send_hour)"
NOT_THEIR_DAY = "weekly, not their day"


def edition_for(cfg: Config, now: datetime) -> date:
    """Today's edition on the service's clock: the date in the configured timezone.
    (A subscriber with a send hour is on their own local date: see ``subscriber_edition``.)
    """
    return now.astimezone(ZoneInfo(cfg.timezone)).date()


def subscriber_edition(cfg: Config, profile: Profile, now: datetime) -> date:
    """The edition ``profile`` is on at ``now``: their local date if they have a send hour,
    else the service's date in the config's ``timezone``."""
    zone = cfg.timezone if profile.send_hour is None else profile.timezone
    return now.astimezone(ZoneInfo(zone)).date()


def why_not_due(profile: Profile, now: datetime, edition: date) -> str | None:
    """None when ``profile`` should get ``edition`` at ``now``; otherwise the reason not."""
    if profile.frequency == "weekly" and edition.weekday() != WEEKDAYS.index(profile.weekday):
        return NOT_THEIR_DAY
    if profile.send_hour is None:
        return None
    local = now.astimezone(ZoneInfo(profile.timezone))
    if local.date() > edition:  # a past edition (backfill, or a run that was late)
        return None
    if local.date() < edition or local.hour < profile.send_hour:
        return NOT_DUE
    return None


def when_due(profile: Profile, now: datetime) -> str:
    """When a subscriber who is not due at ``now`` is due next, for people: 'at 07:00
    Europe/Paris, in 2 h 5 min' or 'weekly on monday: at the first run on Mon 14 Dec'."""
    zone = ZoneInfo(profile.timezone)
    local = now.astimezone(zone)
    for ahead in range(8):
        day = local.date() + timedelta(days=ahead)
        if profile.frequency == "weekly" and day.weekday() != WEEKDAYS.index(profile.weekday):
            continue
        if profile.send_hour is None:
            if ahead == 0:
                continue  # due at every run today: only a later day can be meant
            return f"{_weekly(profile)}at the first run on {day:%a %d %b}"
        at = datetime.combine(day, time(profile.send_hour), zone)
        if at > local:
            wait = int((at - local).total_seconds() // 60)
            hours = f"{wait // 60} h {wait % 60} min" if wait >= 60 else f"{wait} min"
            return (
                f"{_weekly(profile)}at {at:%H:%M} {profile.timezone} on {at:%a %d %b}, in {hours}"
            )
    return describe_timing(profile)


def _weekly(profile: Profile) -> str:
    return f"weekly on {profile.weekday}: " if profile.frequency == "weekly" else ""


def due(profile: Profile, now: datetime, edition: date) -> bool:
    """Whether ``profile`` should receive ``edition`` at ``now`` (if not already sent)."""
    return why_not_due(profile, now, edition) is None


def describe_timing(profile: Profile) -> str:
    """'daily at 07:00 Europe/Paris', 'weekly on monday at each run', ..."""
    when = (
        "at each run"
        if profile.send_hour is None
        else f"at {profile.send_hour:02d}:00 {profile.timezone}"
    )
    if profile.frequency == "weekly":
        return f"weekly on {profile.weekday} {when}"
    return f"daily {when}"


def never_due(cfg: Config, profiles: Iterable[Profile], times: Sequence[datetime]) -> list[Profile]:
    """Active subscribers that are due at none of ``times`` (say, a week of fire times):
    with a daily 07:00 UTC schedule, someone in Los Angeles with send_hour 8 never is."""
    verdict: dict[tuple[str, int | None, str, str], bool] = {}
    out = []
    for p in profiles:
        if not p.active:
            continue
        key = (p.timezone, p.send_hour, p.frequency, p.weekday)
        if key not in verdict:
            verdict[key] = any(due(p, t, subscriber_edition(cfg, p, t)) for t in times)
        if not verdict[key]:
            out.append(p)
    return out

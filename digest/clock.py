"""The time, passed in: code deep inside never reads the clock itself, it is given ``now`` (a
moment) or a ``Clock`` (a function to ask), so tests and replays choose the time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)

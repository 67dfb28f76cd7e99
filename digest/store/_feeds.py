"""Feed health: each feed's last attempt, success and error, and its ETag / Last-Modified."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import select

from ._base import Base, utc
from ._schema import FeedState


class Feeds(Base):
    def feed_state(self, name: str) -> FeedStateView:
        with self.session() as s:
            row = s.get(FeedState, name)
        return FeedStateView.of(row, name)

    def feed_states(self) -> list[FeedStateView]:
        with self.session() as s:
            rows = s.exec(select(FeedState).order_by(FeedState.name)).all()
        return [FeedStateView.of(r, r.name) for r in rows]

    def record_feed(
        self,
        name: str,
        url: str,
        now: datetime,
        *,
        error: str | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        count: int | None = None,
    ) -> None:
        with self.session() as s:
            row = s.get(FeedState, name) or FeedState(name=name)
            if row.url and row.url != url:
                row.etag = row.last_modified = None
            row.url = url
            row.last_attempt = now
            if error is None:
                row.last_success = now
                row.failures = 0
                if count is not None:  # None: 304, the feed still holds what it held
                    row.last_count = count
                if etag is not None:
                    row.etag = etag
                if last_modified is not None:
                    row.last_modified = last_modified
            else:
                row.last_error = error
                row.last_error_at = now
                row.failures += 1
            s.add(row)
            s.commit()


class FeedStateView:
    """A read-only copy of one feed's stored state."""

    __slots__ = (
        "etag",
        "failures",
        "last_attempt",
        "last_count",
        "last_error",
        "last_error_at",
        "last_modified",
        "last_success",
        "name",
        "url",
    )
    name: str
    url: str | None
    etag: str | None
    last_modified: str | None
    last_attempt: datetime | None
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    failures: int
    last_count: int

    def __init__(self, **kw: Any) -> None:
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    @classmethod
    def of(cls, row: FeedState | None, name: str) -> FeedStateView:
        if row is None:
            return cls(name=name, failures=0, last_count=0)
        return cls(
            name=row.name,
            url=row.url,
            etag=row.etag,
            last_modified=row.last_modified,
            last_attempt=utc(row.last_attempt),
            last_success=utc(row.last_success),
            last_error=row.last_error,
            last_error_at=utc(row.last_error_at),
            failures=row.failures,
            last_count=row.last_count,
        )

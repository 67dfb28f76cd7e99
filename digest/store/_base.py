"""The connection every part of the store shares, and small helpers for its queries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from . import _migrate
from ._engine import make_engine
from ._errors import sqlite_timeout

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(value: datetime | None) -> datetime | None:
    """SQLite drops tzinfo; everything we store is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Base:
    """An engine on a SQLAlchemy URL (SQLite or PostgreSQL). A new database gets its tables
    on first use; one whose schema is not this release's is refused (``SchemaError``: run
    ``digest db upgrade``); see ``_migrate``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.timeout = sqlite_timeout(url) if url.startswith("sqlite") else 30.0
        self.engine: Engine = make_engine(url)
        try:
            _migrate.ensure(self.engine, url)
        except BaseException:
            self.engine.dispose()
            raise

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

"""Engines: one per database URL, set up for SQLite or PostgreSQL, and their errors in words."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import create_engine

from ..errors import DatabaseError
from ._errors import sqlite_timeout, words_for_errors


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite: WAL, a 30 s wait for another process's lock
    (``?timeout=SECONDS`` in the URL to change it), and its troubles in words
    (``_errors``). PostgreSQL: every session in UTC, so the naive timestamps the tables
    hold are UTC whatever the server's own time zone is; every statement planned for the
    values it runs with and the tables as they are (``plan_cache_mode``: psycopg
    prepares a statement run five times, and the server would then keep one plan for
    it; made while the delivery log was still nearly empty, early in a first run, the
    plan of a statement taking a list of addresses as an array scans the whole table,
    which then costs a millisecond a statement per 10,000 rows); connections are checked
    before use (a restarted server or a dropped idle connection costs a reconnect, not a
    failed run)."""
    if url.startswith("sqlite"):
        timeout = sqlite_timeout(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": timeout})
        event.listen(engine, "connect", _sqlite_pragmas)
        words_for_errors(engine, url, timeout)
        return engine
    if url.startswith("postgresql"):
        return create_engine(
            url,
            connect_args={
                "options": "-c timezone=UTC -c plan_cache_mode=force_custom_plan",
                "connect_timeout": 10,
            },
            pool_pre_ping=True,
        )
    return create_engine(url)


def shown(url: str) -> str:
    """``url`` fit for a message: any password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: say so as it is
        return url


@contextmanager
def reaching(url: str) -> Iterator[None]:
    """A failure to reach or read the database, as one line naming it (password masked)."""
    try:
        yield
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise DatabaseError(
            f"database {shown(url)}: {type(exc).__name__}: {first[0] if first else exc}; "
            "check `database` in the config and that the server is running"
        ) from exc

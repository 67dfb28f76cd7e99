"""Database trouble in words: a SQLite file that is locked, full, unreadable or damaged is
one line naming the file and what to do, not a traceback.

A busy or full database, a damaged file or a file that is not a database at all are the
operator's to fix; they become ``DatabaseError`` (exit 1), or ``ConfigError`` (exit 2) when
``database`` points at something that cannot be a database. Any other database error is
left as it is: a bug keeps its traceback.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from ..errors import ConfigError, DatabaseError, DigestError

_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


def sqlite_file(url: str) -> str:
    """The file of a SQLite URL (or the URL itself when it has none)."""
    try:
        return make_url(url).database or url
    except Exception:  # not a URL SQLAlchemy reads: say it as it is
        return url


def sqlite_timeout(url: str, default: float = 30.0) -> float:
    """Seconds to wait for another process's lock: ``?timeout=`` in the URL, or 30."""
    try:
        value: Any = make_url(url).query.get("timeout")
    except Exception:  # not a URL SQLAlchemy reads: creating the engine says so
        return default
    if value is None:
        return default
    try:
        seconds = float(value[-1] if isinstance(value, tuple) else value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86_400:
        raise ConfigError(
            f"database {url}: ?timeout= must be a number of seconds, e.g. ?timeout=30"
        )
    return seconds


def in_words(exc: BaseException, url: str, timeout: float) -> DigestError | None:
    """``exc`` (a sqlite3 error) as one line naming the file and a fix, or None when it is
    not one of the troubles an operator fixes."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = " ".join(str(exc).split()) or type(exc).__name__
    where = f"database {sqlite_file(url)}"
    nothing_lost = (
        "nothing is lost: a message not recorded as sent is sent again by the next run, "
        "with the same Message-ID"
    )
    if primary in (_BUSY, _LOCKED) or text.startswith("database is locked"):
        return DatabaseError(
            f"{where} is locked by another process (waited {timeout:g} s: {text}); run again "
            "once it is done (an open sqlite3 shell, a backup), or wait longer with "
            f"?timeout=SECONDS at the end of `database`; {nothing_lost}"
        )
    if primary == _FULL or "disk is full" in text:
        return DatabaseError(
            f"{where}: the disk is full ({text}); free some space and run again; {nothing_lost}"
        )
    if primary == _IOERR:
        return DatabaseError(
            f"{where}: the disk failed to read or write ({text}); check that it is not full "
            f"or failing, and run again; {nothing_lost}"
        )
    if primary == _NOTADB or "not a database" in text:
        return ConfigError(
            f"{where} is not a SQLite database ({text}); check `database` in the config (a "
            "relative path is relative to the config file), or restore the file from a backup"
        )
    if primary == _CANTOPEN or "unable to open database file" in text:
        return ConfigError(
            f"{where} cannot be opened ({text}); check `database` in the config: its folder "
            "must exist and be writable by the user running digest"
        )
    if primary == _READONLY:
        return DatabaseError(
            f"{where} is read-only ({text}); the user running digest must be able to write "
            "the file and its folder"
        )
    if primary == _CORRUPT:
        return DatabaseError(
            f"{where} is damaged ({text}); restore it from a backup (`sqlite3 FILE .recover` "
            "can save what is left)"
        )
    return None


def words_for_errors(engine: Engine, url: str, timeout: float) -> None:
    """Errors of ``engine`` (SQLite) that ``in_words`` knows are raised as its one line."""
    if engine.dialect.name != "sqlite":
        return

    def handle(context: Any) -> None:
        error = in_words(context.original_exception, url, timeout)
        if error is not None:
            raise error from context.original_exception

    event.listen(engine, "handle_error", handle)

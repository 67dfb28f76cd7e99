"""The delivery log: one row per (subscriber, edition), the papers sent to each subscriber,
and the batched writer the send path commits its outcomes through."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, NamedTuple

from sqlalchemy import String, and_, any_, bindparam, case, func, or_
from sqlalchemy import select as core_select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import select

from ..models import Delivery
from ._base import Base, chunks, utc
from ._errors import in_words
from ._schema import DeliveryRow, SentPaper

_DELIVERY: Any = DeliveryRow.__table__  # type: ignore[attr-defined]
_SENT_PAPER: Any = SentPaper.__table__  # type: ignore[attr-defined]


class Deliveries(Base):
    def delivery(self, email: str, edition: date) -> Delivery | None:
        with self.session() as s:
            row = s.exec(
                select(DeliveryRow).where(
                    DeliveryRow.email == email, DeliveryRow.edition == edition
                )
            ).first()
        return _delivery(row) if row else None

    def deliveries(self, edition: date | None = None) -> list[Delivery]:
        with self.session() as s:
            q = select(DeliveryRow)
            if edition is not None:
                q = q.where(DeliveryRow.edition == edition)
            rows = s.exec(q.order_by(DeliveryRow.edition, DeliveryRow.email)).all()  # type: ignore[arg-type]
        return [_delivery(r) for r in rows]

    def set_delivery(
        self,
        email: str,
        edition: date,
        status: str,
        now: datetime,
        *,
        message_id: str | None = None,
        reply: str | None = None,
        papers: Sequence[str] = (),
        attempt: bool = False,
    ) -> None:
        """Move one (subscriber, edition) along pending -> sending -> sent/deferred/failed.

        Committed at once; when ``status`` is "sent", the papers are recorded as sent to
        that subscriber in the same transaction, so they are never sent to them again.
        """
        with self.session() as s:
            row = s.exec(
                select(DeliveryRow).where(
                    DeliveryRow.email == email, DeliveryRow.edition == edition
                )
            ).first() or DeliveryRow(email=email, edition=edition, updated_at=now)
            row.status = status
            row.updated_at = now
            if message_id is not None:
                row.message_id = message_id
            if reply is not None:
                row.reply = reply[:1000]
            if attempt:
                row.attempts += 1
            if status == "sent" and papers:
                row.papers = len(papers)
                for pid in papers:
                    s.merge(SentPaper(email=email, paper_id=pid, edition=edition))
            s.add(row)
            s.commit()

    # bulk delivery log (the send path: few transactions, no ORM objects) ------
    def delivery_writer(self, *, direct: bool = True) -> DeliveryWriter:
        """One connection for a whole send run; see ``DeliveryWriter``."""
        return DeliveryWriter(self.engine, direct=direct, timeout=self.timeout)

    def delivery_statuses(self, edition: date, emails: Sequence[str]) -> dict[str, str]:
        """The logged status of each of ``emails`` for ``edition`` (absent when none)."""
        with self.delivery_writer() as w:
            return w.statuses(edition, emails)

    def sent_since(self, since: datetime) -> list[datetime]:
        """When each message marked sent at or after ``since`` was sent (rate limits)."""
        t = _DELIVERY
        with self.engine.connect() as conn:
            q = select(t.c.updated_at).where(t.c.status == "sent", t.c.updated_at >= utc(since))
            return [utc(v) or v for (v,) in conn.execute(q)]

    def sent_paper_ids(
        self, email: str, before: date | None = None, *, other_than: date | None = None
    ) -> set[str]:
        """Papers sent to ``email``: in editions before ``before``, or in any edition but
        ``other_than`` (so re-running an edition, or a backfill, never repeats a paper)."""
        with self.session() as s:
            q = select(SentPaper.paper_id).where(SentPaper.email == email)
            if before is not None:
                q = q.where(SentPaper.edition < before)
            if other_than is not None:
                q = q.where(SentPaper.edition != other_than)
            return set(s.exec(q).all())

    def sent_papers_of(
        self,
        emails: Sequence[str],
        *,
        other_than: date | None = None,
        among: Collection[str] | None = None,
    ) -> dict[str, set[str]]:
        """``sent_paper_ids`` for many subscribers in a few queries: email -> papers sent
        in any edition but ``other_than``; with ``among``, only those papers are kept.
        A subscriber with none is absent."""
        t = _SENT_PAPER
        out: dict[str, set[str]] = {}
        if self.engine.dialect.name == "postgresql":  # the lists as two arrays, one query
            q = select(t.c.email, t.c.paper_id).where(t.c.email == any_(_texts("emails")))
            values: dict[str, Any] = {"emails": list(emails)}
            if among is not None:
                q = q.where(t.c.paper_id == any_(_texts("papers")))
                values["papers"] = sorted(among)
            if other_than is not None:
                q = q.where(t.c.edition != other_than)
            with self.engine.connect() as conn:
                for email, pid in conn.execute(q, values):
                    out.setdefault(email, set()).add(pid)
            return out
        # With ``among`` (the edition's candidates), the database keeps only those rows
        # (500 addresses + 400 papers + 1: under the oldest SQLite's 999 values a query):
        # a subscriber's history grows by a digest a day, the candidates do not, and
        # handing back a year of rows to drop them here costs ten times more.
        papers: list[list[str] | None] = (
            [None] if among is None else list(chunks(sorted(among), 400))
        )
        with self.engine.connect() as conn:
            for chunk in chunks(list(emails), 500):
                for ids in papers:
                    q = select(t.c.email, t.c.paper_id).where(t.c.email.in_(chunk))
                    if ids is not None:
                        q = q.where(t.c.paper_id.in_(ids))
                    if other_than is not None:
                        q = q.where(t.c.edition != other_than)
                    for email, pid in conn.execute(q):
                        out.setdefault(email, set()).add(pid)
        return out

    def subscriber_stats(self) -> dict[str, tuple[date | None, int, int]]:
        """Per lower-cased email: (last edition sent, digests sent, distinct papers sent)."""
        t, sp = _DELIVERY, _SENT_PAPER
        out: dict[str, tuple[date | None, int, int]] = {}
        with self.engine.connect() as conn:
            q = (
                select(t.c.email, func.max(t.c.edition), func.count())
                .where(t.c.status == "sent")
                .group_by(t.c.email)
            )
            for email, last, n in conn.execute(q):
                key = email.lower()
                prev = out.get(key, (None, 0, 0))
                newest = max((d for d in (prev[0], last) if d is not None), default=None)
                out[key] = (newest, prev[1] + n, prev[2])
            q2 = select(sp.c.email, func.count()).group_by(sp.c.email)
            for email, n in conn.execute(q2):
                key = email.lower()
                last, digests, papers = out.get(key, (None, 0, 0))
                out[key] = (last, digests, papers + n)
        return out

    def delivery_counts(self, edition: date) -> dict[str, int]:
        """How many deliveries of ``edition`` are in each state."""
        t = _DELIVERY
        with self.engine.connect() as conn:
            q = select(t.c.status, func.count()).where(t.c.edition == edition).group_by(t.c.status)
            return {status: n for status, n in conn.execute(q)}

    def last_delivered_edition(self) -> date | None:
        """The newest edition with any delivery logged."""
        t = _DELIVERY
        with self.engine.connect() as conn:
            value = conn.execute(select(func.max(t.c.edition))).scalar()
        if isinstance(value, str):  # SQLite returns the raw text for an aggregate
            return date.fromisoformat(value)
        return value


SENDING = "sending"
# What a claim may take: a row nobody is sending. "failed" too: a refusal may not repeat
# (a full mailbox), so a rerun tries again, unless too many outcomes were unknown.
CLAIMABLE = ("pending", "deferred", "failed")


class Holder(NamedTuple):
    """A delivery row as a claim sees it."""

    status: str
    claimed_by: str
    unknown: int  # tries whose outcome is unknown


class Claimed(NamedTuple):
    """A row a claim took. ``status`` "sending": it is the claimant's to try; "failed": it
    was given up instead (``reply`` says why)."""

    status: str
    attempts: int
    unknown: int
    reply: str


# (email, edition, claim, status, reply, papers sent, attempts, outcomes unknown)
Finished = tuple[str, date, str, str, str, Sequence[str], int, int]
# (email, edition, claim, attempts counting the try about to start, outcomes unknown)
Try = tuple[str, date, str, int, int]
Key = tuple[str, date]


class DeliveryWriter:
    """The delivery log's statements for a send run, on one connection, each call one
    transaction; calls from several threads are serialized.

    Who sends what is settled in the database: ``claim`` takes rows for one claimant with
    conditional statements, so of any number of runs (processes, machines) claiming a
    message at once exactly one gets it, and every later statement on the row names the
    claim (``claimed_by``): a run whose claim was taken over changes nothing. A claim
    holds until ``lease_until``, which its run renews while it lives; a row left
    "sending" by a run that is gone (its lease expired, or named in ``dead``) is taken
    back. ``commit`` writes final states (recording, for "sent" rows, the papers sent to
    that subscriber in the same transaction) and logs tries before they start, so a try
    whose outcome never got logged is known for what it is.

    ``direct``: the send path's statements straight through the driver, without
    SQLAlchemy: sqlite3 on SQLite (its cost per row), psycopg on PostgreSQL (``_pglog``:
    each transaction in one round trip).
    """

    def __init__(self, engine: Engine, *, direct: bool = True, timeout: float = 30.0) -> None:
        self.url = engine.url.render_as_string(hide_password=True)
        self.timeout = timeout
        self.conn = engine.connect()
        self.lock = threading.Lock()
        t = _DELIVERY
        mine = (
            t.c.email == bindparam("e_"),
            t.c.edition == bindparam("d_"),
            t.c.claimed_by == bindparam("b_"),
        )
        self._update_final = (
            t.update()
            .where(*mine)
            .values(
                status=bindparam("s"),
                reply=bindparam("r"),
                papers=bindparam("n"),
                attempts=bindparam("a"),
                unknown_outcomes=bindparam("u"),
                in_flight=False,
                updated_at=bindparam("at"),
            )
        )
        self._update_try = (
            t.update()
            .where(*mine, t.c.status == SENDING)
            .values(
                attempts=bindparam("a"),
                unknown_outcomes=bindparam("u"),
                in_flight=True,
                lease_until=bindparam("until"),
                updated_at=bindparam("at"),
            )
        )
        self._renew = (
            t.update().where(*mine, t.c.status == SENDING).values(lease_until=bindparam("until"))
        )
        self._insert_papers = _insert_ignore(engine, _SENT_PAPER)
        self._insert_claims = _insert_new(engine, _DELIVERY)
        self._sqlite: Any = None
        self._pg: Any = None
        if direct and engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite":
            self._sqlite = self.conn.connection.dbapi_connection
        elif direct and engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
            from ._pglog import PgLog  # psycopg: only for a PostgreSQL database

            try:
                self._pg = PgLog(self.conn.connection.dbapi_connection)
            except BaseException:
                self.conn.close()
                raise

    def __enter__(self) -> DeliveryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self.lock:
            if self._pg is not None:
                self._pg.close()
            self.conn.close()

    def statuses(self, edition: date, emails: Sequence[str]) -> dict[str, str]:
        return {e: h.status for e, h in self.holders(edition, emails).items()}

    def holders(self, edition: date, emails: Sequence[str]) -> dict[str, Holder]:
        """The row of each of ``emails`` for ``edition`` (absent when there is none)."""
        t = _DELIVERY
        out: dict[str, Holder] = {}
        if self._pg is not None:
            with self.lock:
                return {e: Holder(st, by, u) for e, st, by, u in self._pg.holders(edition, emails)}
        with self.lock, self._transaction():
            for chunk in chunks(list(emails), 500):
                q = select(t.c.email, t.c.status, t.c.claimed_by, t.c.unknown_outcomes).where(
                    t.c.edition == edition, t.c.email.in_(chunk)
                )
                out.update({e: Holder(st, by, u) for e, st, by, u in self.conn.execute(q)})
        return out

    def claim(
        self,
        items: Sequence[tuple[str, date, str]],
        by: str,
        now: datetime,
        until: datetime,
        *,
        dead: Collection[str] = (),
        limit: int,
        gave_up: str,
    ) -> dict[Key, Claimed]:
        """Take the rows of ``items`` (email, edition, Message-ID) that nobody holds, for
        the claim ``by`` (a text no other claim ever uses), until ``until``; returns the
        rows taken. Nobody holds a row that does not exist yet, is pending, deferred or
        failed, or is "sending" for a claim that lapsed (``lease_until`` before ``now``)
        or is in ``dead``. Rows with ``limit`` outcomes unknown are never taken; a lapsed
        row whose try was in flight counts one more, and when that makes ``limit`` it is
        marked failed with the reply ``gave_up`` (and returned so).

        Every statement is conditional on what the row holds when it runs, in one
        transaction: SQLite serializes it whole, PostgreSQL locks each row it changes and
        checks the conditions again on the latest version, and an INSERT of a row another
        transaction made does nothing. Rows are taken in (edition, email) order so that
        two claims meet in the same order (no deadlock); a deadlock or serialization
        failure the database reports anyway is retried.
        """
        if not items:
            return {}
        by_edition: dict[date, list[tuple[str, str]]] = {}
        for email, edition, mid in items:
            by_edition.setdefault(edition, []).append((email, mid))
        if self._sqlite is not None:
            with self.lock:
                try:
                    return _claim_sqlite(
                        self._sqlite, by_edition, by, now, until, dead, limit, gave_up
                    )
                except sqlite3.Error as exc:
                    error = in_words(exc, self.url, self.timeout)
                    if error is None:
                        raise
                    raise error from exc
        for attempt in range(_RETRIES):
            try:
                if self._pg is not None:
                    with self.lock:
                        taken = self._pg.claim(
                            by_edition, by, utc(now), utc(until), dead, limit, gave_up
                        )
                    return {k: Claimed(*v) for k, v in taken.items()}
                with self.lock, self._transaction():
                    return self._claim(by_edition, by, now, until, dead, limit, gave_up)
            except DBAPIError as exc:
                if attempt + 1 == _RETRIES or not _retryable(exc):
                    raise
        raise AssertionError("unreachable")

    def _claim(
        self,
        by_edition: dict[date, list[tuple[str, str]]],
        by: str,
        now: datetime,
        until: datetime,
        dead: Collection[str],
        limit: int,
        gave_up: str,
    ) -> dict[Key, Claimed]:
        t = _DELIVERY
        at, lease = utc(now), utc(until)
        # No IN lists here: a statement run with executemany cannot expand them.
        lapsed = and_(
            t.c.status == SENDING,
            or_(
                t.c.lease_until.is_(None),
                t.c.lease_until < at,
                *(t.c.claimed_by == d for d in sorted(dead)),
            ),
        )
        in_flight = and_(t.c.status == SENDING, t.c.in_flight.is_(True))
        take = (
            t.update()
            .where(
                t.c.email == bindparam("e_"),
                t.c.edition == bindparam("d_"),
                t.c.unknown_outcomes < limit,
                or_(*(t.c.status == s for s in CLAIMABLE), lapsed),
            )
            .values(
                status=SENDING,
                message_id=bindparam("m"),
                claimed_by=by,
                lease_until=lease,
                in_flight=False,
                unknown_outcomes=t.c.unknown_outcomes + case((in_flight, 1), else_=0),
                updated_at=at,
            )
        )
        out: dict[Key, Claimed] = {}
        for edition in sorted(by_edition):
            rows = sorted(by_edition[edition])
            for i in range(0, len(rows), 500):
                chunk = rows[i : i + 500]
                emails = [e for e, _ in chunk]
                # A lapsed try whose outcome is unknown once too often: given up.
                self.conn.execute(
                    t.update()
                    .where(
                        t.c.edition == edition,
                        t.c.email.in_(emails),
                        lapsed,
                        t.c.in_flight.is_(True),
                        t.c.unknown_outcomes + 1 >= limit,
                    )
                    .values(
                        status="failed",
                        reply=gave_up[:1000],
                        in_flight=False,
                        unknown_outcomes=t.c.unknown_outcomes + 1,
                        claimed_by=by,
                        updated_at=at,
                    )
                )
                self.conn.execute(take, [{"e_": e, "d_": edition, "m": m} for e, m in chunk])
                self._insert_claims(
                    self.conn,
                    [
                        {
                            "email": e,
                            "edition": edition,
                            "status": SENDING,
                            "message_id": m,
                            "attempts": 0,
                            "papers": 0,
                            "reply": "",
                            "updated_at": at,
                            "claimed_by": by,
                            "lease_until": lease,
                            "in_flight": False,
                            "unknown_outcomes": 0,
                        }
                        for e, m in chunk
                    ],
                )
                q = core_select(
                    t.c.email, t.c.status, t.c.attempts, t.c.unknown_outcomes, t.c.reply
                ).where(t.c.edition == edition, t.c.email.in_(emails), t.c.claimed_by == by)
                for e, st, a, u, r in self.conn.execute(q):
                    out[(e, edition)] = Claimed(st, a, u, r)
        return out

    def renew(self, items: Sequence[tuple[str, date, str]], until: datetime) -> int:
        """Extend the lease of these claimed rows (email, edition, claim) still "sending";
        returns how many were."""
        if not items:
            return 0
        if self._pg is not None:
            with self.lock:
                return int(self._pg.renew(items, utc(until)))
        rows = [{"e_": e, "d_": d, "b_": b, "until": utc(until)} for e, d, b in items]
        with self.lock, self._transaction():
            return int(self.conn.execute(self._renew, rows).rowcount)

    def commit(
        self, finished: Sequence[Finished], tries: Sequence[Try], now: datetime, until: datetime
    ) -> tuple[int, set[Key]]:
        """Write final states and log tries about to start, in one transaction. Returns how
        many final states were written (a row whose claim was taken over is not changed)
        and the tries refused (the claim is no longer theirs: do not send)."""
        if not finished and not tries:
            return 0, set()
        at, lease = utc(now), utc(until)
        if self._sqlite is not None:
            with self.lock:
                try:
                    return self._commit_sqlite(self._sqlite, finished, tries, at, lease)
                except sqlite3.Error as exc:  # what SQLAlchemy would have put in words
                    error = in_words(exc, self.url, self.timeout)
                    if error is None:
                        raise
                    raise error from exc
        if self._pg is not None:
            with self.lock:
                written, lost = self._pg.commit(finished, tries, at, lease)
            return int(written), lost
        rows = [
            {"e_": e, "d_": d, "b_": b, "s": st, "r": r[:1000], "n": len(p), "a": a, "u": u}
            for e, d, b, st, r, p, a, u in finished
        ]
        papers = [
            {"email": e, "paper_id": pid, "edition": d}
            for e, d, _, st, _, p, _, _ in finished
            if st == "sent"
            for pid in dict.fromkeys(p)
        ]
        for row in rows:
            row["at"] = at
        refused: set[Key] = set()
        with self.lock, self._transaction():
            done = int(self.conn.execute(self._update_final, rows).rowcount) if rows else 0
            for e, d, b, a, u in tries:
                values = {"e_": e, "d_": d, "b_": b, "a": a, "u": u, "until": lease, "at": at}
                if self.conn.execute(self._update_try, values).rowcount != 1:
                    refused.add((e, d))
            if papers:
                self._insert_papers(self.conn, papers)
        return done, refused

    @staticmethod
    def _commit_sqlite(
        raw: Any,
        finished: Sequence[Finished],
        tries: Sequence[Try],
        at: datetime | None,
        until: datetime | None,
    ) -> tuple[int, set[Key]]:
        """``commit`` straight through sqlite3: a third of SQLAlchemy's cost per message,
        which matters when every message is its own transaction. Values are stored in
        the same text formats SQLAlchemy uses for SQLite."""
        stamp = _stamp(at)
        rows = [
            (st, r[:1000], len(p), a, u, stamp, e, d.isoformat(), b)
            for e, d, b, st, r, p, a, u in finished
        ]
        papers: list[str] = []  # (email, paper, edition) values, flat
        for e, d, _, st, _, p, _, _ in finished:
            if st == "sent":
                day = d.isoformat()
                for pid in dict.fromkeys(p):
                    papers += (e, pid, day)
        refused: set[Key] = set()
        done = 0
        try:
            if not raw.in_transaction:
                raw.execute("BEGIN")
            if rows:
                done = raw.executemany(
                    "UPDATE delivery SET status = ?, reply = ?, papers = ?, attempts = ?, "
                    "unknown_outcomes = ?, in_flight = 0, updated_at = ? "
                    "WHERE email = ? AND edition = ? AND claimed_by = ?",
                    rows,
                ).rowcount
            lease = _stamp(until)
            for e, d, b, a, u in tries:
                cur = raw.execute(
                    "UPDATE delivery SET attempts = ?, unknown_outcomes = ?, in_flight = 1, "
                    "lease_until = ?, updated_at = ? "
                    "WHERE email = ? AND edition = ? AND claimed_by = ? AND status = 'sending'",
                    (a, u, lease, stamp, e, d.isoformat(), b),
                )
                if cur.rowcount != 1:
                    refused.add((e, d))
            step = 3 * _ROWS_PER_INSERT
            for i in range(0, len(papers), step):
                chunk = papers[i : i + step]
                raw.execute(_insert_sent_papers(len(chunk) // 3), chunk)
            raw.commit()
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the disk may be failing too
                raw.rollback()
            raise
        return done, refused

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()


_RETRIES = 3  # a claim the database aborted (deadlock, serialization failure) is retried


def _claim_sqlite(
    raw: Any,
    by_edition: dict[date, list[tuple[str, str]]],
    by: str,
    now: datetime,
    until: datetime,
    dead: Collection[str],
    limit: int,
    gave_up: str,
) -> dict[Key, Claimed]:
    """``DeliveryWriter.claim`` straight through sqlite3, in one transaction that holds
    the write lock from its start (BEGIN IMMEDIATE): the same statements, without
    SQLAlchemy's work per row (a fifth of the cost on a batch of 200)."""
    at, lease = _stamp(utc(now)), _stamp(utc(until))
    ghosts = sorted(dead)
    lapsed = (
        "(status = 'sending' AND (lease_until IS NULL OR lease_until < ?"
        + "".join(" OR claimed_by = ?" for _ in ghosts)
        + "))"
    )
    lapsed_args = (at, *ghosts)
    take = (
        "UPDATE delivery SET status = 'sending', message_id = ?, claimed_by = ?, "
        "lease_until = ?, in_flight = 0, unknown_outcomes = unknown_outcomes + "
        "(CASE WHEN status = 'sending' AND in_flight = 1 THEN 1 ELSE 0 END), updated_at = ? "
        "WHERE email = ? AND edition = ? AND unknown_outcomes < ? AND "
        f"(status IN ('pending', 'deferred', 'failed') OR {lapsed})"
    )
    insert = (
        "INSERT INTO delivery (email, edition, status, message_id, attempts, papers, reply, "
        "updated_at, claimed_by, lease_until, in_flight, unknown_outcomes) "
        "VALUES (?, ?, 'sending', ?, 0, 0, '', ?, ?, ?, 0, 0) ON CONFLICT DO NOTHING"
    )
    out: dict[Key, Claimed] = {}
    try:
        if raw.in_transaction:
            raw.commit()
        raw.execute("BEGIN IMMEDIATE")
        for edition in sorted(by_edition):
            day = edition.isoformat()
            rows = sorted(by_edition[edition])
            size = max(1, min(400, 990 - 6 - len(ghosts)))  # values a statement: under 999
            for i in range(0, len(rows), size):
                chunk = rows[i : i + size]
                emails = [e for e, _ in chunk]
                marks = ", ".join("?" * len(emails))
                raw.execute(
                    "UPDATE delivery SET status = 'failed', reply = ?, in_flight = 0, "
                    "unknown_outcomes = unknown_outcomes + 1, claimed_by = ?, updated_at = ? "
                    f"WHERE edition = ? AND email IN ({marks}) AND {lapsed} AND in_flight = 1 "
                    "AND unknown_outcomes + 1 >= ?",
                    (gave_up[:1000], by, at, day, *emails, *lapsed_args, limit),
                )
                raw.executemany(
                    take, [(m, by, lease, at, e, day, limit, *lapsed_args) for e, m in chunk]
                )
                raw.executemany(insert, [(e, day, m, at, by, lease) for e, m in chunk])
                found = raw.execute(
                    "SELECT email, status, attempts, unknown_outcomes, reply FROM delivery "
                    f"WHERE edition = ? AND email IN ({marks}) AND claimed_by = ?",
                    (day, *emails, by),
                )
                for e, st, a, u, r in found:
                    out[(e, edition)] = Claimed(st, a, u, r)
        raw.commit()
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            raw.rollback()
        raise
    return out


def _retryable(exc: DBAPIError) -> bool:
    """A deadlock or serialization failure (PostgreSQL's SQLSTATE 40P01, 40001)."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40P01", "40001")


def _stamp(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%d %H:%M:%S.%f") if at is not None else None


Rows = list[dict[str, Any]]

_ROWS_PER_INSERT = 300  # 900 values: under the oldest SQLite's limit of 999 per statement


@functools.lru_cache(maxsize=64)
def _insert_sent_papers(rows: int) -> str:
    """One INSERT for ``rows`` sent papers: a third cheaper than ``executemany``."""
    values = ", ".join(["(?, ?, ?)"] * rows)
    return f"INSERT OR IGNORE INTO sent_paper (email, paper_id, edition) VALUES {values}"


def _insert_ignore(engine: Engine, table: Any) -> Callable[[Connection, Rows], None]:
    """Insert rows, skipping those whose primary key exists (SQLite, PostgreSQL, others)."""
    if engine.dialect.name in ("sqlite", "postgresql"):
        import importlib

        # Only the dialect in use (PostgreSQL's is some 25 modules a SQLite run needs not).
        dialect: Any = importlib.import_module(f"sqlalchemy.dialects.{engine.dialect.name}")
        stmt = dialect.insert(table).on_conflict_do_nothing()

        def upsert(conn: Connection, rows: Rows) -> None:
            conn.execute(stmt, rows)

        return upsert
    delete = table.delete().where(
        table.c.email == bindparam("e_"), table.c.paper_id == bindparam("p_")
    )

    def portable(conn: Connection, rows: Rows) -> None:
        conn.execute(delete, [{"e_": r["email"], "p_": r["paper_id"]} for r in rows])
        conn.execute(table.insert(), rows)

    return portable


def _insert_new(engine: Engine, table: Any) -> Callable[[Connection, Rows], None]:
    """Insert rows whose key is not taken yet; a row another transaction inserted (even one
    not committed yet: the database waits for it) is left as it is."""
    if engine.dialect.name in ("sqlite", "postgresql"):
        import importlib

        dialect: Any = importlib.import_module(f"sqlalchemy.dialects.{engine.dialect.name}")
        stmt = dialect.insert(table).on_conflict_do_nothing()

        def upsert(conn: Connection, rows: Rows) -> None:
            conn.execute(stmt, rows)

        return upsert

    def portable(conn: Connection, rows: Rows) -> None:
        for row in rows:
            try:
                with conn.begin_nested():
                    conn.execute(table.insert(), row)
            except IntegrityError:
                pass

    return portable


def _texts(name: str) -> Any:
    """A bound array of texts (PostgreSQL): one value however long the list, where
    ``IN`` sends, and the driver parses, one placeholder per item."""
    from sqlalchemy.dialects.postgresql import ARRAY

    return bindparam(name, type_=ARRAY(String))


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(row.email, row.edition, row.message_id, row.status, row.reply)

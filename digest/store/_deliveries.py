"""The delivery log: one row per (subscriber, edition), the papers sent to each subscriber,
and the batched writer the send path commits its outcomes through."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func
from sqlalchemy.engine import Connection, Engine
from sqlmodel import select

from ..models import Delivery
from ._base import Base, chunks, utc
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
        return DeliveryWriter(self.engine, direct=direct)

    def delivery_statuses(self, edition: date, emails: Sequence[str]) -> dict[str, str]:
        """The logged status of each of ``emails`` for ``edition`` (absent when none)."""
        with self.delivery_writer() as w:
            return w.statuses(edition, emails)

    def claim_deliveries(self, items: Sequence[tuple[str, date, str]], now: datetime) -> None:
        with self.delivery_writer() as w:
            w.claim(items, now)

    def finish_deliveries(
        self, items: Sequence[tuple[str, date, str, str, Sequence[str]]], now: datetime
    ) -> None:
        with self.delivery_writer() as w:
            w.finish(items, now)

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


class DeliveryWriter:
    """Batched delivery-log statements on one connection, each call one transaction.

    ``claim`` marks (email, edition, message_id) rows "sending"; ``finish`` writes final
    states and, for "sent" rows, records the papers as sent to that subscriber in the
    same transaction. Calls from several threads are serialized. ``direct``: write
    outcomes through sqlite3 itself when the database is SQLite (the fast path).
    """

    def __init__(self, engine: Engine, *, direct: bool = True) -> None:
        self.conn = engine.connect()
        self.lock = threading.Lock()
        t = _DELIVERY
        self._update_claim = (
            t.update()
            .where(t.c.email == bindparam("e_"), t.c.edition == bindparam("d_"))
            .values(
                status="sending",
                message_id=bindparam("m"),
                attempts=t.c.attempts + 1,
                updated_at=bindparam("at"),
            )
        )
        self._update_final = (
            t.update()
            .where(t.c.email == bindparam("e_"), t.c.edition == bindparam("d_"))
            .values(
                status=bindparam("s"),
                reply=bindparam("r"),
                papers=bindparam("n"),
                updated_at=bindparam("at"),
            )
        )
        self._insert_papers = _insert_ignore(engine, _SENT_PAPER)
        self._sqlite: Any = None
        if direct and engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite":
            self._sqlite = self.conn.connection.dbapi_connection

    def __enter__(self) -> DeliveryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def statuses(self, edition: date, emails: Sequence[str]) -> dict[str, str]:
        t = _DELIVERY
        out: dict[str, str] = {}
        with self.lock, self._transaction():
            for chunk in chunks(list(emails), 500):
                q = select(t.c.email, t.c.status).where(
                    t.c.edition == edition, t.c.email.in_(chunk)
                )
                out.update({e: st for e, st in self.conn.execute(q)})
        return out

    def claim(self, items: Sequence[tuple[str, date, str]], now: datetime) -> None:
        if not items:
            return
        t = _DELIVERY
        at = utc(now)
        with self.lock, self._transaction():
            existing: set[tuple[str, date]] = set()
            for edition in {d for _, d, _ in items}:
                emails = [e for e, d, _ in items if d == edition]
                for chunk in chunks(emails, 500):
                    q = select(t.c.email).where(t.c.edition == edition, t.c.email.in_(chunk))
                    existing.update((e, edition) for (e,) in self.conn.execute(q))
            old = [{"e_": e, "d_": d, "m": m, "at": at} for e, d, m in items if (e, d) in existing]
            new = [
                {
                    "email": e,
                    "edition": d,
                    "status": "sending",
                    "message_id": m,
                    "attempts": 1,
                    "papers": 0,
                    "reply": "",
                    "updated_at": at,
                }
                for e, d, m in items
                if (e, d) not in existing
            ]
            if old:
                self.conn.execute(self._update_claim, old)
            if new:
                self.conn.execute(t.insert(), new)

    def finish(
        self, items: Sequence[tuple[str, date, str, str, Sequence[str]]], now: datetime
    ) -> None:
        if not items:
            return
        at = utc(now)
        if self._sqlite is not None:
            with self.lock:
                self._finish_sqlite(self._sqlite, items, at)
            return
        rows = [
            {"e_": e, "d_": d, "s": st, "r": r[:1000], "n": len(p), "at": at}
            for e, d, st, r, p in items
        ]
        papers = [
            {"email": e, "paper_id": pid, "edition": d}
            for e, d, st, _, p in items
            if st == "sent"
            for pid in dict.fromkeys(p)
        ]
        with self.lock, self._transaction():
            self.conn.execute(self._update_final, rows)
            if papers:
                self._insert_papers(self.conn, papers)

    @staticmethod
    def _finish_sqlite(
        raw: Any, items: Sequence[tuple[str, date, str, str, Sequence[str]]], at: datetime | None
    ) -> None:
        """``finish`` straight through sqlite3: a third of SQLAlchemy's cost per message,
        which matters when every message is its own transaction. Values are stored in
        the same text formats SQLAlchemy uses for SQLite."""
        stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f") if at is not None else None
        rows = [(st, r[:1000], len(p), stamp, e, d.isoformat()) for e, d, st, r, p in items]
        papers: list[str] = []  # (email, paper, edition) values, flat
        for e, d, st, _, p in items:
            if st == "sent":
                day = d.isoformat()
                for pid in dict.fromkeys(p):
                    papers += (e, pid, day)
        try:
            if not raw.in_transaction:
                raw.execute("BEGIN")
            raw.executemany(
                "UPDATE delivery SET status = ?, reply = ?, papers = ?, updated_at = ? "
                "WHERE email = ? AND edition = ?",
                rows,
            )
            step = 3 * _ROWS_PER_INSERT
            for i in range(0, len(papers), step):
                chunk = papers[i : i + step]
                raw.execute(_insert_sent_papers(len(chunk) // 3), chunk)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()


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


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(row.email, row.edition, row.message_id, row.status, row.reply)

"""The database: SQLModel tables, sessions and queries. Table classes never leave this module."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint, bindparam, event, func
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, Session, SQLModel, create_engine, select

from .models import Delivery, Paper

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(value: datetime | None) -> datetime | None:
    """SQLite drops tzinfo; everything we store is UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class PaperRow(SQLModel, table=True):
    __tablename__ = "paper"
    id: str = Field(primary_key=True)
    title: str
    abstract: str = ""
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    url: str = ""
    pdf_url: str | None = None
    code_url: str | None = None
    hf_url: str | None = None
    project_url: str | None = None
    thumbnail: str | None = None
    categories: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    published: datetime | None = None
    sources: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    upvotes: int | None = None
    comments: int | None = None
    github_stars: int | None = None
    ai_summary: str | None = None
    ai_keywords: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    announce_type: str | None = None
    first_seen: datetime = Field(index=True)
    last_seen: datetime


class FeedState(SQLModel, table=True):
    __tablename__ = "feed_state"
    name: str = Field(primary_key=True)
    url: str = ""
    etag: str | None = None
    last_modified: str | None = None
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failures: int = 0
    last_count: int = 0


class EditionRow(SQLModel, table=True):
    __tablename__ = "edition"
    edition: date = Field(primary_key=True)
    cutoff: datetime
    created: datetime


class DeliveryRow(SQLModel, table=True):
    __tablename__ = "delivery"
    __table_args__ = (UniqueConstraint("email", "edition"),)
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(index=True)
    edition: date = Field(index=True)
    status: str = "pending"
    message_id: str = ""
    attempts: int = 0
    papers: int = 0
    reply: str = ""
    updated_at: datetime


class SentPaper(SQLModel, table=True):
    __tablename__ = "sent_paper"
    # Rows kept in their key's order, with no separate index: every message sent adds
    # one row per paper in its own transaction, and one B-tree to change instead of two
    # is a fifth of the delivery log's cost per message. (A database made before keeps
    # its table as it was: same rows, same queries.)
    __table_args__ = {"sqlite_with_rowid": False}
    email: str = Field(primary_key=True)
    paper_id: str = Field(primary_key=True)
    edition: date


class RunRow(SQLModel, table=True):
    __tablename__ = "run"
    id: int | None = Field(default=None, primary_key=True)
    started: datetime
    finished: datetime | None = None
    edition: date | None = None
    summary: str = "{}"


class Suppression(SQLModel, table=True):
    __tablename__ = "suppression"
    email: str = Field(primary_key=True)
    at: datetime
    reason: str = ""


_DELIVERY: Any = DeliveryRow.__table__  # type: ignore[attr-defined]
_SENT_PAPER: Any = SentPaper.__table__  # type: ignore[attr-defined]


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def row_to_paper(row: PaperRow) -> Paper:
    return Paper(
        id=row.id,
        title=row.title,
        abstract=row.abstract,
        authors=tuple(row.authors or ()),
        url=row.url,
        pdf_url=row.pdf_url,
        code_url=row.code_url,
        hf_url=row.hf_url,
        project_url=row.project_url,
        thumbnail=row.thumbnail,
        categories=tuple(row.categories or ()),
        published=_utc(row.published),
        sources=tuple(row.sources or ()),
        upvotes=row.upvotes,
        comments=row.comments,
        github_stars=row.github_stars,
        ai_summary=row.ai_summary,
        ai_keywords=tuple(row.ai_keywords or ()),
        announce_type=row.announce_type,
        first_seen=_utc(row.first_seen),
    )


def _merge(row: PaperRow, paper: Paper, now: datetime) -> None:
    """Fold a fresh sighting of a paper into its stored record."""
    row.sources = sorted(set(row.sources or ()) | set(paper.sources))
    if paper.upvotes is not None:
        row.upvotes = paper.upvotes
    if paper.comments is not None:
        row.comments = paper.comments
    if paper.github_stars is not None:
        row.github_stars = paper.github_stars
    if len(paper.abstract) > len(row.abstract or ""):
        row.abstract = paper.abstract
    if not row.authors and paper.authors:
        row.authors = list(paper.authors)
    if paper.categories:
        row.categories = list(dict.fromkeys([*(row.categories or ()), *paper.categories]))
    if paper.ai_keywords and not row.ai_keywords:
        row.ai_keywords = list(paper.ai_keywords)
    for name in (
        "pdf_url",
        "code_url",
        "hf_url",
        "project_url",
        "thumbnail",
        "ai_summary",
        "published",
        "announce_type",
    ):
        if getattr(row, name) in (None, "") and getattr(paper, name):
            setattr(row, name, getattr(paper, name))
    if not row.url and paper.url:
        row.url = paper.url
    row.last_seen = now


class Store:
    """All database access. Create with a SQLAlchemy URL; tables are created on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        connect_args = (
            {"check_same_thread": False, "timeout": 30} if url.startswith("sqlite") else {}
        )
        self.engine: Engine = create_engine(url, connect_args=connect_args)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        SQLModel.metadata.create_all(self.engine)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    # papers -------------------------------------------------------------
    def upsert_papers(self, papers: Iterable[Paper], now: datetime) -> tuple[int, int]:
        """Store papers, merging with what is there. Returns (new, updated)."""
        by_id: dict[str, Paper] = {}
        for p in papers:
            by_id[p.id] = p if p.id not in by_id else _merged_value(by_id[p.id], p)
        new = updated = 0
        with self.session() as s:
            existing = {
                r.id: r
                for chunk in _chunks(list(by_id), 500)
                for r in s.exec(select(PaperRow).where(PaperRow.id.in_(chunk)))  # type: ignore[attr-defined]
            }
            for pid, paper in by_id.items():
                row = existing.get(pid)
                if row is None:
                    s.add(_new_row(paper, now))
                    new += 1
                else:
                    _merge(row, paper, now)
                    s.add(row)
                    updated += 1
            s.commit()
        return new, updated

    def get_papers(self, ids: Sequence[str]) -> list[Paper]:
        with self.session() as s:
            rows = [
                r
                for chunk in _chunks(list(ids), 500)
                for r in s.exec(select(PaperRow).where(PaperRow.id.in_(chunk)))  # type: ignore[attr-defined]
            ]
        found = {r.id: row_to_paper(r) for r in rows}
        return [found[i] for i in ids if i in found]

    def papers_seen_between(self, after: datetime | None, until: datetime) -> list[Paper]:
        with self.session() as s:
            q = select(PaperRow).where(PaperRow.first_seen <= until)
            if after is not None:
                q = q.where(PaperRow.first_seen > after)
            rows = s.exec(q.order_by(PaperRow.first_seen, PaperRow.id)).all()  # type: ignore[arg-type]
        return [row_to_paper(r) for r in rows]

    def count_papers(self) -> int:
        with self.session() as s:
            return int(s.exec(select(func.count()).select_from(PaperRow)).one())

    # editions -----------------------------------------------------------
    def edition_window(
        self, edition: date, now: datetime, *, create: bool = True
    ) -> tuple[datetime | None, datetime]:
        """(previous cut-off, this cut-off) for an edition, creating it on first use.

        An edition holds the papers first seen after the previous edition's cut-off and
        up to its own, so a missed day's papers land in the next edition once. With
        ``create=False`` (previews), a new edition's window is computed but not stored.

        A window never changes once made. So an edition first asked for after a later one
        exists (a backfill of a skipped day, or a subscriber far west of the others) is
        empty: its papers already went out in that later edition.
        """
        with self.session() as s:
            row = s.get(EditionRow, edition)
            if row is None:
                later = s.exec(
                    select(EditionRow)
                    .where(EditionRow.edition > edition)
                    .order_by(EditionRow.edition)  # type: ignore[arg-type]
                ).first()
                if later is None:
                    cutoff: datetime | None = now
                else:
                    before = _edition_before(s, edition)
                    cutoff = _utc(before.cutoff) if before else _EPOCH
                assert cutoff is not None
                row = EditionRow(edition=edition, cutoff=cutoff, created=now)
                if create:
                    s.add(row)
                    s.commit()
            prev = s.exec(
                select(EditionRow)
                .where(EditionRow.edition < edition)
                .order_by(EditionRow.edition.desc())  # type: ignore[attr-defined]
            ).first()
            cutoff = _utc(row.cutoff)
            assert cutoff is not None
            return (_utc(prev.cutoff) if prev else None), cutoff

    def editions(self) -> list[tuple[date, datetime]]:
        with self.session() as s:
            rows = s.exec(select(EditionRow).order_by(EditionRow.edition)).all()  # type: ignore[arg-type]
        return [(r.edition, _utc(r.cutoff) or r.cutoff) for r in rows]

    # feeds --------------------------------------------------------------
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

    # deliveries -----------------------------------------------------------
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
            q = select(t.c.updated_at).where(t.c.status == "sent", t.c.updated_at >= _utc(since))
            return [_utc(v) or v for (v,) in conn.execute(q)]

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
            [None] if among is None else list(_chunks(sorted(among), 400))
        )
        with self.engine.connect() as conn:
            for chunk in _chunks(list(emails), 500):
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

    # runs and suppressions ----------------------------------------------
    def start_run(self, now: datetime, edition: date | None) -> int:
        with self.session() as s:
            row = RunRow(started=now, edition=edition)
            s.add(row)
            s.commit()
            assert row.id is not None
            return row.id

    def finish_run(self, run_id: int, now: datetime, summary: dict[str, Any]) -> None:
        with self.session() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                return
            row.finished = now
            row.summary = json.dumps(summary, default=str)
            s.add(row)
            s.commit()

    def last_run(self) -> tuple[datetime, datetime | None, dict[str, Any]] | None:
        with self.session() as s:
            row = s.exec(select(RunRow).order_by(RunRow.id.desc())).first()  # type: ignore[union-attr]
        if row is None:
            return None
        return _utc(row.started) or row.started, _utc(row.finished), json.loads(row.summary)

    def suppress(self, email: str, now: datetime, reason: str = "") -> None:
        with self.session() as s:
            s.merge(Suppression(email=email.lower(), at=now, reason=reason))
            s.commit()

    def unsuppress(self, email: str) -> None:
        with self.session() as s:
            row = s.get(Suppression, email.lower())
            if row is not None:
                s.delete(row)
                s.commit()

    def suppressed(self) -> set[str]:
        with self.session() as s:
            return set(s.exec(select(Suppression.email)).all())

    def suppressions(self) -> dict[str, tuple[datetime, str]]:
        """Per lower-cased email: (when, why) it was suppressed."""
        with self.session() as s:
            rows = s.exec(select(Suppression)).all()
        return {r.email: (_utc(r.at) or r.at, r.reason) for r in rows}


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
            for chunk in _chunks(list(emails), 500):
                q = select(t.c.email, t.c.status).where(
                    t.c.edition == edition, t.c.email.in_(chunk)
                )
                out.update({e: st for e, st in self.conn.execute(q)})
        return out

    def claim(self, items: Sequence[tuple[str, date, str]], now: datetime) -> None:
        if not items:
            return
        t = _DELIVERY
        at = _utc(now)
        with self.lock, self._transaction():
            existing: set[tuple[str, date]] = set()
            for edition in {d for _, d, _ in items}:
                emails = [e for e, d, _ in items if d == edition]
                for chunk in _chunks(emails, 500):
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
        at = _utc(now)
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
            last_attempt=_utc(row.last_attempt),
            last_success=_utc(row.last_success),
            last_error=row.last_error,
            last_error_at=_utc(row.last_error_at),
            failures=row.failures,
            last_count=row.last_count,
        )


def _edition_before(s: Session, edition: date) -> EditionRow | None:
    q = select(EditionRow).where(EditionRow.edition < edition)
    return s.exec(q.order_by(EditionRow.edition.desc())).first()  # type: ignore[attr-defined]


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(row.email, row.edition, row.message_id, row.status, row.reply)


def _new_row(paper: Paper, now: datetime) -> PaperRow:
    return PaperRow(
        id=paper.id,
        title=paper.title,
        abstract=paper.abstract,
        authors=list(paper.authors),
        url=paper.url,
        pdf_url=paper.pdf_url,
        code_url=paper.code_url,
        hf_url=paper.hf_url,
        project_url=paper.project_url,
        thumbnail=paper.thumbnail,
        categories=list(paper.categories),
        published=paper.published,
        sources=sorted(set(paper.sources)),
        upvotes=paper.upvotes,
        comments=paper.comments,
        github_stars=paper.github_stars,
        ai_summary=paper.ai_summary,
        ai_keywords=list(paper.ai_keywords),
        announce_type=paper.announce_type,
        first_seen=now,
        last_seen=now,
    )


def _merged_value(a: Paper, b: Paper) -> Paper:
    """Two sightings of one paper in the same fetch, folded (used before touching the DB)."""
    row = _new_row(a, _EPOCH)
    _merge(row, b, _EPOCH)
    return row_to_paper(row)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]

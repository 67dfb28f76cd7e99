"""What the web app keeps: subscriptions waiting for their confirmation, rate-limit
counters, single-use tokens already spent, what each digest held (for "view in browser"
and votes), and the keyed hashes of erased addresses."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from ..models import Delivery
from ._base import Base, chunks, utc
from ._schema import (
    DeliveryRow,
    DigestContentRow,
    DueClaimRow,
    ErasedRow,
    PendingRow,
    RateRow,
    RunRow,
    SentPaper,
    SubscriberFileRow,
    Suppression,
    UsedTokenRow,
)


@dataclass(frozen=True)
class Pending:
    id: str
    email: str
    data: dict[str, Any]
    created: datetime
    expires: datetime


@dataclass(frozen=True)
class SentDigest:
    email: str
    edition: date
    papers: tuple[tuple[str, float, tuple[str, ...]], ...]  # (paper id, score, reasons)


class WebData(Base):
    # ------------------------------------------------------------ pending subscriptions

    def add_pending(
        self, email: str, data: dict[str, Any], now: datetime, ttl: timedelta
    ) -> Pending:
        """A new pending subscription for ``email``; an earlier one for the same address
        is replaced (only the latest confirmation mail works)."""
        key = email.strip().lower()
        row = PendingRow(
            id=secrets.token_urlsafe(16),
            email=key,
            data=json.dumps(data, ensure_ascii=False),
            created=now,
            expires=now + ttl,
        )
        with self.session() as s:
            s.exec(delete(PendingRow).where(PendingRow.email == key))  # type: ignore[arg-type]
            s.exec(delete(PendingRow).where(PendingRow.expires < now))  # type: ignore[arg-type]
            s.add(row)
            s.commit()
        return _pending(row)

    def pending(self, pending_id: str, now: datetime) -> Pending | None:
        """The pending subscription, or None when unknown or expired."""
        with self.session() as s:
            row = s.get(PendingRow, pending_id)
        if row is None or (utc(row.expires) or row.expires) < now:
            return None
        return _pending(row)

    def take_pending(self, pending_id: str, now: datetime) -> Pending | None:
        """Remove and return the pending subscription: of two requests confirming it at
        once, exactly one gets it."""
        with self.session() as s:
            row = s.get(PendingRow, pending_id)
            if row is None:
                return None
            result = s.exec(delete(PendingRow).where(PendingRow.id == pending_id))  # type: ignore[arg-type]
            s.commit()
        if not result.rowcount or (utc(row.expires) or row.expires) < now:
            return None
        return _pending(row)

    def forget_pending(self, email: str) -> int:
        with self.session() as s:
            result = s.exec(delete(PendingRow).where(PendingRow.email == email.lower()))  # type: ignore[arg-type]
            s.commit()
        return int(result.rowcount or 0)

    # ------------------------------------------------------------ rate limits

    def hit(self, key: str, limit: int, window: timedelta, now: datetime) -> bool:
        """Count one request against ``key``; False when it is over ``limit`` in the
        current ``window`` (then it is not counted). Kept in the database, so limits hold
        across restarts and worker processes; each step is one conditional statement, so
        concurrent requests never count twice or lose a count."""
        t: Any = RateRow.__table__  # type: ignore[attr-defined]
        since = now - window
        for _ in range(3):
            with self.engine.begin() as conn:
                counted = conn.execute(
                    update(t)
                    .where(t.c.key == key, t.c.window_start > since, t.c.count < limit)
                    .values(count=t.c.count + 1)
                ).rowcount
                if counted:
                    return True
                renewed = conn.execute(
                    update(t)
                    .where(t.c.key == key, t.c.window_start <= since)
                    .values(window_start=now, count=1)
                ).rowcount
                if renewed:
                    return True
                exists = conn.execute(select(t.c.key).where(t.c.key == key)).first()
                if exists is not None:
                    return False  # at the limit in this window
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(t).values(key=key, window_start=now, count=1))
                return True
            except IntegrityError:
                continue  # someone else made it first: count against theirs
        return False

    def prune_rates(self, before: datetime) -> int:
        with self.session() as s:
            result = s.exec(delete(RateRow).where(RateRow.window_start < before))  # type: ignore[arg-type]
            s.commit()
        return int(result.rowcount or 0)

    # ------------------------------------------------------------ single-use tokens

    def use_token(self, token: str, now: datetime) -> bool:
        """Spend a single-use token: True the first time, False ever after."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.session() as s:
            s.add(UsedTokenRow(digest=digest, at=now))
            try:
                s.commit()
            except IntegrityError:
                return False
        return True

    def token_used(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.session() as s:
            return s.get(UsedTokenRow, digest) is not None

    def prune_used_tokens(self, before: datetime) -> int:
        """Forget spent tokens that have expired anyway."""
        with self.session() as s:
            result = s.exec(delete(UsedTokenRow).where(UsedTokenRow.at < before))  # type: ignore[arg-type]
            s.commit()
        return int(result.rowcount or 0)

    # ------------------------------------------------------------ what each digest held

    def record_digests(self, items: Sequence[SentDigest], now: datetime) -> None:
        """Keep what each digest held (replacing an earlier record of the same one): a
        delete and a bulk insert per edition, a few statements for a batch of digests."""
        if not items:
            return
        t: Any = DigestContentRow.__table__  # type: ignore[attr-defined]
        by_edition: dict[date, dict[str, SentDigest]] = {}
        for item in items:
            by_edition.setdefault(item.edition, {})[item.email.lower()] = item
        with self.engine.begin() as conn:
            for edition, group in by_edition.items():
                for chunk in chunks(sorted(group), 500):
                    conn.execute(delete(t).where(t.c.edition == edition, t.c.email.in_(chunk)))
                rows = [
                    {
                        "email": email,
                        "edition": edition,
                        "papers": json.dumps(
                            [[p, round(score, 4), list(r)] for p, score, r in item.papers],
                            ensure_ascii=False,
                        ),
                        "at": now,
                    }
                    for email, item in group.items()
                ]
                conn.execute(insert(t), rows)

    def sent_digest(self, email: str, edition: date) -> SentDigest | None:
        with self.session() as s:
            row = s.get(DigestContentRow, (email.lower(), edition))
        return _sent(row) if row else None

    def sent_digests(self, email: str) -> list[SentDigest]:
        with self.session() as s:
            rows = s.exec(
                select(DigestContentRow)
                .where(DigestContentRow.email == email.lower())
                .order_by(DigestContentRow.edition)  # type: ignore[arg-type]
            ).all()
        return [_sent(r) for r in rows]

    def forget_digests(self, email: str) -> int:
        with self.session() as s:
            result = s.exec(
                delete(DigestContentRow).where(DigestContentRow.email == email.lower())  # type: ignore[arg-type]
            )
            s.commit()
        return int(result.rowcount or 0)

    # ------------------------------------------------------------ erased addresses

    def add_erased(self, address_hash: str, now: datetime) -> None:
        with self.session() as s:
            s.merge(ErasedRow(hash=address_hash, at=now))
            s.commit()

    def forget_erased(self, address_hash: str) -> None:
        """They subscribed again (and confirmed): the address may be mailed once more."""
        with self.session() as s:
            s.exec(delete(ErasedRow).where(ErasedRow.hash == address_hash))  # type: ignore[arg-type]
            s.commit()

    def erased_hashes(self) -> set[str]:
        """The keyed hash of every erased address."""
        with self.session() as s:
            return set(s.exec(select(ErasedRow.hash)).all())

    def erased(self, hashes: Sequence[str]) -> set[str]:
        """Those of ``hashes`` that belong to erased addresses."""
        out: set[str] = set()
        with self.session() as s:
            for chunk in chunks(sorted(set(hashes)), 500):
                out.update(s.exec(select(ErasedRow.hash).where(ErasedRow.hash.in_(chunk))).all())  # type: ignore[attr-defined]
        return out

    def count_erased(self) -> int:
        with self.session() as s:
            return int(s.exec(select(func.count()).select_from(ErasedRow)).one())

    # ------------------------------------------------------------ one reader's rows

    def deliveries_of(self, email: str) -> list[Delivery]:
        """Every delivery-log row of one reader, oldest edition first."""
        with self.session() as s:
            rows = s.exec(
                select(DeliveryRow)
                .where(func.lower(DeliveryRow.email) == email.lower())
                .order_by(DeliveryRow.edition)  # type: ignore[arg-type]
            ).all()
        return [Delivery(r.email, r.edition, r.message_id, r.status, r.reply) for r in rows]

    def forget_reader(self, email: str, *, rate_keys: Sequence[str] = ()) -> None:
        """Erase one reader's rows (but votes, see ``forget_votes``): delivery log, papers
        sent, what each digest held, pending sign-ups, the file the address was read from,
        claims of runs in progress, its rate-limit counters (``rate_keys``), the
        suppression that names the address (an erased address is kept as a keyed hash
        instead, ``add_erased``), and the address wherever a run's summary names it."""
        key = email.lower()
        with self.session() as s:
            for table, column in (
                (DeliveryRow, DeliveryRow.email),
                (SentPaper, SentPaper.email),
                (DigestContentRow, DigestContentRow.email),
                (PendingRow, PendingRow.email),
                (Suppression, Suppression.email),
                (SubscriberFileRow, SubscriberFileRow.email),
                (DueClaimRow, DueClaimRow.email),
            ):
                s.exec(delete(table).where(func.lower(column) == key))
            if rate_keys:
                s.exec(delete(RateRow).where(RateRow.key.in_(list(rate_keys))))  # type: ignore[attr-defined]
            named = re.compile(re.escape(key), re.IGNORECASE)
            runs = s.exec(select(RunRow).where(func.lower(RunRow.summary).contains(key))).all()
            for run in runs:
                run.summary = named.sub("(erased)", run.summary)
                s.add(run)
            s.commit()


def _pending(row: PendingRow) -> Pending:
    return Pending(
        row.id,
        row.email,
        json.loads(row.data),
        utc(row.created) or row.created,
        utc(row.expires) or row.expires,
    )


def _sent(row: DigestContentRow) -> SentDigest:
    papers = tuple((str(p), float(score), tuple(r)) for p, score, r in json.loads(row.papers))
    return SentDigest(row.email, row.edition, papers)

"""Votes: each subscriber's "more like this" (+1) and "less like this" (-1) per paper, the
latest one kept, for the ranker to learn from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import select

from ._base import Base, chunks, utc
from ._schema import VoteRow

UP, DOWN = 1, -1


class Votes(Base):
    def set_vote(
        self, email: str, paper_id: str, value: int, now: datetime, *, source: str = ""
    ) -> None:
        """Record ``value`` (+1 or -1) for (``email``, ``paper_id``), replacing any earlier
        vote; 0 clears it."""
        if value not in (UP, DOWN, 0):
            raise ValueError(f"a vote is +1, -1 or 0 (clear), not {value!r}")
        key = (email.lower(), paper_id)
        with self.session() as s:
            row = s.get(VoteRow, key)
            if value == 0:
                if row is not None:
                    s.delete(row)
            elif row is None:
                s.add(VoteRow(email=key[0], paper_id=paper_id, value=value, at=now, source=source))
            else:
                row.value, row.at, row.source = value, now, source
                s.add(row)
            s.commit()

    def votes(self, email: str) -> dict[str, tuple[int, datetime]]:
        """One subscriber's votes: paper id -> (value, when), oldest first."""
        with self.session() as s:
            rows = s.exec(
                select(VoteRow)
                .where(VoteRow.email == email.lower())
                .order_by(VoteRow.at, VoteRow.paper_id)  # type: ignore[arg-type]
            ).all()
        return {r.paper_id: (r.value, utc(r.at) or r.at) for r in rows}

    def votes_of(self, emails: Sequence[str]) -> dict[str, dict[str, int]]:
        """Many subscribers' votes in a few queries: lower-cased email -> paper id -> value,
        each subscriber's oldest first. A subscriber without votes is absent."""
        out: dict[str, dict[str, int]] = {}
        wanted = sorted({e.lower() for e in emails})
        with self.session() as s:
            for chunk in chunks(wanted, 500):
                q = (
                    select(VoteRow.email, VoteRow.paper_id, VoteRow.value)
                    .where(VoteRow.email.in_(chunk))  # type: ignore[attr-defined]
                    .order_by(VoteRow.at, VoteRow.paper_id)  # type: ignore[arg-type]
                )
                for email, pid, value in s.exec(q):
                    out.setdefault(email, {})[pid] = value
        return out

    def forget_votes(self, email: str) -> int:
        """Delete every vote of ``email`` (erasure); returns how many there were."""
        with self.session() as s:
            result = s.exec(delete(VoteRow).where(VoteRow.email == email.lower()))  # type: ignore[arg-type]
            s.commit()
        return int(result.rowcount or 0)

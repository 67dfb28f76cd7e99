"""Editions: each one's cut-off, and the papers first seen between two cut-offs."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlmodel import Session, select

from ..models import Paper
from ._base import EPOCH, utc
from ._papers import Papers
from ._schema import EditionRow


class Editions(Papers):
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
                    cutoff = utc(before.cutoff) if before else EPOCH
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
            cutoff = utc(row.cutoff)
            assert cutoff is not None
            return (utc(prev.cutoff) if prev else None), cutoff

    def editions(self) -> list[tuple[date, datetime]]:
        with self.session() as s:
            rows = s.exec(select(EditionRow).order_by(EditionRow.edition)).all()  # type: ignore[arg-type]
        return [(r.edition, utc(r.cutoff) or r.cutoff) for r in rows]

    def edition_papers(self, edition: date, now: datetime, *, create: bool = True) -> list[Paper]:
        """The papers first seen since the previous edition's cut-off, up to this one's."""
        after, until = self.edition_window(edition, now, create=create)
        return self.papers_seen_between(after, until)

    def week_papers(self, edition: date, now: datetime, *, create: bool = True) -> list[Paper]:
        """A weekly digest's candidates: the papers of every edition in the seven days up to
        ``edition`` (first seen after the cut-off of the last edition a week or more before
        it)."""
        _, until = self.edition_window(edition, now, create=create)
        older = [cutoff for day, cutoff in self.editions() if day <= edition - timedelta(days=7)]
        return self.papers_seen_between(older[-1] if older else None, until)


def _edition_before(s: Session, edition: date) -> EditionRow | None:
    q = select(EditionRow).where(EditionRow.edition < edition)
    return s.exec(q.order_by(EditionRow.edition.desc())).first()  # type: ignore[attr-defined]

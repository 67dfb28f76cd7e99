"""Editions: each one's cut-off, and the papers first seen between two cut-offs."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from ..models import Paper
from ._base import EPOCH, utc
from ._papers import Papers
from ._schema import EditionRow, PaperRow


class Editions(Papers):
    def edition_window(
        self, edition: date, now: datetime, *, create: bool = True
    ) -> tuple[datetime | None, datetime]:
        """(previous cut-off, this cut-off) for an edition, creating it on first use.

        An edition holds the papers first seen after the previous edition's cut-off and
        up to its own, so a missed day's papers land in the next edition once. With
        ``create=False`` (previews), a new edition's window is computed but not stored.

        A window is stored only when it holds papers, and never changes once stored. So a
        run with no new papers (every feed down, or nothing new yet) leaves the edition
        open: the next run computes it again up to its own time, and sends it if papers
        came in meanwhile. An edition first asked for after a later one exists (a backfill
        of a skipped day, or a subscriber far west of the others) is empty: its papers
        already went out in that later edition.
        """
        with self.session() as s:
            row = s.get(EditionRow, edition)
            prev = _edition_before(s, edition)
            after = utc(prev.cutoff) if prev else None
            if row is None:
                later = s.exec(
                    select(EditionRow)
                    .where(EditionRow.edition > edition)
                    .order_by(EditionRow.edition)  # type: ignore[arg-type]
                ).first()
                cutoff: datetime | None = now if later is None else (after or EPOCH)
                assert cutoff is not None
                if create and _any_paper_between(s, after, cutoff):
                    s.add(EditionRow(edition=edition, cutoff=cutoff, created=now))
                    try:
                        s.commit()
                    except IntegrityError:  # a run sharing the edition made it first: its
                        s.rollback()  # window is the edition's, for every run
                        made = s.get(EditionRow, edition)
                        assert made is not None
                        cutoff = utc(made.cutoff)
            else:
                cutoff = utc(row.cutoff)
            assert cutoff is not None
            return after, cutoff

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


def _any_paper_between(s: Session, after: datetime | None, until: datetime) -> bool:
    q = select(PaperRow.id).where(PaperRow.first_seen <= until)
    if after is not None:
        q = q.where(PaperRow.first_seen > after)
    return s.exec(q.limit(1)).first() is not None


def _edition_before(s: Session, edition: date) -> EditionRow | None:
    q = select(EditionRow).where(EditionRow.edition < edition)
    return s.exec(q.order_by(EditionRow.edition.desc())).first()  # type: ignore[attr-defined]

"""Papers: merged by id as feeds bring them, read back by id or by when they were first seen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import func
from sqlmodel import select

from ..models import Paper
from ._base import EPOCH, Base, chunks, utc
from ._schema import PaperRow


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
        published=utc(row.published),
        sources=tuple(row.sources or ()),
        upvotes=row.upvotes,
        comments=row.comments,
        github_stars=row.github_stars,
        ai_summary=row.ai_summary,
        ai_keywords=tuple(row.ai_keywords or ()),
        announce_type=row.announce_type,
        first_seen=utc(row.first_seen),
    )


def _merge(row: PaperRow, paper: Paper, now: datetime) -> None:
    """Fold a fresh sighting of a paper into its stored record."""
    row.sources = sorted(set(row.sources or ()) | set(paper.sources))
    if _count(paper.upvotes) is not None:
        row.upvotes = _count(paper.upvotes)
    if _count(paper.comments) is not None:
        row.comments = _count(paper.comments)
    if _count(paper.github_stars) is not None:
        row.github_stars = _count(paper.github_stars)
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


class Papers(Base):
    def upsert_papers(self, papers: Iterable[Paper], now: datetime) -> tuple[int, int]:
        """Store papers, merging with what is there. Returns (new, updated)."""
        by_id: dict[str, Paper] = {}
        for p in papers:
            by_id[p.id] = p if p.id not in by_id else _merged_value(by_id[p.id], p)
        new = updated = 0
        with self.session() as s:
            existing = {
                r.id: r
                for chunk in chunks(list(by_id), 500)
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
                for chunk in chunks(list(ids), 500)
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
        upvotes=_count(paper.upvotes),
        comments=_count(paper.comments),
        github_stars=_count(paper.github_stars),
        ai_summary=paper.ai_summary,
        ai_keywords=list(paper.ai_keywords),
        announce_type=paper.announce_type,
        first_seen=now,
        last_seen=now,
    )


_INT64 = 2**63 - 1


def _count(value: int | None) -> int | None:
    """A count the database can hold (SQLite integers are 64-bit), else None: a value too
    large would fail the whole batch with OverflowError."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT64:
        return value
    return None


def _merged_value(a: Paper, b: Paper) -> Paper:
    """Two sightings of one paper in the same fetch, folded (used before touching the DB)."""
    row = _new_row(a, EPOCH)
    _merge(row, b, EPOCH)
    return row_to_paper(row)

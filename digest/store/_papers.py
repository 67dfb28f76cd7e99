"""Papers: merged by id as feeds bring them, read back by id or by when they were first seen."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


# How far a feed's values are believed. Every feed has a trust (0-100, 50 unless its
# [[feeds]] table says otherwise). The official sources (arXiv, Hugging Face's API) rank
# above any other feed for every field, and each above the other for the fields it owns.
DEFAULT_TRUST = 50
OFFICIAL = 1_000
OWNER = 2_000

# The fields a feed sets, each merged on its own. ``sources`` (every feed that listed the
# paper), ``first_seen`` and ``last_seen`` are not ranked.
FIELDS = (
    "title",
    "abstract",
    "authors",
    "url",
    "pdf_url",
    "code_url",
    "hf_url",
    "project_url",
    "thumbnail",
    "categories",
    "published",
    "upvotes",
    "comments",
    "github_stars",
    "ai_summary",
    "ai_keywords",
    "announce_type",
)
_COUNTS = frozenset({"upvotes", "comments", "github_stars"})
_LISTS = frozenset({"authors", "categories", "ai_keywords"})


@dataclass(frozen=True)
class Precedence:
    """How far one feed's values are believed, field by field: ``trust`` (0-100); above
    any trust when the feed is an ``official`` source; above that for the fields it
    ``owns`` (arXiv the text of a paper, Hugging Face's API its popularity and code).

    When several feeds carry a paper, each field holds the value of the highest-ranked feed
    that has one. The owner's value holds even when it is empty (Hugging Face's API saying
    a paper has no code link is not overruled by a feed that says it has). Between equals:
    counts take the latest value (upvotes change during the day), the abstract the longer
    one, categories the union, and anything else the first value kept.
    """

    trust: int = DEFAULT_TRUST
    owns: frozenset[str] = frozenset()
    official: bool = False

    def rank(self, field: str) -> int:
        if field in self.owns:
            return OWNER + self.trust
        return OFFICIAL + self.trust if self.official else self.trust


def _value(paper: Paper, field: str) -> Any:
    value = getattr(paper, field)
    if field in _COUNTS:
        return _count(value)
    if field in _LISTS:
        return list(value)
    return value


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _merge(row: PaperRow, paper: Paper, now: datetime, precedence: Precedence) -> None:
    """Fold a fresh sighting of a paper into its stored record, field by field."""
    ranks = dict(row.field_ranks or {})
    for field in FIELDS:
        new, old = _value(paper, field), getattr(row, field)
        rank = precedence.rank(field)
        # A value stored before ranks were kept ranks as a feed of the default trust.
        held = ranks.get(field, -1 if _empty(old) else DEFAULT_TRUST)
        if _empty(new):
            take = field in precedence.owns and rank > held
        elif _empty(old) and held < OWNER:  # only an owner's "none" holds
            take = True
        elif rank != held:
            take = rank > held
        elif field in _COUNTS:
            take = True
        elif field == "abstract":
            take = len(new) > len(old or "")
        elif field == "categories":
            new = list(dict.fromkeys([*(old or ()), *new]))
            take = new != old
        else:
            take = False
        if take:
            setattr(row, field, new)
            ranks[field] = rank
    row.field_ranks = ranks
    row.sources = sorted(set(row.sources or ()) | set(paper.sources))
    row.last_seen = now


class Papers(Base):
    def upsert_papers(
        self, papers: Iterable[Paper], now: datetime, precedence: Precedence | None = None
    ) -> tuple[int, int]:
        """Store one feed's papers, merging each with what is there field by field, as
        ``precedence`` (how far that feed is believed) says. Returns (new, updated)."""
        precedence = precedence or Precedence()
        by_id: dict[str, Paper] = {}
        for p in papers:
            by_id[p.id] = p if p.id not in by_id else _merged_value(by_id[p.id], p, precedence)
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
                    s.add(_new_row(paper, now, precedence))
                    new += 1
                else:
                    _merge(row, paper, now, precedence)
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


def _new_row(paper: Paper, now: datetime, precedence: Precedence) -> PaperRow:
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
        field_ranks={
            f: precedence.rank(f)
            for f in FIELDS
            if f in precedence.owns or not _empty(_value(paper, f))
        },
    )


_INT64 = 2**63 - 1


def _count(value: int | None) -> int | None:
    """A count the database can hold (SQLite integers are 64-bit), else None: a value too
    large would fail the whole batch with OverflowError."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT64:
        return value
    return None


def _merged_value(a: Paper, b: Paper, precedence: Precedence) -> Paper:
    """Two sightings of one paper in the same fetch, folded (used before touching the DB)."""
    row = _new_row(a, EPOCH, precedence)
    _merge(row, b, EPOCH, precedence)
    return row_to_paper(row)

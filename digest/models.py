"""The small typed values each pipeline stage hands to the next."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper, normalized from any source.

    ``id`` is the canonical id: the arXiv id without version where there is one
    (``2406.01234``, ``hep-th/9901001``), otherwise ``url:<digest of the link>``.
    """

    id: str
    title: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    url: str = ""
    pdf_url: str | None = None
    code_url: str | None = None
    hf_url: str | None = None
    project_url: str | None = None
    thumbnail: str | None = None
    categories: tuple[str, ...] = ()
    published: datetime | None = None
    sources: tuple[str, ...] = ()
    upvotes: int | None = None
    comments: int | None = None
    github_stars: int | None = None
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    announce_type: str | None = None
    first_seen: datetime | None = None

    @property
    def arxiv_id(self) -> str | None:
        return None if self.id.startswith("url:") else self.id


@dataclass(frozen=True, slots=True)
class Keyword:
    """A profile keyword or quoted phrase with its weight."""

    term: str
    weight: float = 1.0

    @property
    def is_phrase(self) -> bool:
        return " " in self.term.strip()


@dataclass(frozen=True, slots=True)
class Profile:
    """One subscriber's interests and delivery preferences (from ``subscribers/*.toml``)."""

    email: str
    name: str = ""
    interests: str = ""
    keywords: tuple[Keyword, ...] = ()
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    category_mode: str = "boost"  # "boost" or "restrict"
    exclude: tuple[str, ...] = ()
    liked: tuple[str, ...] = ()
    liked_file: Path | None = None
    liked_texts: tuple[tuple[str, str], ...] = ()  # (title, abstract) from liked_file
    disliked: tuple[str, ...] = ()  # paper ids: down votes kept in the file
    disliked_file: Path | None = None
    disliked_texts: tuple[tuple[str, str], ...] = ()  # (title, abstract) from disliked_file
    max_papers: int = 10
    min_score: float = 0.0
    timezone: str = "UTC"
    send_hour: int | None = None
    frequency: str = "daily"  # "daily" or "weekly"
    weekday: str = "monday"
    active: bool = True
    path: Path | None = None

    @property
    def slug(self) -> str:
        if self.path is not None:
            return self.path.stem
        return self.email.split("@")[0]


@dataclass(frozen=True, slots=True)
class Scored:
    """A paper picked for a profile, with its score and the reasons shown to the reader."""

    paper: Paper
    score: float
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Digest:
    profile: Profile
    edition: date
    picks: tuple[Scored, ...]


@dataclass(frozen=True, slots=True)
class Rendered:
    """One rendered email. ``html_parts`` / ``text_parts``, when given, are the pieces
    ``html`` / ``text`` were joined from, the pieces shared between subscribers (layout,
    cards) being the same objects each time: the MIME encoder then works per piece."""

    subject: str
    html: str
    text: str
    notes: tuple[str, ...] = field(default=())  # e.g. "shortened abstracts to fit 100 KB"
    papers: int = -1  # the picks it shows (fewer than the digest's when some were dropped)
    html_parts: tuple[str, ...] = field(default=(), repr=False, compare=False)
    text_parts: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def size(self) -> int:
        return len(self.html.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Delivery:
    email: str
    edition: date
    message_id: str
    status: str  # pending / sending / sent / deferred / failed / skipped
    reply: str = ""

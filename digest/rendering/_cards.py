"""What each paper's card and each digest's labels say: cleaned text, http(s) links only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..models import Paper, Scored
from ._textfmt import clean_text, one_line, plural, safe_url, short_authors, shorten

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class Card:
    """What a card template sees as ``card``; all text already cleaned, links http(s) only."""

    id: str
    title: str
    url: str
    authors: str
    summary: str
    stats: str
    links: tuple[tuple[str, str], ...]
    categories: str
    reasons: str = ""


def date_label(day: date) -> str:
    """``Fri 27 Nov 2026`` (English whatever the locale)."""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def make_card(paper: Paper, abstract_chars: int) -> Card:
    """A paper's card with its summary cut to ``abstract_chars`` (0 leaves it out)."""
    summary = clean_text(paper.ai_summary) or clean_text(paper.abstract)
    stats = []
    if paper.upvotes:
        stats.append(plural(paper.upvotes, "upvote"))
    if paper.comments:
        stats.append(plural(paper.comments, "comment"))
    if paper.github_stars:
        stats.append(plural(paper.github_stars, "GitHub star"))
    url = safe_url(paper.url) or safe_url(paper.hf_url) or safe_url(paper.pdf_url)
    links: list[tuple[str, str]] = []
    for label, link in (
        ("PDF", paper.pdf_url),
        ("Code", paper.code_url),
        ("Hugging Face", paper.hf_url),
        ("Project", paper.project_url),
    ):
        good = safe_url(link)
        if good and good != url and all(good != u for _, u in links):
            links.append((label, good))
    return Card(
        id=paper.id,
        title=clean_text(paper.title) or "(untitled)",
        url=url,
        authors=short_authors(paper.authors),
        summary=shorten(summary, abstract_chars),
        stats=" · ".join(stats),
        links=tuple(links),
        categories=", ".join(one_line(c) for c in paper.categories[:3]),
    )


def reasons_line(pick: Scored) -> str:
    return one_line(" · ".join([r for r in map(one_line, pick.reasons) if r]))


def subject_line(label: str, count: int) -> str:
    return one_line(f"Your paper digest for {label}: {plural(count, 'paper')}")

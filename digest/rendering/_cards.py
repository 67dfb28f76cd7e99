"""What each paper's card and each digest's labels say: cleaned text, http(s) links only."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date
from urllib.parse import quote

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
    tldr: str = ""  # a machine-written one-line summary (Hugging Face's ai_summary), or ""
    # the reader's signed "more / less like this" links for this paper, or "" (per digest)
    more_url: str = ""
    less_url: str = ""


def date_label(day: date) -> str:
    """``Fri 27 Nov 2026`` (English whatever the locale)."""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


# A machine-written TL;DR is one sentence: at most this many characters of the card's budget
# (Hugging Face's run 130 to 260).
TLDR_CHARS = 260
# The shortest abstract worth showing after a TL;DR; below it, the TL;DR stands alone.
_MIN_ABSTRACT = 80


def summaries(paper: Paper, budget: int) -> tuple[str, str]:
    """(TL;DR, abstract) for a card, together at most ``budget`` characters (0 leaves both
    out): the source's machine-written summary, cut to one line, then the authors' own
    abstract in what is left of the budget."""
    abstract = clean_text(paper.abstract)
    tldr = clean_text(paper.ai_summary)
    if not tldr or abstract.startswith(tldr.rstrip(".…")):
        return "", shorten(abstract, budget)
    tldr = shorten(tldr, min(TLDR_CHARS, budget))
    rest = budget - len(tldr)
    return tldr, shorten(abstract, rest) if rest >= _MIN_ABSTRACT else ""


def make_card(paper: Paper, abstract_chars: int) -> Card:
    """A paper's card with its TL;DR and abstract cut to ``abstract_chars`` together (0
    leaves them out)."""
    tldr, summary = summaries(paper, abstract_chars)
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
        summary=summary,
        stats=" · ".join(stats),
        links=tuple(links),
        categories=", ".join(one_line(c) for c in paper.categories[:3]),
        tldr=tldr,
    )


def vote_links(vote_url: str, paper_id: str) -> tuple[str, str]:
    """The "more like this" and "less like this" links of one paper of a digest: the
    reader's signed vote link for the digest (``vote_url``, empty: none) with the direction
    and the paper's id."""
    if not vote_url:
        return "", ""
    pid = quote(paper_id, safe="/:")
    return f"{vote_url}&d=up&p={pid}", f"{vote_url}&d=down&p={pid}"


# The ranker's popularity reason ("52 upvotes"): the card's stats already show it.
_UPVOTES = re.compile(r"\d[\d,]* upvotes?")


def reasons_line(pick: Scored) -> str:
    """The reasons, one line, without what the card shows anyway (its upvotes)."""
    return one_line(
        " · ".join([r for r in map(one_line, pick.reasons) if r and not _UPVOTES.fullmatch(r)])
    )


def card_of(pick: Scored, level: int, vote_url: str = "") -> Card:
    """A pick's card as the per-email path shows it: its reasons and vote links in."""
    more, less = vote_links(vote_url, pick.paper.id)
    return replace(
        make_card(pick.paper, level), reasons=reasons_line(pick), more_url=more, less_url=less
    )

"""Building a ``Paper`` from the bits any feed format gives us, within sane limits.

Whatever a feed sends, a paper comes out with values of the right type and size: a field
of the wrong JSON type is ignored, a count out of range is dropped, text is cut to the caps
below. What was cut or dropped is counted (``noting``) and logged once per feed.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..models import Paper
from ._text import arxiv_id, arxiv_links, collapse, github_url, hf_link, url_id

log = logging.getLogger(__name__)

# Caps on what one paper may hold. arXiv's own limits are far below them (an abstract is
# at most 1,920 characters); they are there so that one feed cannot make every later stage
# (ranking, cards) spend gigabytes on a field.
MAX_TITLE = 500
MAX_ABSTRACT = 5_000
MAX_SUMMARY = 2_000  # ai_summary
MAX_AUTHORS = 500
MAX_NAME = 200  # one author's name
MAX_KEYWORDS = 50
MAX_KEYWORD = 100
MAX_CATEGORIES = 50
MAX_CATEGORY = 64
MAX_URL = 2_000
MAX_SHORT = 64  # announce_type
MAX_ENTRIES = 10_000  # papers kept from one feed
MAX_COUNT = 2**31 - 1  # upvotes, comments, stars: fits any database's INTEGER

_NOTES: ContextVar[Counter[str] | None] = ContextVar("digest_feed_notes", default=None)


def note(what: str) -> None:
    """Count one thing cut or dropped from the feed being parsed (see ``noting``)."""
    notes = _NOTES.get()
    if notes is not None:
        notes[what] += 1


@contextmanager
def noting(source: str) -> Iterator[Counter[str]]:
    """Collect what ``note`` counts while parsing ``source``; log it as one line at the end."""
    notes: Counter[str] = Counter()
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)
        if notes:
            log.info(
                "feed %s: %s",
                source,
                "; ".join(f"{what} ({n}x)" if n > 1 else what for what, n in notes.items()),
            )


def cut(text: str, limit: int, what: str) -> str:
    """``text`` within ``limit`` characters: cut at a word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    note(f"{what} cut to {limit} characters")
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space > limit * 0.8:
        head = head[:space]
    return head.rstrip() + "…"


def capped(values: Iterable[str], count: int, length: int, what: str) -> tuple[str, ...]:
    """Distinct non-empty values, each within ``length`` characters, at most ``count``."""
    out: dict[str, None] = {}
    for value in values:
        if not value:
            continue
        if len(out) >= count:
            note(f"{what} beyond the first {count} left out")
            break
        out[cut(value, length, what.rstrip("s"))] = None
    return tuple(out)


def url_or_none(value: str | None, what: str) -> str | None:
    """A link as a feed gave it, or None when empty or absurdly long."""
    if not value:
        return None
    if len(value) > MAX_URL:
        note(f"{what} longer than {MAX_URL} characters dropped")
        return None
    return value


_PROJECT = re.compile(
    r"(?:project\s*page|project\s*website|website|homepage|demo)\s*(?:is\s*)?(?:at|:)?\s*"
    r"(https?://[^\s,;)\]]+)",
    re.IGNORECASE,
)
_SPLIT = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+|\s*;\s*")
# A Hugging Face paper page's preview image: the paper has a page there.
_HF_THUMBNAIL = re.compile(r"^https://cdn-thumbnails\.huggingface\.co/social-thumbnails/papers/")


@dataclass
class Found:
    """What one feed entry says about a paper, before normalization into ``Paper``."""

    links: list[str]
    title: str
    abstract: str = ""
    authors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    published: datetime | None = None
    pdf_url: str | None = None
    hf_url: str | None = None
    code_url: str | None = None
    project_url: str | None = None
    thumbnail: str | None = None
    upvotes: int | None = None
    comments: int | None = None
    github_stars: int | None = None
    ai_summary: str | None = None
    ai_keywords: tuple[str, ...] = ()
    announce_type: str | None = None
    extra_text: str = ""  # where else to look for code / project links (arXiv comments)


def make_paper(found: Found, source: str) -> Paper:
    """The canonical ``Paper``: arXiv id and links when there is an arXiv id, else ``url:``."""
    links = [lk.strip() for lk in found.links if lk and lk.strip()]
    pid = arxiv_id(*links)
    web = [lk for lk in links if lk.startswith(("http://", "https://"))]
    hf_url = found.hf_url or next((lk for lk in web if "huggingface.co/papers/" in lk), None)
    pdf_url = found.pdf_url
    if pid is not None:
        url, pdf_url = arxiv_links(pid)
        if hf_url is not None or _HF_THUMBNAIL.match(found.thumbnail or ""):
            hf_url = hf_link(pid)
    else:
        url = web[0] if web else ""
        pid = url_id(url or found.title)
    if len(url) > MAX_URL:  # the id is a digest of it; the link itself is not kept
        note(f"link longer than {MAX_URL} characters dropped")
        url = ""
    title = cut(found.title, MAX_TITLE, "title") or url or pid
    abstract = cut(found.abstract, MAX_ABSTRACT, "abstract")
    summary = cut(found.ai_summary or "", MAX_SUMMARY, "ai_summary")
    return Paper(
        id=pid,
        title=title,
        abstract=abstract,
        authors=capped(found.authors, MAX_AUTHORS, MAX_NAME, "authors"),
        url=url,
        pdf_url=url_or_none(pdf_url, "pdf link"),
        code_url=url_or_none(
            found.code_url or github_url(found.extra_text, found.abstract), "code link"
        ),
        hf_url=url_or_none(hf_url, "Hugging Face link"),
        project_url=url_or_none(found.project_url or project_url(found.extra_text), "project link"),
        thumbnail=url_or_none(found.thumbnail, "thumbnail"),
        categories=capped(found.categories, MAX_CATEGORIES, MAX_CATEGORY, "categories"),
        published=found.published,
        sources=(source,),
        upvotes=found.upvotes,
        comments=found.comments,
        github_stars=found.github_stars,
        ai_summary=summary or None,
        ai_keywords=capped(found.ai_keywords, MAX_KEYWORDS, MAX_KEYWORD, "ai_keywords"),
        announce_type=(found.announce_type or "")[:MAX_SHORT] or None,
    )


def project_url(text: str) -> str | None:
    """A project page named in an arXiv comment ("Project page: https://...")."""
    m = _PROJECT.search(text or "")
    if not m:
        return None
    url = m.group(1).rstrip(".")
    return None if "github.com/" in url.lower() else url


def split_authors(text: str) -> list[str]:
    """A one-string author list ("A, B and C") split into names.

    A single "Last, First" is kept whole: commas split only when there are several
    of them or every part looks like a full name.
    """
    text = collapse(text)
    if not text:
        return []
    parts = [p.strip() for p in _SPLIT.split(text) if p.strip()]
    if len(parts) == 2 and "," in text and not all(" " in p for p in parts):
        return [text]
    return parts


# Generic feeds about papers often pack fields into the description text.
_LABELLED = re.compile(
    r"^(?:Authors?:\s*(?P<authors>.+?)\s+)?(?:(?:Upvotes|Likes|Votes):\s*(?P<upvotes>\d+)\s+)?"
    r"(?:Summary|Abstract|TL;DR):\s*(?P<abstract>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_AI_THEN_ABSTRACT = re.compile(
    r"^Abstract\s+(?P<ai>.{20,800}?)\s+Generated by \S+\s+(?P<abstract>.+)$", re.DOTALL
)
# A bare "Abstract" heading glued to the text by a scraper: followed by 2+ spaces in the raw text
# (a real abstract may begin "Abstract Meaning Representation ...", so one space is not enough)
_ABSTRACT_HEADING = re.compile(r"^\s*Abstract\s{2,}(?=\S)")


def labelled(text: str, raw: str = "") -> tuple[str, dict[str, Any]]:
    """(abstract, extra fields) from a description like
    "Authors: A, B Upvotes: 52 Summary: ..." or "Abstract <AI summary> Generated by <model> ..."."""
    m = _LABELLED.match(text)
    if m:
        extra: dict[str, Any] = {}
        if m.group("authors"):
            extra["authors"] = tuple(split_authors(m.group("authors")))
        if m.group("upvotes"):
            extra["upvotes"] = as_int(m.group("upvotes"), "upvotes")
        return m.group("abstract").strip(), extra
    m = _AI_THEN_ABSTRACT.match(text)
    if m:
        return m.group("abstract").strip(), {"ai_summary": m.group("ai").strip()}
    if _ABSTRACT_HEADING.match(raw):
        return text.removeprefix("Abstract").strip(), {}
    return text, {}


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def as_list(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (a number, a string, an object) as []."""
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_int(value: Any, what: str = "count") -> int | None:
    """A count (upvotes, comments, stars) between 0 and ``MAX_COUNT``, or None.

    Integers, integral floats and digit strings are read; a count out of that range is
    dropped (noted), and so is anything else."""
    if isinstance(value, bool):
        return None
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            if len(text) > 18:
                note(f"{what} out of range dropped")
                return None
            number = int(text)
    if number is None:
        return None
    if not 0 <= number <= MAX_COUNT:
        note(f"{what} out of range dropped")
        return None
    return number


def one_line(value: Any, limit: int = 200) -> str:
    return collapse(str(value))[:limit]


def first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)

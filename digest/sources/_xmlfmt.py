"""RSS and Atom through feedparser: arXiv announcement feeds, arXiv API responses, any feed."""

from __future__ import annotations

import io
import logging
import re
import xml.parsers.expat
from collections.abc import Mapping
from typing import Any

import feedparser

from ..errors import FeedError
from ..models import Paper
from ._common import (
    MAX_ENTRIES,
    Found,
    as_str,
    labelled,
    make_paper,
    note,
    one_line,
    split_authors,
)
from ._text import arxiv_id, clean, collapse, hf_link, utc_from_struct

log = logging.getLogger(__name__)

REPLACEMENT_TYPES = frozenset({"replace", "replace-cross"})
ARXIV_SCHEME = "http://arxiv.org/schemas/atom"
_ARXIV_CATEGORY = re.compile(r"^[a-z]+(?:-[a-z]+)?(?:\.[A-Za-z]+(?:-[A-Za-z]+)?)?$")
_ANNOUNCE = re.compile(
    r"^\s*arXiv:\S+\s+Announce Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:\s*)?", re.IGNORECASE
)
_HF_PAPERS = re.compile(r"^https?://(?:www\.)?huggingface\.co/papers/?(?:[?#].*)?$")
# Neither crosses a "<": a text full of "<" costs linear time, not a scan to its end from each.
_TAG = re.compile(r"<[^<>]*>")
_IMG = re.compile(r"<img\b[^<>]*?\bsrc\s*=\s*[\"']?(https?://[^\"'\s>]+)", re.IGNORECASE)


MAX_ATTRIBUTES = 500  # on one element; feeds use a handful, namespaces included


class _TooManyAttributes(Exception):
    pass


def _count_attributes(name: str, attrs: dict[str, str]) -> None:
    if len(attrs) > MAX_ATTRIBUTES:
        raise _TooManyAttributes(f"<{name}> has {len(attrs)} attributes")


def check_structure(data: bytes, source: str) -> None:
    """Refuse XML that would make feedparser's strict parser take quadratic time: an element
    with more than ``MAX_ATTRIBUTES`` attributes (100,000 on <channel> took 105 s). expat
    reads the document once, linearly, up to its first error (which is also as far as the
    strict parser goes; past it feedparser's loose parser takes over, which is linear)."""
    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = _count_attributes
    try:
        parser.Parse(data, True)
    except _TooManyAttributes as exc:
        raise FeedError(
            f"feed {source!r}: {exc} (at most {MAX_ATTRIBUTES}); not a feed we read safely"
        ) from exc
    except Exception:
        pass


def parse_xml(data: bytes, source: str, *, base_url: str, skip_replacements: bool) -> list[Paper]:
    check_structure(data, source)
    try:
        doc = feedparser.parse(
            io.BytesIO(data),
            # We did the HTTP ourselves: say it is XML, so feedparser does not flag every
            # feed as ill-formed for lacking a Content-Type header.
            response_headers={"content-type": "application/xml"}
            | ({"content-location": base_url} if base_url else {}),
            sanitize_html=True,
            resolve_relative_uris=True,
        )
    except Exception as exc:  # feedparser is meant never to raise; be sure anyway
        raise FeedError(
            f"feed {source!r}: could not be read as RSS/Atom ({one_line(exc)}); check the feed url"
        ) from exc
    entries = list(doc.get("entries") or [])
    if len(entries) > MAX_ENTRIES:
        note(f"entries beyond the first {MAX_ENTRIES} left out")
        entries = entries[:MAX_ENTRIES]
    feed = doc.get("feed") or {}
    if not doc.get("version") and not entries:
        why = doc.get("bozo_exception")
        raise FeedError(
            f"feed {source!r}: not an RSS, Atom or JSON feed"
            + (f" ({one_line(why)})" if why else "")
            + "; check the feed url"
        )
    title = collapse(as_str(feed.get("title")))
    if title.lower().startswith("feed error for query"):
        detail = collapse(as_str(feed.get("description")) or as_str(feed.get("subtitle")) or title)
        raise FeedError(f"feed {source!r}: arXiv says: {detail[:300]} Fix the feed url.")
    if doc.get("bozo"):
        log.info(
            "feed %s: ill-formed (%s); keeping the %d entries recovered",
            source,
            one_line(doc.get("bozo_exception")),
            len(entries),
        )
    # A feed of Hugging Face's daily papers made by someone else (its link is their page):
    # each paper with an arXiv id has its Hugging Face page.
    on_hf = bool(_HF_PAPERS.match(as_str(feed.get("link"))))
    papers = []
    for entry in entries:
        paper = entry_paper(entry, source, on_hf=on_hf)
        if paper is None:
            continue
        if skip_replacements and paper.announce_type in REPLACEMENT_TYPES:
            continue
        papers.append(paper)
    return papers


def entry_paper(entry: Mapping[str, Any], source: str, *, on_hf: bool = False) -> Paper | None:
    """One RSS item or Atom entry as a paper, or None when it has no title and no link;
    ``on_hf``: the feed lists Hugging Face daily papers (each has a page there)."""
    links = [lk for lk in entry.get("links") or () if isinstance(lk, Mapping)]
    hrefs = [as_str(entry.get("link")), *(as_str(lk.get("href")) for lk in links)]
    title = clean(as_str(entry.get("title")))
    if not title and not any(h.startswith(("http://", "https://")) for h in hrefs):
        return None  # nothing to show or link to: not a paper
    raw = _summary(entry)
    announce = as_str(entry.get("arxiv_announce_type")).strip().lower() or None
    text = clean(raw)
    extra: dict[str, Any] = {}
    m = _ANNOUNCE.match(text)
    if m:  # arXiv announcement feeds: "arXiv:2411.17702v1 Announce Type: new Abstract: ..."
        announce = announce or m.group("type").lower()
        abstract = text[m.end() :].strip()
    else:
        abstract, extra = labelled(text, _TAG.sub(" ", raw))
    img = _IMG.search(raw)
    return make_paper(
        Found(
            links=[*hrefs, as_str(entry.get("id"))],
            title=title,
            abstract=abstract,
            authors=_authors(entry) or extra.get("authors", ()),
            categories=_categories(entry),
            # feedparser's get() maps a missing updated_parsed to published_parsed, with a
            # DeprecationWarning: each is read as it is
            published=utc_from_struct(_own(entry, "published_parsed"))
            or utc_from_struct(_own(entry, "updated_parsed"))
            or utc_from_struct(_own(entry, "created_parsed")),
            pdf_url=next(
                (
                    as_str(lk.get("href"))
                    for lk in links
                    if lk.get("type") == "application/pdf" or lk.get("title") == "pdf"
                ),
                None,
            ),
            thumbnail=img.group(1) if img else None,
            hf_url=hf_link(pid) if on_hf and (pid := arxiv_id(*hrefs)) else None,
            upvotes=extra.get("upvotes"),
            ai_summary=extra.get("ai_summary"),
            announce_type=announce,
            extra_text=collapse(as_str(entry.get("arxiv_comment"))[:10_000]),
        ),
        source,
    )


def _own(entry: Mapping[str, Any], key: str) -> Any:
    """``entry[key]`` as stored, or None (not feedparser's fallback for a missing key)."""
    return dict.get(entry, key) if isinstance(entry, dict) else entry.get(key)


def _summary(entry: Mapping[str, Any]) -> str:
    """The longest of the entry's summary and content (RSS ``content:encoded`` is often fuller)."""
    summary = as_str(entry.get("summary"))
    for content in entry.get("content") or ():
        value = as_str(content.get("value")) if isinstance(content, Mapping) else ""
        if len(value) > len(summary):
            summary = value
    return summary


def _categories(entry: Mapping[str, Any]) -> tuple[str, ...]:
    terms = []
    for tag in entry.get("tags") or ():
        if not isinstance(tag, Mapping):
            continue
        term = collapse(as_str(tag.get("term")) or as_str(tag.get("label")))
        # arXiv API tags also carry MSC/ACM classes ("53D10, 53D15"): keep arXiv categories
        if term and (tag.get("scheme") != ARXIV_SCHEME or _ARXIV_CATEGORY.match(term)):
            terms.append(term)
    primary = entry.get("arxiv_primary_category")
    if isinstance(primary, Mapping) and as_str(primary.get("term")):
        terms.insert(0, as_str(primary.get("term")).strip())
    return tuple(dict.fromkeys(terms))


def _authors(entry: Mapping[str, Any]) -> tuple[str, ...]:
    names = [as_str(a.get("name")) for a in entry.get("authors") or () if isinstance(a, Mapping)]
    names = [n for n in names if n.strip()] or [as_str(entry.get("author"))]
    out: list[str] = []
    for name in names:
        # dc:creator in arXiv's announcement feeds is one comma-separated string
        out.extend(split_authors(clean(name)))
    return tuple(dict.fromkeys(out))

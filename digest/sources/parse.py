"""Feed bytes -> ``Paper`` values. The format is detected from the content, not the URL."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import feedparser

from ..errors import FeedError
from ..models import Paper
from .text import (
    arxiv_id,
    arxiv_links,
    clean,
    collapse,
    github_url,
    hf_link,
    latex_text,
    url_id,
    utc_from_iso,
    utc_from_struct,
)

log = logging.getLogger(__name__)

REPLACEMENT_TYPES = frozenset({"replace", "replace-cross"})


def parse(
    data: bytes, source: str, *, base_url: str = "", skip_replacements: bool = False
) -> list[Paper]:
    """Parse one feed's bytes into papers; ``source`` is the feed name kept in ``Paper.sources``.

    Hugging Face daily papers JSON, JSON Feed, and RSS/Atom (arXiv announcement feeds,
    arXiv API responses, any other feed) are recognised from the content. An empty feed
    gives ``[]``; unusable input raises a one-line ``FeedError`` naming the source.
    """
    head = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise FeedError(f"feed {source!r}: the response is empty; check the feed url")
    if head[:1] in (b"{", b"["):
        return _parse_json(data, source)
    if _looks_like_html_page(head):
        raise FeedError(
            f"feed {source!r}: got an HTML page, not a feed; check that the url points at "
            "the RSS/Atom/JSON feed itself"
        )
    return _parse_xml(data, source, base_url=base_url, skip_replacements=skip_replacements)


# --- detection -----------------------------------------------------------------------

_HTML_START = re.compile(
    rb"^(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<!doctype\s+html|^<html[\s>]",
    re.IGNORECASE | re.DOTALL,
)
_FEED_TAG = re.compile(rb"<(?:rss|feed|rdf:RDF|channel)[\s>]", re.IGNORECASE)


def _looks_like_html_page(head: bytes) -> bool:
    return bool(_HTML_START.match(head)) and not _FEED_TAG.search(head)


# --- JSON ----------------------------------------------------------------------------


def _parse_json(data: bytes, source: str) -> list[Paper]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeedError(f"feed {source!r}: looks like JSON but does not parse ({exc})") from exc
    if isinstance(doc, dict) and str(doc.get("version", "")).startswith("https://jsonfeed.org"):
        return _json_feed(doc, source)
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        raise FeedError(f"feed {source!r}: the server answered with an error: {doc['error'][:200]}")
    items: list[Any] | None = None
    if isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict) and isinstance(doc.get("paper"), dict):
        items = [doc]  # a single daily-papers entry
    elif isinstance(doc, dict) and _looks_like_hf_paper(doc):
        items = [doc]  # /api/papers/<id>
    if items is None or not all(isinstance(x, dict) for x in items):
        raise FeedError(
            f"feed {source!r}: JSON that is neither Hugging Face daily papers nor a JSON Feed; "
            "check the feed url"
        )
    papers = []
    for item in items:
        entry = item.get("paper") if isinstance(item.get("paper"), dict) else item
        if not _looks_like_hf_paper(entry):
            raise FeedError(
                f"feed {source!r}: JSON list items are not Hugging Face papers (no id/title); "
                "check the feed url"
            )
        papers.append(_hf_paper(item, entry, source))
    return papers


def _looks_like_hf_paper(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("id"), str) and "title" in entry


def _hf_paper(item: Mapping[str, Any], paper: Mapping[str, Any], source: str) -> Paper:
    raw_id = paper["id"]
    pid = arxiv_id(raw_id) or url_id(f"https://huggingface.co/papers/{raw_id}")
    # The top-level title is the clean one; the nested one keeps arXiv's line wraps.
    title = clean(_str(item.get("title")) or _str(paper.get("title")), is_html=False)
    abstract = clean(_str(paper.get("summary")) or _str(item.get("summary")), is_html=False)
    authors = tuple(
        name
        for a in paper.get("authors") or ()
        if isinstance(a, dict) and not a.get("hidden")
        for name in [collapse(latex_text(_str(a.get("name"))))]
        if name
    )
    abs_url, pdf_url = arxiv_links(pid) if not pid.startswith("url:") else ("", None)
    hf_url = hf_link(raw_id)
    github = _str(paper.get("githubRepo")) or None
    keywords = tuple(collapse(k) for k in paper.get("ai_keywords") or () if isinstance(k, str))
    return Paper(
        id=pid,
        title=title or raw_id,
        abstract=abstract,
        authors=authors,
        url=abs_url or hf_url,
        pdf_url=pdf_url,
        code_url=github,
        hf_url=hf_url,
        project_url=_str(paper.get("projectPage")) or None,
        thumbnail=_str(item.get("thumbnail")) or _str(item.get("mediaUrl")) or None,
        published=utc_from_iso(paper.get("publishedAt")) or utc_from_iso(item.get("publishedAt")),
        sources=(source,),
        upvotes=_int(paper.get("upvotes")),
        comments=_int(item.get("numComments")),
        github_stars=_int(paper.get("githubStars")),
        ai_summary=clean(_str(paper.get("ai_summary")), is_html=False) or None,
        ai_keywords=tuple(k for k in keywords if k),
    )


def _json_feed(doc: Mapping[str, Any], source: str) -> list[Paper]:
    items = doc.get("items")
    if not isinstance(items, list):
        raise FeedError(f"feed {source!r}: JSON Feed without an 'items' list; check the feed url")
    papers = []
    for item in items:
        if not isinstance(item, dict):
            continue
        link = _str(item.get("url")) or _str(item.get("external_url")) or _str(item.get("id"))
        title = clean(_str(item.get("title")))
        text = _str(item.get("content_text"))
        abstract = clean(text, is_html=False) if text else clean(_str(item.get("content_html")))
        summary = clean(_str(item.get("summary"))) or None
        if not title and not link:
            continue
        authors = tuple(
            collapse(latex_text(_str(a.get("name"))))
            for a in (item.get("authors") or ([item["author"]] if item.get("author") else []))
            if isinstance(a, dict) and _str(a.get("name"))
        )
        papers.append(
            _generic_paper(
                source=source,
                links=[link, _str(item.get("id")), _str(item.get("external_url"))],
                title=title,
                abstract=abstract,
                authors=authors,
                categories=tuple(collapse(t) for t in item.get("tags") or () if isinstance(t, str)),
                published=utc_from_iso(item.get("date_published"))
                or utc_from_iso(item.get("date_modified")),
                thumbnail=_str(item.get("image")) or None,
                ai_summary=summary,
            )
        )
    return papers


# --- RSS / Atom ------------------------------------------------------------------------


def _parse_xml(data: bytes, source: str, *, base_url: str, skip_replacements: bool) -> list[Paper]:
    try:
        doc = feedparser.parse(
            io.BytesIO(data),
            response_headers={"content-location": base_url} if base_url else None,
            sanitize_html=True,
            resolve_relative_uris=True,
        )
    except Exception as exc:  # feedparser is meant never to raise; be sure anyway
        raise FeedError(f"feed {source!r}: could not be read as RSS/Atom ({exc})") from exc
    entries = list(doc.get("entries") or [])
    feed = doc.get("feed") or {}
    if not doc.get("version") and not entries:
        why = doc.get("bozo_exception")
        raise FeedError(
            f"feed {source!r}: not an RSS, Atom or JSON feed"
            + (f" ({_one_line(why)})" if why else "")
            + "; check the feed url"
        )
    title = collapse(feed.get("title"))
    if title.lower().startswith("feed error for query"):
        detail = collapse(feed.get("description") or feed.get("subtitle") or title)
        raise FeedError(f"feed {source!r}: arXiv says: {detail[:300]}; fix the feed url")
    if doc.get("bozo"):
        log.info(
            "feed %s: ill-formed (%s); keeping the %d entries recovered",
            source,
            _one_line(doc.get("bozo_exception")),
            len(entries),
        )
    papers = []
    for entry in entries:
        paper = _entry_paper(entry, source, base_url=base_url)
        if paper is None:
            continue
        if skip_replacements and paper.announce_type in REPLACEMENT_TYPES:
            continue
        papers.append(paper)
    return papers


_ANNOUNCE = re.compile(
    r"^\s*arXiv:\S+\s+Announce Type:\s*(?P<type>[\w-]+)\s*(?:Abstract:\s*)?", re.IGNORECASE
)


def _entry_paper(entry: Mapping[str, Any], source: str, *, base_url: str) -> Paper | None:
    links = [lk for lk in entry.get("links") or () if isinstance(lk, Mapping)]
    link = _str(entry.get("link"))
    hrefs = [link, *(_str(lk.get("href")) for lk in links)]
    guid = _str(entry.get("id"))
    title = clean(_str(entry.get("title")))
    raw_summary = _summary(entry)
    announce = _str(entry.get("arxiv_announce_type")) or None
    m = _ANNOUNCE.match(html_free(raw_summary))
    if m:
        announce = announce or m.group("type").lower()
        abstract = clean(html_free(raw_summary)[m.end() :])
    else:
        abstract = clean(raw_summary)
    if not title and not any(h.startswith(("http://", "https://")) for h in hrefs):
        return None  # nothing to show or link to: not a paper
    pdf = next(
        (
            _str(lk.get("href"))
            for lk in links
            if lk.get("type") == "application/pdf" or lk.get("title") == "pdf"
        ),
        None,
    )
    comment = collapse(_str(entry.get("arxiv_comment")))
    categories = tuple(
        dict.fromkeys(
            collapse(_str(t.get("term")))
            for t in entry.get("tags") or ()
            if isinstance(t, Mapping) and _str(t.get("term"))
        )
    )
    primary = entry.get("arxiv_primary_category")
    if isinstance(primary, Mapping) and _str(primary.get("term")):
        term = _str(primary.get("term"))
        categories = (term, *(c for c in categories if c != term))
    return _generic_paper(
        source=source,
        links=[*hrefs, guid],
        title=title,
        abstract=abstract,
        authors=_authors(entry),
        categories=categories,
        published=utc_from_struct(entry.get("published_parsed"))
        or utc_from_struct(entry.get("updated_parsed"))
        or utc_from_struct(entry.get("created_parsed")),
        pdf_url=pdf,
        code_text=(comment, abstract),
        announce_type=announce,
        base_url=base_url,
    )


def _summary(entry: Mapping[str, Any]) -> str:
    summary = _str(entry.get("summary"))
    for content in entry.get("content") or ():
        value = _str(content.get("value")) if isinstance(content, Mapping) else ""
        if len(value) > len(summary):
            summary = value
    return summary


def html_free(value: str) -> str:
    """Tags stripped but text kept as is (used before looking for arXiv's prefix)."""
    return re.sub(r"<[^>]*>", " ", value) if "<" in value else value


_SPLIT_AUTHORS = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+|\s*;\s*")


def _authors(entry: Mapping[str, Any]) -> tuple[str, ...]:
    names: list[str] = []
    for a in entry.get("authors") or ():
        name = _str(a.get("name")) if isinstance(a, Mapping) else ""
        if name:
            names.append(name)
    if not names and _str(entry.get("author")):
        names.append(_str(entry.get("author")))
    out: list[str] = []
    for name in names:
        text = collapse(latex_text(clean(name)))
        # dc:creator in arXiv's announcement feeds is one comma-separated string
        parts = _SPLIT_AUTHORS.split(text) if ("," in text or " and " in text) else [text]
        out.extend(p.strip() for p in parts if p.strip())
    return tuple(dict.fromkeys(out))


# --- shared ----------------------------------------------------------------------------


def _generic_paper(
    *,
    source: str,
    links: Iterable[str],
    title: str,
    abstract: str,
    authors: tuple[str, ...],
    categories: tuple[str, ...],
    published: Any,
    pdf_url: str | None = None,
    code_text: Iterable[str] = (),
    thumbnail: str | None = None,
    ai_summary: str | None = None,
    announce_type: str | None = None,
    base_url: str = "",
) -> Paper:
    links = [lk for lk in links if lk]
    pid = arxiv_id(*links)
    main = next((lk for lk in links if lk.startswith(("http://", "https://"))), "")
    hf_url = next((lk for lk in links if "huggingface.co/papers/" in lk), None)
    if pid is not None:
        url, arxiv_pdf = arxiv_links(pid)
        pdf_url = arxiv_pdf
        if hf_url is not None:
            hf_url = hf_link(pid)
    else:
        url = main or (links[0] if links else "")
        key = url or title
        pid = url_id(key)
    return Paper(
        id=pid,
        title=title or url,
        abstract=abstract,
        authors=authors,
        url=url,
        pdf_url=pdf_url,
        code_url=github_url(*code_text),
        hf_url=hf_url,
        thumbnail=thumbnail,
        categories=categories,
        published=published,
        sources=(source,),
        ai_summary=ai_summary,
        announce_type=announce_type,
    )


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _one_line(value: Any) -> str:
    return collapse(str(value))[:200]

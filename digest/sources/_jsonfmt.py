"""JSON formats: Hugging Face daily papers (all three generations) and JSON Feed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..errors import FeedError
from ..latex import latex_to_text
from ..models import Paper
from ._common import (
    MAX_ENTRIES,
    Found,
    as_dict,
    as_int,
    as_list,
    as_str,
    labelled,
    make_paper,
    note,
)
from ._text import arxiv_id, clean, collapse, hf_link, url_id, utc_from_iso

# Arrays and objects in one document. Each costs 50 to 200 bytes once read: 25 MB of "[],"
# would take 500 MB. A day of Hugging Face papers holds a few thousand.
MAX_CONTAINERS = 1_000_000


def parse_json(data: bytes, source: str) -> list[Paper]:
    containers = data.count(b"[") + data.count(b"{")  # in strings too: an upper bound
    if containers > MAX_CONTAINERS:
        raise FeedError(
            f"feed {source!r}: JSON with {containers:,} arrays and objects "
            f"(at most {MAX_CONTAINERS:,}); not a feed we read safely"
        )
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except RecursionError as exc:
        raise FeedError(
            f"feed {source!r}: JSON nested too deep to read; check the feed url"
        ) from exc
    except ValueError as exc:  # bad UTF-8, bad JSON, an integer of more than 4,300 digits
        raise FeedError(
            f"feed {source!r}: looks like JSON but does not parse ({_short(exc)}); "
            "check the feed url"
        ) from exc
    if isinstance(doc, dict) and as_str(doc.get("version")).startswith("https://jsonfeed.org"):
        return json_feed(doc, source)
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        raise FeedError(
            f"feed {source!r}: the server answered with an error: {collapse(doc['error'])[:200]}; "
            "check the feed url and its options"
        )
    items: list[Any] | None = None
    if isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict) and (isinstance(doc.get("paper"), dict) or _is_hf_paper(doc)):
        items = [doc]  # one daily-papers entry, or /api/papers/<id>
    if items is None or not all(isinstance(x, dict) for x in items):
        raise FeedError(
            f"feed {source!r}: JSON that is neither Hugging Face daily papers nor a JSON Feed; "
            "check the feed url"
        )
    papers = []
    for item in _at_most(items):
        paper = item["paper"] if isinstance(item.get("paper"), dict) else item
        if not _is_hf_paper(paper):
            raise FeedError(
                f"feed {source!r}: JSON items are not Hugging Face papers (no id and title); "
                "check the feed url"
            )
        papers.append(hf_paper(item, paper, source))
    return papers


def _is_hf_paper(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("id"), str) and "title" in entry


def hf_paper(item: Mapping[str, Any], paper: Mapping[str, Any], source: str) -> Paper:
    """One daily-papers entry. ``item`` is the outer object (title, thumbnail, numComments),
    ``paper`` the inner one (id, authors, summary, upvotes, ai_summary, githubRepo, ...)."""
    raw_id = as_str(paper.get("id")).strip()
    if len(raw_id) > 200:  # ids are short; a long one would become a long link and key
        note("paper id longer than 200 characters cut")
        raw_id = raw_id[:200]
    pid = arxiv_id(raw_id)
    hf_url = hf_link(raw_id)
    # The outer title is the clean one; the inner one keeps arXiv's line wraps.
    title = clean(as_str(item.get("title")) or as_str(paper.get("title")), is_html=False)
    authors = tuple(
        name
        for a in as_list(paper.get("authors"))
        if isinstance(a, dict) and not a.get("hidden")
        for name in [_name(a.get("name"))]
        if name
    )
    keywords = tuple(
        k
        for k in (
            collapse(x[:1000]) for x in as_list(paper.get("ai_keywords")) if isinstance(x, str)
        )
        if k
    )
    found = Found(
        links=[f"arXiv:{pid}"] if pid else [hf_url],
        title=title or raw_id,
        abstract=clean(as_str(paper.get("summary")) or as_str(item.get("summary")), is_html=False),
        authors=authors,
        published=utc_from_iso(paper.get("publishedAt")) or utc_from_iso(item.get("publishedAt")),
        hf_url=hf_url,
        code_url=as_str(paper.get("githubRepo")).strip() or None,
        project_url=as_str(paper.get("projectPage")).strip() or None,
        thumbnail=as_str(item.get("thumbnail")) or as_str(item.get("mediaUrl")) or None,
        upvotes=as_int(paper.get("upvotes"), "upvotes"),
        comments=as_int(item.get("numComments"), "comments"),
        github_stars=as_int(paper.get("githubStars"), "githubStars"),
        ai_summary=clean(as_str(paper.get("ai_summary")), is_html=False) or None,
        ai_keywords=keywords,
    )
    result = make_paper(found, source)
    if pid is None:  # not an arXiv paper: keep it under its Hugging Face page
        result = _with_id(result, url_id(hf_url), hf_url)
    return result


def _with_id(p: Paper, pid: str, url: str) -> Paper:
    return replace(p, id=pid, url=url)


def json_feed(doc: Mapping[str, Any], source: str) -> list[Paper]:
    """JSON Feed (https://jsonfeed.org) version 1 and 1.1."""
    items = doc.get("items")
    if not isinstance(items, list):
        raise FeedError(f"feed {source!r}: JSON Feed without an 'items' list; check the feed url")
    papers = []
    for item in _at_most(items):
        if not isinstance(item, dict):
            continue
        link = as_str(item.get("url")) or as_str(item.get("external_url"))
        title = clean(as_str(item.get("title")))
        if not title and not link:
            continue
        text = as_str(item.get("content_text"))
        body = clean(text, is_html=False) if text else clean(as_str(item.get("content_html")))
        abstract, extra = labelled(body, text)
        raw_authors = as_list(item.get("authors")) or [as_dict(item.get("author"))]
        authors = tuple(
            name
            for a in raw_authors
            if isinstance(a, dict)
            for name in [_name(a.get("name"))]
            if name
        )
        found = Found(
            links=[link, as_str(item.get("id")), as_str(item.get("external_url"))],
            title=title,
            abstract=abstract,
            authors=authors or extra.get("authors", ()),
            categories=tuple(
                collapse(t[:1000]) for t in as_list(item.get("tags")) if isinstance(t, str)
            ),
            published=utc_from_iso(item.get("date_published"))
            or utc_from_iso(item.get("date_modified")),
            thumbnail=as_str(item.get("image")) or as_str(item.get("banner_image")) or None,
            upvotes=extra.get("upvotes"),
            ai_summary=extra.get("ai_summary") or clean(as_str(item.get("summary"))) or None,
        )
        papers.append(make_paper(found, source))
    return papers


def _at_most(items: list[Any]) -> list[Any]:
    if len(items) > MAX_ENTRIES:
        note(f"entries beyond the first {MAX_ENTRIES} left out")
        return items[:MAX_ENTRIES]
    return items


def _name(value: Any) -> str:
    """An author's name as plain text (a name of any length is cut later, with a note)."""
    return collapse(latex_to_text(as_str(value)[:10_000]))


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]

"""Sources: feeds fetched over HTTP (or read from local files) and normalized to ``Paper``
values, then stored.

``fetch_all`` fetches every configured feed into the store (a failing feed is reported and
the others go on); ``Fetcher`` does the HTTP (``_http``: timeouts, retries, conditional GET,
size cap, arXiv's spacing); ``parse`` turns bytes into papers, the format detected from the
content (``_jsonfmt``: Hugging Face and JSON Feed; ``_xmlfmt``: RSS and Atom through
feedparser, arXiv's feeds and API; ``_common`` and ``_text``: ids, links, dates, clean text);
``paper_json`` is the JSON shape ``digest fetch --json`` prints.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..models import Paper
from ._parse import parse
from ._text import arxiv_id, iso_utc, url_id

if TYPE_CHECKING:
    from ._http import Fetcher, FetchResult, hf_urls, is_arxiv_host, is_hf_daily
    from ._ingest import FetchSummary, fetch_all

# The fetching half (httpx, the store) is imported on first use: the process that parses
# feeds (``_isolate``) imports only the parsing half, and stays small.
_LAZY = {
    "Fetcher": "._http",
    "FetchResult": "._http",
    "hf_urls": "._http",
    "is_arxiv_host": "._http",
    "is_hf_daily": "._http",
    "FetchSummary": "._ingest",
    "fetch_all": "._ingest",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "FetchResult",
    "FetchSummary",
    "Fetcher",
    "arxiv_id",
    "fetch_all",
    "hf_urls",
    "is_arxiv_host",
    "is_hf_daily",
    "paper_json",
    "parse",
    "url_id",
]


def paper_json(p: Paper) -> dict[str, Any]:
    """One paper as plain JSON values (ISO 8601 UTC dates, lists, null when unknown)."""
    return {
        "id": p.id,
        "arxiv_id": p.arxiv_id,
        "title": p.title,
        "abstract": p.abstract,
        "authors": list(p.authors),
        "url": p.url,
        "pdf_url": p.pdf_url,
        "code_url": p.code_url,
        "hf_url": p.hf_url,
        "project_url": p.project_url,
        "thumbnail": p.thumbnail,
        "categories": list(p.categories),
        "published": iso_utc(p.published),
        "upvotes": p.upvotes,
        "comments": p.comments,
        "github_stars": p.github_stars,
        "ai_summary": p.ai_summary,
        "ai_keywords": list(p.ai_keywords),
        "announce_type": p.announce_type,
        "sources": list(p.sources),
    }

"""Ingestion: fetch feeds over HTTP (or read local files) and normalize them to ``Paper`` values.

``Fetcher`` does the HTTP, ``parse`` turns bytes into papers (format detected from the
content), ``paper_json`` is the JSON shape ``digest fetch --json`` prints.
"""

from __future__ import annotations

from typing import Any

from ..models import Paper
from .http import Fetcher, FetchResult, hf_urls, is_arxiv_host, is_hf_daily
from .parse import parse
from .text import arxiv_id, iso_utc, url_id

__all__ = [
    "FetchResult",
    "Fetcher",
    "arxiv_id",
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

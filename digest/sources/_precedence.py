"""Which feed's value a paper keeps, field by field, when several feeds carry it.

arXiv is the official source of a paper's text (title, abstract, authors, categories,
date); the Hugging Face papers API of its popularity and code (upvotes, comments, GitHub
stars, code link, project page, AI summary and keywords). Each owns those fields: its value
stands against any other feed's, even an empty one. For every other field the official
sources rank above the rest; between feeds of the same standing, each feed's ``trust`` in
``[[feeds]]`` decides (50 unless set).
The store applies it (``Precedence``); here a feed's config becomes its precedence.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..config import Feed
from ..store import Precedence

ARXIV_FIELDS = frozenset({"title", "abstract", "authors", "categories", "published"})
HF_FIELDS = frozenset(
    {
        "upvotes",
        "comments",
        "github_stars",
        "code_url",
        "project_url",
        "ai_summary",
        "ai_keywords",
    }
)


def official_for(feed: Feed) -> str:
    """ "arxiv", "huggingface" or "" (nobody's official source): as ``official`` says, or
    for "auto" from where the feed is: arxiv.org (rss., export., ...) or the API on
    huggingface.co. A file or any other host is nobody's unless its table says so."""
    if feed.official != "auto":
        return "" if feed.official == "none" else feed.official
    parts = urlsplit(feed.url.strip())
    if parts.scheme not in ("http", "https"):
        return ""
    host = (parts.hostname or "").lower()
    if host == "arxiv.org" or host.endswith(".arxiv.org"):
        return "arxiv"
    if host in ("huggingface.co", "www.huggingface.co") and parts.path.startswith("/api/"):
        return "huggingface"
    return ""


def precedence_of(feed: Feed) -> Precedence:
    kind = official_for(feed)
    owns = ARXIV_FIELDS if kind == "arxiv" else HF_FIELDS if kind == "huggingface" else frozenset()
    return Precedence(trust=feed.trust, owns=owns, official=bool(kind))

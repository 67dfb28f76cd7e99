"""Caps on what one subscriber file may hold.

A subscriber file is written by hand (or by the web app), and the ranking works on what it
holds for every paper of every edition: an ``interests`` text of 2.5 MB took 1 GB of memory.
Far above anything a person writes, these caps keep one file from costing a run more than
its share; what is cut is logged with the file's name.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from ..models import Keyword, Profile

log = logging.getLogger(__name__)

MAX_INTERESTS = 20_000  # characters: a page and a half of text
MAX_NAME = 200
MAX_TERMS = 200  # keywords, authors, categories, exclusions: each list
MAX_TERM = 200  # characters in one of them
MAX_LIKED = 5_000  # liked papers (ids), and entries kept from liked_file
MAX_LIKED_TITLE = 500
MAX_LIKED_ABSTRACT = 5_000


def _long(values: tuple[str, ...]) -> bool:
    return len(values) > MAX_TERMS or (bool(values) and max(map(len, values)) > MAX_TERM)


def within_limits(profile: Profile) -> Profile:
    """``profile``, cut to the caps above (and a log line saying what was cut)."""
    p = profile
    if (
        len(p.interests) <= MAX_INTERESTS
        and len(p.name) <= MAX_NAME
        and len(p.keywords) <= MAX_TERMS
        and not (p.keywords and max(len(k.term) for k in p.keywords) > MAX_TERM)
        and not _long(p.authors)
        and not _long(p.categories)
        and not _long(p.exclude)
        and len(p.liked) <= MAX_LIKED
        and len(p.liked_texts) <= MAX_LIKED
        and not any(
            len(t) > MAX_LIKED_TITLE or len(a) > MAX_LIKED_ABSTRACT for t, a in p.liked_texts
        )
    ):
        return p
    cuts: list[str] = []

    def text(value: str, limit: int, what: str) -> str:
        if len(value) <= limit:
            return value
        cuts.append(f"{what} cut to {limit:,} characters (from {len(value):,})")
        return value[:limit]

    def terms(values: tuple[str, ...], what: str) -> tuple[str, ...]:
        if len(values) > MAX_TERMS:
            cuts.append(f"{what}: the first {MAX_TERMS} of {len(values):,} kept")
            values = values[:MAX_TERMS]
        if values and max(map(len, values)) > MAX_TERM:
            cuts.append(f"{what}: entries cut to {MAX_TERM} characters")
            values = tuple(v[:MAX_TERM] for v in values)
        return values

    keywords = p.keywords
    if len(keywords) > MAX_TERMS:
        cuts.append(f"keywords: the first {MAX_TERMS} of {len(keywords):,} kept")
        keywords = keywords[:MAX_TERMS]
    if keywords and max(len(k.term) for k in keywords) > MAX_TERM:
        cuts.append(f"keywords: entries cut to {MAX_TERM} characters")
        keywords = tuple(Keyword(k.term[:MAX_TERM], k.weight) for k in keywords)
    liked = p.liked
    if len(liked) > MAX_LIKED:
        cuts.append(f"liked: the first {MAX_LIKED:,} of {len(liked):,} kept")
        liked = liked[:MAX_LIKED]
    liked_texts = p.liked_texts
    if len(liked_texts) > MAX_LIKED:
        cuts.append(f"liked_file: the first {MAX_LIKED:,} of {len(liked_texts):,} entries kept")
        liked_texts = liked_texts[:MAX_LIKED]
    if any(len(t) > MAX_LIKED_TITLE or len(a) > MAX_LIKED_ABSTRACT for t, a in liked_texts):
        cuts.append("liked_file: long titles or abstracts cut")
        liked_texts = tuple((t[:MAX_LIKED_TITLE], a[:MAX_LIKED_ABSTRACT]) for t, a in liked_texts)
    cut = replace(
        p,
        interests=text(p.interests, MAX_INTERESTS, "interests"),
        name=text(p.name, MAX_NAME, "name"),
        keywords=keywords,
        authors=terms(p.authors, "authors"),
        categories=terms(p.categories, "categories"),
        exclude=terms(p.exclude, "exclude"),
        liked=liked,
        liked_texts=liked_texts,
    )
    log.warning("%s: %s", p.path or p.email, "; ".join(cuts))
    return cut

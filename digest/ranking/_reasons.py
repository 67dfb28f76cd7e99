"""The reasons a pick carries, short and true: what it matches, a followed author, the paper
voted on behind it, a category, its upvotes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ._corpus import Corpus
from ._query import REASON_TERMS, Query, matched_terms

LIKED_REASON_Z = 1.5  # standard deviations above average to say "close to a paper you liked"
SEMANTIC_REASON_Z = 1.0
_MATCHES_SIZE = 30_000  # "matches ..." reasons kept per edition (about 150 bytes each)
_UNKNOWN = "\x00"


class Facts(NamedTuple):
    """A query's signals at its picks, as Python numbers (for the reasons)."""

    liked: list[float]
    relevance: list[float]
    semantic: list[float]
    liked_best: list[int]
    votes: list[str]  # the reason naming the voted paper behind the pick, or ""


def reasons(
    corpus: Corpus, q: Query, facts: Facts, j: int, d: int, found: Sequence[int]
) -> tuple[str, ...]:
    """The reasons for paper ``d``, the pick of query ``q`` at ``j`` in ``facts``."""
    at = q.text * len(corpus.papers) + d
    matches = corpus.matches.get(at, _UNKNOWN)
    if matches is _UNKNOWN:  # the same for every query of the same text
        matched = matched_terms(corpus.lexical, q, d, found, REASON_TERMS)
        matches = "matches '" + "', '".join(matched) + "'" if matched else ""
        if len(corpus.matches) >= _MATCHES_SIZE:
            corpus.matches.clear()
        corpus.matches[at] = matches
    out: list[str] = [matches] if matches else []
    if q.authors:
        names = corpus.author_names
        for key in q.authors:
            printed = names.get((key, d))
            if printed:
                reason = f"by {printed} (followed)"
                if reason not in out:  # followed as "X. Wu" and as "Xiaoqian Wu"
                    out.append(reason)
    if len(q.liked):
        liked_z = facts.liked[j]
        if liked_z >= LIKED_REASON_Z and liked_z > facts.relevance[j]:
            out.append(f"close to a paper you liked: {q.liked_titles[facts.liked_best[j]]}")
    if facts.votes[j]:
        out.append(facts.votes[j])
    if not out and facts.semantic[j] >= SEMANTIC_REASON_Z:
        out.append("related to your interests")
    if q.categories:
        mine = corpus.paper_categories[d]
        for c, written in q.categories.items():
            if c in mine:
                out.append(f"in {written}")
                break
    upvotes = corpus.upvotes[d]
    if upvotes:
        out.append(upvotes)
    return tuple(out)

"""The relevance floor: a pick that is not relevant in absolute terms is not sent just to fill
``max_papers``, so a quiet day sends fewer papers.

What is measured is the cosine of a pick to the subscriber's final interests vector: the
edition-centered embedding of their interests, moved by their votes (``_votes``) and by the
feedback step, as the ranking scores with it. ``[ranking] relevance_floor`` was calibrated on
a week of arXiv editions (bench/feedback_eval.py --floor): the cosine under which a pick is
relevant half as often as the average pick of a top 10. What the subscriber asks for by name
always clears it: a followed author's paper, a paper in one of their categories, or one that
matches one of their keywords.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from ._corpus import Corpus
from ._query import Query


def floor_cosines(
    corpus: Corpus, floor_vec: np.ndarray, has_vec: np.ndarray, picks: list[list[int]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, paper, cosine) of every pick: the paper's cosine to the query's final
    interests vector ``floor_vec`` (Q, d); +inf for a query without one (``has_vec``)."""
    counts = np.fromiter(map(len, picks), dtype=np.int64, count=len(picks))
    pq = np.repeat(np.arange(len(picks)), counts)
    pd = np.fromiter(itertools.chain.from_iterable(picks), dtype=np.int64, count=len(pq))
    cosine = np.einsum("pd,pd->p", floor_vec[pq], corpus.vectors[pd])
    cosine[~has_vec[pq]] = np.inf
    return pq, pd, cosine


def above_floor(
    corpus: Corpus,
    queries: Sequence[Query],
    floor_vec: np.ndarray,
    has_vec: np.ndarray,
    picks: list[list[int]],
    floor: float,
) -> list[list[int]]:
    """``picks`` without those under ``floor``, in order (each row: one query's picks)."""
    pq, pd, cosine = floor_cosines(corpus, floor_vec, has_vec, picks)
    low = cosine < np.float32(floor)
    if not low.any():
        return picks
    drop: set[tuple[int, int]] = set()
    lexical = corpus.lexical
    for qi, d in zip(pq[low].tolist(), pd[low].tolist(), strict=True):
        q = queries[qi]
        if q.authors and d in corpus.author_rows(q.authors):
            continue
        if q.categories and not corpus.paper_categories[d].isdisjoint(q.categories):
            continue
        if any(lexical.matches(key, d) for key, _, _ in q.keywords):
            continue
        drop.add((qi, d))
    if not drop:
        return picks
    return [[d for d in row if (qi, d) not in drop] for qi, row in enumerate(picks)]

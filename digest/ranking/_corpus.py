"""One edition's papers, indexed and embedded once (``Ranker.prepare``) and shared by every
subscriber's ranking: the BM25 index, the embeddings, each paper's boosts, and rows by
category, author and title."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..models import Paper
from ._lexical import LexicalIndex
from ._query import title_key

POPULARITY_CAP = 500  # upvotes at which the popularity boost is full
GRAM_BYTES = 16 << 20  # the papers' pairwise similarities, kept for editions up to 2,048
_ROWS_CACHE_SIZE = 4096  # categories' and followed authors' rows kept per edition


@dataclass
class Corpus:
    """One edition's papers, indexed and embedded: made by ``Ranker.prepare``."""

    papers: tuple[Paper, ...]
    now: datetime
    rows: dict[str, int]
    lexical: LexicalIndex
    vectors: np.ndarray  # (n, d) unit length, centered on the edition's mean
    mean: np.ndarray  # (d,) the edition's mean embedding (raw)
    id_order: np.ndarray  # (n,) rank of each id in sorted order: the tie-break
    boosts: np.ndarray  # (n,) popularity + freshness, already weighted
    categories: dict[str, np.ndarray]  # canonical category -> rows
    paper_categories: list[frozenset[str]]  # canonical categories of each paper
    authors: dict[str, list[tuple[int, str]]]  # author key -> (row, name as printed)
    title_groups: np.ndarray  # (n,) papers with the same normalized title share a number
    title_index: dict[str, int]  # normalized title -> its group number
    author_names: dict[tuple[str, int], str] = field(default_factory=dict)
    # (author key, row) -> the first of the paper's names with that key, as printed
    _category_rows: dict[frozenset[str], np.ndarray] = field(default_factory=dict)
    _author_rows: dict[tuple[str, ...], np.ndarray] = field(default_factory=dict)
    _gram: np.ndarray | None = None
    # query text number x papers + row -> the "matches ..." reason, "" for none
    matches: dict[int, str] = field(default_factory=dict)
    upvotes: list[str] = field(default_factory=list)  # each paper's upvotes reason, or ""
    vote_frame: Any = None  # the papers voted on, in this edition's frame (``_votes.Frame``)
    _neighbours: dict[int, np.ndarray] = field(default_factory=dict)

    def neighbours(self, k: int) -> np.ndarray:
        """(n, k') rows of each paper's k' = min(k, n - 1) most similar other papers
        (cosine of the centered embeddings, papers with the same title 1; ties by row),
        made once per edition: what the relevance is smoothed over."""
        found = self._neighbours.get(k)
        if found is None:
            found = self._neighbours[k] = nearest(self.vectors, k, self.gram())
        return found

    def gram(self, limit: int = GRAM_BYTES) -> np.ndarray | None:
        """Cosine of every pair of papers, exactly 1 for papers with the same title (None
        for editions whose matrix would take more than ``limit`` bytes)."""
        n = len(self.papers)
        if n * n * 4 > limit:
            return None
        if self._gram is None:
            gram = self.vectors @ self.vectors.T
            gram[self.title_groups[:, None] == self.title_groups[None, :]] = 1.0
            self._gram = gram
        return self._gram

    def category_rows(self, codes: Iterable[str]) -> np.ndarray:
        """The sorted rows of papers in any of the canonical categories ``codes``."""
        key = frozenset(codes)  # the rows of a set of codes, in whatever order written
        rows = self._category_rows.get(key)
        if rows is None:
            if len(self._category_rows) >= _ROWS_CACHE_SIZE:
                self._category_rows.clear()  # bounded: a newsletter has many subscribers
            rows = self._category_rows[key] = _rows_in(self, key)
        return rows

    def author_rows(self, keys: Iterable[str]) -> np.ndarray:
        """The sorted rows (int64) of papers by any of the authors ``keys``; empty for
        authors with no paper in the edition."""
        key = tuple(keys)
        rows = self._author_rows.get(key)
        if rows is None:
            found = {d for a in key for d, _ in self.authors.get(a, ())}
            rows = np.array(sorted(found), dtype=np.int64)
            if not found:
                return rows  # most followed authors are not in a given edition: not kept
            if len(self._author_rows) >= _ROWS_CACHE_SIZE:
                self._author_rows.clear()
            self._author_rows[key] = rows
        return rows

    def __len__(self) -> int:
        return len(self.papers)


def popularity(upvotes: int) -> float:
    """0..1, log-scaled: 1 upvote ~0.11, 20 ~0.49, 500 and more 1."""
    return min(1.0, math.log1p(max(upvotes, 0)) / math.log1p(POPULARITY_CAP))


def freshness(when: datetime, now: datetime, half_life_days: float) -> float:
    """1 for a paper published now, halving every ``half_life_days``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    age = max((now - when).total_seconds() / 86400.0, 0.0)
    return float(0.5 ** (age / half_life_days))


def title_groups(papers: Sequence[Paper]) -> tuple[np.ndarray, dict[str, int]]:
    index: dict[str, int] = {}
    out = np.empty(len(papers), dtype=np.int64)
    for i, p in enumerate(papers):
        key = title_key(p.title) or f"\x00{i}"
        out[i] = index.setdefault(key, len(index))
    return out, index


def nearest(vectors: np.ndarray, k: int, gram: np.ndarray | None) -> np.ndarray:
    """(n, k') the k' = min(k, n - 1) rows most similar to each row, itself left out,
    best first (ties by row); read from the Gram matrix ``gram`` when given, else computed
    in chunks of rows (about 4 MB of similarities at a time)."""
    n = len(vectors)
    k = min(k, n - 1)
    out = np.zeros((n, max(k, 0)), dtype=np.int64)
    if k <= 0:
        return out
    step = max(1, (4 << 20) // (4 * n))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        sims = gram[lo:hi].copy() if gram is not None else vectors[lo:hi] @ vectors.T
        sims[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        out[lo:hi] = np.take_along_axis(part, order, axis=1)
    return out


def _rows_in(corpus: Corpus, codes: Iterable[str]) -> np.ndarray:
    parts = [corpus.categories[c] for c in codes if c in corpus.categories]
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate(parts))

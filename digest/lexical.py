"""BM25 over stemmed title + abstract, with phrase matching, scored in batches with numpy."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import text

K1 = 1.2
B = 0.75
TITLE_REPEAT = 2  # the title counts twice: a cheap field weighting


@dataclass
class LexicalIndex:
    """Postings per stem (doc rows and BM25 term-frequency parts), built once per edition."""

    n_docs: int
    vocab: dict[str, int]
    idf: np.ndarray  # (V,) float32
    indptr: np.ndarray  # (V + 1,) int64
    post_docs: np.ndarray  # (nnz,) int32, sorted by term then doc
    post_tf: np.ndarray  # (nnz,) float32, BM25 saturated term frequency
    doc_text: list[str]  # " stem stem ... " per doc, for phrase matching
    doc_terms: list[frozenset[str]]  # the stems of each doc, for reasons
    doc_len: np.ndarray  # (n,) float32
    idf_of: dict[str, float]  # stem -> idf, for reasons
    terms: list[str]  # term id -> stem
    avg_len: float
    _phrases: dict[str, tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict)
    _phrase_docs: dict[str, frozenset[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, docs: Sequence[tuple[str, str]]) -> LexicalIndex:
        """Index (title, abstract) pairs."""
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[int] = []
        doc_text: list[str] = []
        doc_terms: list[frozenset[str]] = []
        lengths = np.zeros(len(docs), dtype=np.float32)
        for i, (title, abstract) in enumerate(docs):
            t_stems = text.stems(title)
            a_stems = text.stems(abstract)
            doc_text.append(" " + " ".join(t_stems) + " | " + " ".join(a_stems) + " ")
            tally = Counter(a_stems)
            for s in t_stems:
                tally[s] += TITLE_REPEAT
            lengths[i] = len(a_stems) + TITLE_REPEAT * len(t_stems)
            doc_terms.append(frozenset(tally))
            for s, count in tally.items():
                rows.append(i)
                cols.append(vocab.setdefault(s, len(vocab)))
                tfs.append(count)
        n = len(docs)
        avg = float(lengths.mean()) if n else 1.0
        order = np.lexsort((np.asarray(rows), np.asarray(cols)))
        r = np.asarray(rows, dtype=np.int32)[order]
        c = np.asarray(cols, dtype=np.int64)[order]
        tf = np.asarray(tfs, dtype=np.float32)[order]
        counts = np.bincount(c, minlength=len(vocab))
        indptr = np.zeros(len(vocab) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(counts)
        df = counts.astype(np.float32)
        norm = K1 * (1 - B + B * lengths[r] / max(avg, 1e-9))
        post_tf = (tf * (K1 + 1) / (tf + norm)).astype(np.float32)
        idf = _idf(df, n)
        return cls(
            n_docs=n,
            vocab=vocab,
            idf=idf,
            idf_of=dict(zip(vocab, idf.tolist(), strict=True)),
            terms=list(vocab),
            indptr=indptr,
            post_docs=r,
            post_tf=post_tf,
            doc_text=doc_text,
            doc_terms=doc_terms,
            doc_len=lengths,
            avg_len=avg,
        )

    def df(self, stem: str) -> int:
        t = self.vocab.get(stem)
        return 0 if t is None else int(self.indptr[t + 1] - self.indptr[t])

    def docs_with(self, stem: str) -> np.ndarray:
        t = self.vocab.get(stem)
        if t is None:
            return np.zeros(0, dtype=np.int32)
        return self.post_docs[self.indptr[t] : self.indptr[t + 1]]

    def phrase(self, key: str) -> tuple[np.ndarray, np.ndarray, float]:
        """(doc rows, BM25 tf parts, idf) for a phrase key (stems joined by spaces).

        A phrase matches where its stems occur next to each other in the title or the
        abstract. A one-word key is the plain term.
        """
        hit = self._phrases.get(key)
        if hit is not None:
            return hit
        parts = key.split()
        if not parts:
            hit = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32), 0.0)
        elif len(parts) == 1 and parts[0] in self.vocab:
            t = self.vocab[parts[0]]
            lo, hi = self.indptr[t], self.indptr[t + 1]
            hit = (self.post_docs[lo:hi], self.post_tf[lo:hi], float(self.idf[t]))
        else:
            candidates = self.docs_with(parts[0])
            for p in parts[1:]:
                candidates = np.intersect1d(candidates, self.docs_with(p), assume_unique=True)
            needle = f" {key} "
            docs, counts = [], []
            for d in candidates.tolist():
                count = self.doc_text[d].count(needle)
                if count:
                    docs.append(d)
                    counts.append(count)
            rows = np.asarray(docs, dtype=np.int32)
            tf = np.asarray(counts, dtype=np.float32)
            norm = K1 * (1 - B + B * self.doc_len[rows] / max(self.avg_len, 1e-9))
            idf = float(_idf(np.asarray([len(docs)], dtype=np.float32), self.n_docs)[0])
            hit = (rows, (tf * (K1 + 1) / (tf + norm)).astype(np.float32), idf)
        self._phrases[key] = hit
        return hit

    def matches(self, key: str, doc: int) -> bool:
        """Does the phrase (or term) ``key`` occur in doc ``doc``?"""
        if " " not in key:
            return key in self.doc_terms[doc]
        docs = self._phrase_docs.get(key)
        if docs is None:
            docs = self._phrase_docs[key] = frozenset(self.phrase(key)[0].tolist())
        return doc in docs

    def _expand(
        self, queries: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every posting of every query term: (query, doc, term, BM25 contribution)."""
        qs = np.concatenate(
            [np.full(len(t), i, dtype=np.int64) for i, (t, _) in enumerate(queries)]
        )
        terms = np.concatenate([t for t, _ in queries]).astype(np.int64)
        weights = np.concatenate([w for _, w in queries]).astype(np.float32)
        starts = self.indptr[terms]
        lens = self.indptr[terms + 1] - starts
        total = int(lens.sum())
        # Positions of every posting of every query term, without a Python loop.
        shift = np.repeat(starts - (np.cumsum(lens) - lens), lens)
        pos = shift + np.arange(total, dtype=np.int64)
        vals = self.post_tf[pos] * np.repeat(weights, lens)
        return np.repeat(qs, lens), self.post_docs[pos], np.repeat(terms, lens), vals

    def scores(self, queries: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """BM25 of every doc for each query (term ids, weights times idf): shape (Q, n)."""
        n = self.n_docs
        if not queries or n == 0:
            return np.zeros((len(queries), n), dtype=np.float32)
        qs, docs, _, vals = self._expand(queries)
        out = np.bincount(qs * n + docs, weights=vals, minlength=len(queries) * n)
        return out.reshape(len(queries), n).astype(np.float32)

    def hits(
        self, queries: Sequence[tuple[np.ndarray, np.ndarray]], picked: np.ndarray, most: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The query terms found in picked (query, doc) pairs, largest contribution first.

        ``picked`` is a (Q, n) boolean mask. Returns ``slot`` (Q * n,) and ``table``
        (pairs, most): row ``slot[q * n + d]`` of ``table`` holds the term ids for that
        pair, padded with -1; ``slot`` is -1 for pairs without any.
        """
        n = self.n_docs
        slot = np.full(picked.size, -1, dtype=np.int64)
        if not queries or n == 0:
            return slot, np.zeros((0, most), dtype=np.int64)
        qs, docs, terms, vals = self._expand(queries)
        keys = qs * n + docs
        keep = picked.ravel()[keys]
        keys, terms, vals = keys[keep], terms[keep], vals[keep]
        order = np.lexsort((terms, -vals, keys))
        keys, terms = keys[order], terms[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        group = np.cumsum(first) - 1
        rank = np.arange(len(keys)) - np.flatnonzero(first)[group]
        table = np.full((int(first.sum()), most), -1, dtype=np.int64)
        top = rank < most
        table[group[top], rank[top]] = terms[top]
        slot[keys[first]] = np.arange(len(table))
        return slot, table


def _idf(df: np.ndarray, n: int) -> np.ndarray:
    return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)


def idf_of(df: int, n: int) -> float:
    return math.log1p((n - df + 0.5) / (df + 0.5))

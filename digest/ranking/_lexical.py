"""BM25 over stemmed title + abstract, with phrase matching, scored in batches with numpy."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import _text as text

_PHRASES_KEPT = 16_384  # phrases (quoted keywords, exclusions) kept per edition
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
        cols: list[int] = []
        tfs: list[int] = []
        sizes: list[int] = []
        lens: list[int] = []
        doc_text: list[str] = []
        doc_terms: list[frozenset[str]] = []
        for title, abstract in docs:
            t_stems = text.stems(title)
            a_stems = text.stems(abstract)
            doc_text.append(" " + " ".join(t_stems) + " | " + " ".join(a_stems) + " ")
            tally = Counter(a_stems)
            for s in t_stems:
                tally[s] += TITLE_REPEAT
            lens.append(len(a_stems) + TITLE_REPEAT * len(t_stems))
            doc_terms.append(frozenset(tally))
            cols.extend([vocab.setdefault(s, len(vocab)) for s in tally])
            tfs.extend(tally.values())
            sizes.append(len(tally))
        n = len(docs)
        lengths = np.asarray(lens, dtype=np.float32).reshape(n)
        rows = np.repeat(np.arange(n, dtype=np.int64), sizes)
        avg = float(lengths.mean()) if n else 1.0
        order = np.lexsort((rows, np.asarray(cols, dtype=np.int64)))
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
        if len(self._phrases) >= _PHRASES_KEPT:  # bounded: one per distinct phrase otherwise
            self._phrases.clear()
            self._phrase_docs.clear()
        self._phrases[key] = hit
        return hit

    def matches(self, key: str, doc: int) -> bool:
        """Does the phrase (or term) ``key`` occur in doc ``doc``? (As ``phrase`` finds
        it: the stems next to each other in the title or the abstract.)"""
        if " " not in key:
            return key in self.doc_terms[doc]
        docs = self._phrase_docs.get(key)
        if docs is None:
            found = self._phrases.get(key)
            if found is None:  # a phrase not scored: look in this paper only
                return f" {key} " in self.doc_text[doc]
            if len(self._phrase_docs) >= _PHRASES_KEPT:
                self._phrase_docs.clear()
            docs = self._phrase_docs[key] = frozenset(found[0].tolist())
        return doc in docs

    def postings(self, qs: np.ndarray, terms: np.ndarray, weights: np.ndarray) -> Postings:
        """Every posting of every query term, for many queries at once: ``qs``, ``terms``
        and ``weights`` (weight times idf, float32) list each query's terms, query by query."""
        starts = self.indptr[terms]
        lens = self.indptr[terms + 1] - starts
        ends = np.cumsum(lens)
        total = int(ends[-1]) if len(ends) else 0
        # Positions of every posting of every query term, without a Python loop.
        pos = np.repeat(starts - (ends - lens), lens)
        pos += np.arange(total, dtype=np.int64)
        vals = self.post_tf[pos]
        vals *= np.repeat(weights, lens)
        keys = np.repeat(qs * self.n_docs, lens)
        keys += self.post_docs[pos]
        return Postings(keys, vals, ends, terms)

    def scores(self, postings: Postings, n_queries: int) -> np.ndarray:
        """BM25 of every doc for each query: shape (Q, n), float32."""
        n = self.n_docs
        if n_queries == 0 or n == 0:
            return np.zeros((n_queries, n), dtype=np.float32)
        out = np.bincount(postings.keys, weights=postings.vals, minlength=n_queries * n)
        return out.reshape(n_queries, n).astype(np.float32)

    def hits(self, postings: Postings, picks: np.ndarray, most: int) -> tuple[list[int], list[int]]:
        """The query terms found in picked (query, doc) pairs, largest contribution first
        (ties by term id), at most ``most`` of them.

        ``picks`` holds the pairs as ``query * n + doc``, each once. Returns the term ids
        of all pairs one after the other and where each pair's ends in that list."""
        keys = postings.keys
        if not len(picks) or not len(keys):
            return [], [0] * len(picks)
        picked = np.zeros(int(keys.max()) + 1, dtype=bool)
        picked[picks[picks < len(picked)]] = True
        at = np.flatnonzero(picked[keys])
        by_key = np.argsort(picks)
        pair = by_key[np.searchsorted(picks[by_key], keys[at])]
        terms = postings.terms[np.searchsorted(postings.ends, at, side="right")]
        order = np.lexsort((terms, -postings.vals[at], pair))
        pair, terms = pair[order], terms[order]
        counts = np.bincount(pair, minlength=len(picks))
        first = np.cumsum(counts) - counts
        rank = np.arange(len(pair)) - first[pair]
        top = rank < most
        return terms[top].tolist(), np.cumsum(np.minimum(counts, most)).tolist()


class Postings(NamedTuple):
    """Postings of a batch of queries' terms (made by ``LexicalIndex.postings``)."""

    keys: np.ndarray  # (m,) query * n_docs + doc, query by query, term by term
    vals: np.ndarray  # (m,) float32 BM25 contribution
    ends: np.ndarray  # (terms,) where each query term's postings end
    terms: np.ndarray  # (terms,) term ids


def _idf(df: np.ndarray, n: int) -> np.ndarray:
    return np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)


def idf_of(df: int, n: int) -> float:
    return math.log1p((n - df + 0.5) / (df + 0.5))

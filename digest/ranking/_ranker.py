"""Pure ranking: papers + profile + now -> best papers first, each with short true reasons.

Papers are indexed and embedded once per edition (``Ranker.prepare`` -> ``Corpus``), profiles
are encoded once per run (cached in the ``Ranker``; the parts many profiles share, such as a
common interests text or keyword, are made once), and many profiles are scored together with
a few numpy operations (``Ranker.rank_many``). The diversity step reads the papers' pairwise
similarities from the edition's Gram matrix and redoes, with the candidates' own products,
the few rows where rounding could change a choice; the "matches ..." reason of a paper is
made once per query text. Every pick, score and reason is the same as scoring each batch
the long way: tests/test_rank_select.py and ``bench/rank_quality.py --fingerprint`` check it.

The score of a paper for a profile is a weighted mean of standardized relevance signals
(BM25 over stemmed title + abstract with phrases, embedding similarity to the interests,
similarity to liked papers), each one expressed in standard deviations above the edition's
average, plus bounded boosts (followed authors, categories, popularity, freshness). The
interests' part is mixed with the same part of each paper's nearest papers of the edition
(``smoothing``): a paper among relevant papers is more likely relevant than a lone match.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np

from ..config import Ranking
from ..models import Paper, Profile, Scored
from . import _embed as embed
from . import _text as text
from . import _votes as vote_model
from ._corpus import GRAM_BYTES, Corpus, freshness, popularity, title_groups
from ._floor import above_floor
from ._lexical import LexicalIndex, Postings
from ._query import (
    REASON_TERMS,
    Query,
    build_query,
    liked_texts,
    paper_text,
    profile_key,
    profile_parts,
)
from ._reasons import Facts, reasons
from ._select import select

BATCH = 128  # profiles scored together: as fast as 512, a quarter of the memory
_CACHE_SIZE = 1024  # profiles encoded as queries, kept for the next ranking of them
_PAPER_CACHE_SIZE = 20_000  # papers' embeddings kept between editions (about 1 KB each)


@dataclass
class _Signals:
    """The standardized signals of one batch of queries: each (Q, n)."""

    lexical: np.ndarray
    semantic: np.ndarray
    liked: np.ndarray
    liked_best: np.ndarray  # (Q, n) index of the closest liked paper
    liked_cos: np.ndarray  # (Q, n) cosine to it
    relevance: np.ndarray  # (Q, n) the interests' part of the score
    postings: Postings  # the postings of the queries' terms (for the reasons)
    floor_vec: np.ndarray  # (Q, d) the final interests vector (for the relevance floor)
    has_vec: np.ndarray  # (Q,) rows with an interests vector
    vote_z: np.ndarray | None  # (Q, n) the standardized vote score (0 for rows without)


class Ranker:
    """Ranks papers for profiles with the weights of ``[ranking]`` in config.toml."""

    def __init__(self, weights: Ranking | None = None, *, gram_bytes: int = GRAM_BYTES) -> None:
        self.weights = weights or Ranking()
        self.gram_bytes = gram_bytes  # the largest Gram matrix kept for the diversity step
        self._queries: OrderedDict[tuple[object, ...], Query] = OrderedDict()
        # paper text -> (token sum, token count); liked papers' texts are looked up here
        self._papers: dict[str, tuple[np.ndarray, int]] = {}
        self._parts = embed.PartCache(known=self._papers)
        self._last: tuple[tuple[tuple[Paper, ...], datetime], Corpus] | None = None
        self._pool = vote_model.Pool(self._embed_papers)  # papers voted on, embedded once
        self._votes = vote_model.settings_of(self.weights)

    # ---- editions -------------------------------------------------------------------

    def prepare(self, papers: Sequence[Paper], now: datetime) -> Corpus:
        """Index and embed one edition's papers (once per edition; the same papers at the
        same time, a weekly edition's after a daily one's, give the same corpus again)."""
        key = (tuple(papers), now)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        corpus = self._prepare(key[0], now)
        self._last = (key, corpus)
        return corpus

    def _prepare(self, papers: Sequence[Paper], now: datetime) -> Corpus:
        unique: dict[str, Paper] = {}
        for p in papers:
            unique.setdefault(p.id, p)
        plist = tuple(unique.values())
        lexical = LexicalIndex.build([(p.title, p.abstract) for p in plist])
        raw = self._embed_papers([paper_text(p) for p in plist])
        mean = raw.mean(axis=0) if len(plist) else np.zeros(raw.shape[1], dtype=np.float32)
        vectors = embed.unit(embed.unit(raw) - embed.unit(mean[None, :]))
        ids = [p.id for p in plist]
        groups, title_index = title_groups(plist)
        order = np.empty(len(ids), dtype=np.int64)
        order[np.argsort(np.asarray(ids, dtype=object), kind="stable")] = np.arange(len(ids))
        cats: dict[str, list[int]] = {}
        authors: dict[str, list[tuple[int, str]]] = {}
        names: dict[tuple[str, int], str] = {}
        for i, p in enumerate(plist):
            for c in {text.canonical_category(c) for c in p.categories}:
                cats.setdefault(c, []).append(i)
            for a in p.authors:
                for key in text.author_keys(a):
                    authors.setdefault(key, []).append((i, a))
                    names.setdefault((key, i), a)
        return Corpus(
            papers=plist,
            now=now,
            rows={pid: i for i, pid in enumerate(ids)},
            lexical=lexical,
            vectors=vectors,
            mean=mean.astype(np.float32),
            id_order=order,
            boosts=self._boosts(plist, now),
            categories={c: np.asarray(r, dtype=np.int64) for c, r in cats.items()},
            paper_categories=[
                frozenset(text.canonical_category(c) for c in p.categories) for p in plist
            ],
            authors=authors,
            title_groups=groups,
            title_index=title_index,
            author_names=names,
            upvotes=[
                f"{p.upvotes} upvote{'s' if p.upvotes != 1 else ''}" if p.upvotes else ""
                for p in plist
            ],
        )

    def _embed_papers(self, texts: list[str]) -> np.ndarray:
        """Raw embeddings of papers' texts, each paper tokenized once per ``Ranker``: the
        daily and the weekly edition of a run share most of their papers. Their token
        sums are kept: a liked paper's text is a paper's text."""
        cache = self._papers
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            if len(cache) + len(todo) > _PAPER_CACHE_SIZE:
                cache.clear()  # and every text of this call made again (it reads them all)
                todo = list(dict.fromkeys(texts))
            sums, lens = embed.token_sums(todo)
            cache.update(zip(todo, zip(sums, lens.tolist(), strict=True), strict=True))
        if not texts:
            return embed.embed([])
        found = [cache[t] for t in texts]
        sums = np.stack([v for v, _ in found])
        lens = np.fromiter((c for _, c in found), dtype=np.int64, count=len(found))
        return sums / np.maximum(lens, 1)[:, None]  # as embed.embed divides

    def _boosts(self, papers: Sequence[Paper], now: datetime) -> np.ndarray:
        w = self.weights
        out = np.zeros(len(papers), dtype=np.float32)
        for i, p in enumerate(papers):
            if p.upvotes:
                out[i] += w.popularity_weight * popularity(p.upvotes)
            when = p.published or p.first_seen
            if when is not None and w.freshness_weight:
                out[i] += w.freshness_weight * freshness(when, now, w.freshness_half_life_days)
        return out

    # ---- profiles -------------------------------------------------------------------

    def rank(
        self,
        corpus: Corpus,
        profile: Profile,
        *,
        seen: Collection[str] = (),
        liked_papers: Sequence[Paper] = (),
        top: int | None = None,
        votes: Sequence[vote_model.Vote] = (),
        disliked_papers: Sequence[Paper] = (),
    ) -> list[Scored]:
        """The best papers of ``corpus`` for ``profile``, best first, with reasons."""
        return next(
            self.rank_many(
                corpus,
                [profile],
                seen={profile.email: seen},
                liked_papers={profile.email: liked_papers},
                top=top,
                votes={profile.email: votes} if votes else None,
                disliked_papers={profile.email: disliked_papers} if disliked_papers else None,
            )
        )

    def rank_many(
        self,
        corpus: Corpus,
        profiles: Iterable[Profile],
        *,
        seen: Mapping[str, Collection[str]] | None = None,
        liked_papers: Mapping[str, Sequence[Paper]] | None = None,
        top: int | None = None,
        batch: int = BATCH,
        votes: Mapping[str, Sequence[vote_model.Vote]] | None = None,
        disliked_papers: Mapping[str, Sequence[Paper]] | None = None,
    ) -> Iterator[list[Scored]]:
        """Rank many profiles, yielding one list per profile in order.

        ``seen``, ``liked_papers``, ``votes`` and ``disliked_papers`` are keyed by profile
        email. ``votes`` are the subscriber's votes, oldest first: (paper, +1 or -1), the
        papers voted on need not be in ``corpus``. With ``vote_model`` on, votes, liked and
        disliked papers (given here or in the profile's files) feed the vote model; off,
        liked papers lift their neighbours and votes are ignored. Profiles are consumed in
        batches, so a generator of profiles is never held in memory all at once.
        """
        seen = seen or {}
        liked_papers = liked_papers or {}
        extra = (votes or {}, disliked_papers or {})
        chunk: list[Profile] = []
        for profile in profiles:
            chunk.append(profile)
            if len(chunk) >= batch:
                yield from self._rank_batch(corpus, chunk, seen, liked_papers, top, *extra)
                chunk = []
        if chunk:
            yield from self._rank_batch(corpus, chunk, seen, liked_papers, top, *extra)

    def encode(
        self, profiles: Sequence[Profile], liked: Mapping[str, Sequence[Paper]]
    ) -> list[Query]:
        """Profiles as queries, from the cache where possible; new ones embedded together
        (profiles that differ only in name, address or schedule share one query)."""
        keys = [profile_key(p, liked.get(p.email, ())) for p in profiles]
        cache = self._queries
        out = [cache.get(k) for k in keys]
        todo: dict[tuple[object, ...], int] = {}
        for i, q in enumerate(out):
            if q is None:
                todo.setdefault(keys[i], i)
        if todo:
            new = self._build([profiles[i] for i in todo.values()], liked)
            built = dict(zip(todo, new, strict=True))
            for key, q in built.items():
                cache[key] = q
                if len(cache) > _CACHE_SIZE:
                    cache.popitem(last=False)
            out = [q if q is not None else built[k] for q, k in zip(out, keys, strict=True)]
        return [q for q in out if q is not None]

    def _build(
        self, profiles: Sequence[Profile], liked: Mapping[str, Sequence[Paper]]
    ) -> list[Query]:
        groups = [profile_parts(p) for p in profiles]
        liked_counts: list[int] = []
        for p in profiles:
            texts = liked_texts(p, liked.get(p.email, ()))
            groups.extend([t] for t in texts)
            liked_counts.append(len(texts))
        vecs = self._parts.embed(groups)
        cursor = len(profiles)
        out = []
        for j, p in enumerate(profiles):
            liked_vecs = vecs[cursor : cursor + liked_counts[j]]
            cursor += liked_counts[j]
            out.append(
                build_query(
                    p,
                    liked.get(p.email, ()),
                    vecs[j],
                    liked_vecs,
                    balanced=self.weights.balanced_terms,
                )
            )
        return out

    # ---- scoring --------------------------------------------------------------------

    def _rank_batch(
        self,
        corpus: Corpus,
        profiles: Sequence[Profile],
        seen: Mapping[str, Collection[str]],
        liked: Mapping[str, Sequence[Paper]],
        top: int | None,
        votes: Mapping[str, Sequence[vote_model.Vote]] | None = None,
        disliked: Mapping[str, Sequence[Paper]] | None = None,
    ) -> Iterator[list[Scored]]:
        queries = self.encode(profiles, liked)
        if len(corpus) == 0:
            for _ in profiles:
                yield []
            return
        model = None
        if self.weights.vote_model:
            model = vote_model.model_of(
                corpus,
                self._pool,
                lambda raw: self._center(corpus, raw),
                vote_model.collect(profiles, votes or {}, liked, disliked or {}, self._votes.most),
                self._votes,
            )
        allowed = np.ones((len(queries), len(corpus)), dtype=bool)
        for qi, (profile, query) in enumerate(zip(profiles, queries, strict=True)):
            self._veto(corpus, query, allowed[qi], seen.get(profile.email, ()))
        if model is not None:  # a paper voted on is no news
            model.veto(allowed)
        scores, sig = self.score(corpus, queries, allowed, model)
        limits = np.asarray([q.max_papers if top is None else top for q in queries])
        floors = np.asarray([q.min_score for q in queries], dtype=np.float32)
        picks = select(
            corpus,
            scores,
            limits,
            floors,
            ~allowed,
            diversity=self.weights.diversity,
            duplicate_similarity=self.weights.duplicate_similarity,
            gram_bytes=self.gram_bytes,
        )
        w = self.weights
        if w.relevance_floor and len(corpus) >= w.relevance_floor_papers:
            # A pick under the floor is not sent to fill the edition: fewer on a quiet day.
            picks = self._above_floor(corpus, queries, sig, picks)
        # All picks of the batch at once, query by query, each query's best first (ties
        # by id); their facts read as Python numbers in one go.
        n = len(corpus)
        counts = np.fromiter(map(len, picks), dtype=np.int64, count=len(picks))
        pq = np.repeat(np.arange(len(picks)), counts)
        pd = np.fromiter(itertools.chain.from_iterable(picks), dtype=np.int64, count=len(pq))
        values = scores[pq, pd]
        order = np.lexsort((corpus.id_order[pd], -values, pq))
        pq, pd, values = pq[order], pd[order], values[order]
        terms, ends = corpus.lexical.hits(sig.postings, pq * n + pd, REASON_TERMS + 4)
        facts = Facts(
            sig.liked[pq, pd].tolist(),
            sig.relevance[pq, pd].tolist(),
            sig.semantic[pq, pd].tolist(),
            sig.liked_best[pq, pd].tolist(),
            vote_model.reasons(model, sig.vote_z, corpus.vectors, pq, pd),
        )
        docs = pd.tolist()
        rounded = [round(v, 4) for v in values.tolist()]
        found = [terms[a:b] for a, b in zip([0, *ends], ends, strict=False)]
        papers = corpus.papers
        start = 0
        for qi, query in enumerate(queries):
            stop = start + int(counts[qi])
            yield [
                Scored(
                    papers[docs[j]], rounded[j], reasons(corpus, query, facts, j, docs[j], found[j])
                )
                for j in range(start, stop)
            ]
            start = stop

    def score(
        self,
        corpus: Corpus,
        queries: Sequence[Query],
        allowed: np.ndarray | None = None,
        model: vote_model.Fit | None = None,
    ) -> tuple[np.ndarray, _Signals]:
        """Scores of every paper for every query, shape (Q, n), and the signals behind them.

        ``allowed`` (Q, n) marks the papers each query may pick; only those serve as
        feedback examples. ``model`` (the vote model of some of the queries) moves their
        interests vectors before the feedback and adds its standardized score.
        """
        w = self.weights
        nq, n = len(queries), len(corpus)
        if allowed is None:
            allowed = np.ones((nq, n), dtype=bool)
        barred = ~allowed
        mask = _Mask.of(barred)
        lexical = corpus.lexical
        postings = lexical.postings(*_lexical_terms(corpus, queries))
        lex_raw = lexical.scores(postings, nq)
        self._add_phrases(corpus, queries, lex_raw)
        lex = _standardize(np.log1p(lex_raw), mask)
        has_lex = np.asarray([bool(q.terms or q.phrases) for q in queries])
        has_vec = np.asarray([q.vector is not None for q in queries])
        qvecs = np.zeros((nq, corpus.vectors.shape[1]), dtype=np.float32)
        for qi, q in enumerate(queries):
            if q.vector is not None:
                qvecs[qi] = q.vector
        qvecs = self._center(corpus, qvecs)
        if model is not None:  # Rocchio: towards the ups, away from the downs
            base = np.where(has_vec[model.rows][:, None], qvecs[model.rows], 0.0)
            qvecs[model.rows] = embed.unit(base + model.shift)
            has_vec = has_vec.copy()
            has_vec[model.rows] |= np.linalg.norm(model.shift, axis=1) > 0
        sem = _standardize(qvecs @ corpus.vectors.T, mask)
        floor_vec = qvecs  # the final interests vector: moved by the feedback below
        liked_rows = (
            [qi for qi, q in enumerate(queries) if len(q.liked)] if not w.vote_model else []
        )
        liked_best = np.zeros((nq, n), dtype=np.int32)
        liked_cos = np.zeros((nq, n), dtype=np.float32)
        liked_z = np.zeros((nq, n), dtype=np.float32)
        for qi in liked_rows:
            sims = self._center(corpus, queries[qi].liked) @ corpus.vectors.T
            liked_best[qi] = sims.argmax(axis=0)
            liked_cos[qi] = sims.max(axis=0)
        if liked_rows:
            liked_z[liked_rows] = _standardize(liked_cos[liked_rows], mask.rows(liked_rows))
        wl = (w.lexical_weight * has_lex)[:, None]
        ws = (w.semantic_weight * has_vec)[:, None]
        wk = min(w.liked_weight, 1.0)
        total = np.maximum(wl + ws, 1e-9)
        lex_part = wl * lex

        def relevance_of(sem: np.ndarray, total: np.ndarray) -> np.ndarray:
            # (wl * lex + ws * sem) / total, with 1.0 * sem read as sem (the same numbers)
            rel = lex_part + (sem if (ws == 1.0).all() else ws * sem)
            rel /= total
            return rel

        def lift(rel: np.ndarray) -> np.ndarray:
            # Relevance to the interests, lifted towards the similarity to liked papers
            # where that is higher: a liked paper pulls its neighbours up and never
            # pushes the interests' matches down. (Without liked papers, the lift is
            # nothing: only the rows with liked papers get it.)
            if not liked_rows:
                return rel
            fused = rel.copy()
            part = rel[liked_rows]
            fused[liked_rows] = part + wk * np.maximum(liked_z[liked_rows] - part, 0.0)
            return fused

        if w.feedback and has_vec.any():
            # Pseudo-relevance feedback: move each interests vector towards the mean of its
            # best first-pass papers, then score again. This widens a short or unusual
            # description to the vocabulary this edition's papers actually use.
            if liked_rows:
                first = np.negative(lift(relevance_of(sem, total)))
            else:
                first = relevance_of(sem, -total)  # the negated relevance, in one pass
            first[barred] = np.inf
            k = min(w.feedback_papers, n)
            best = np.argpartition(first, k - 1, axis=1)[:, :k]
            centroid = embed.unit(corpus.vectors[best].mean(axis=1))
            feedback = embed.unit(qvecs + w.feedback * centroid)
            again = _standardize(feedback @ corpus.vectors.T, mask)
            floor_vec = feedback
            sem = again if has_vec.all() else np.where(has_vec[:, None], again, sem)
        relevance = relevance_of(sem, total)
        vote_z = None
        if model is not None and model.fitted.any():
            vote_rows = model.rows[model.fitted]
            vote_z = np.zeros((nq, n), dtype=np.float32)
            raw = vote_model.scores(model, corpus.vectors, self._votes)
            vote_z[vote_rows] = _standardize(raw, mask.rows(vote_rows.tolist()))
            vote_part = model.strength[model.fitted].astype(np.float32)[:, None]
            vote_part = vote_part * vote_z[vote_rows]
        smooth_votes = vote_z is not None and w.vote_smooth
        if smooth_votes:
            # The day's papers as unlabelled data: the vote score is smoothed over each
            # paper's nearest papers together with the relevance.
            relevance[vote_rows] += vote_part
        if w.smoothing and n > 1:
            # Papers near many relevant papers are more likely relevant themselves (and a
            # lone outlier less): each paper's relevance is mixed with its neighbours'.
            neighbours = corpus.neighbours(w.smoothing_neighbours)
            relevance = _smooth(relevance, neighbours, w.smoothing, mask)
        fused = lift(relevance)
        if fused is relevance:
            fused = fused + corpus.boosts[None, :]
        else:
            fused += corpus.boosts[None, :]
        self._boost(corpus, queries, fused)
        if vote_z is not None and not smooth_votes:
            fused[vote_rows] += vote_part
        signals = (lex, sem, liked_z, liked_best, liked_cos, relevance, postings)
        return fused, _Signals(*signals, floor_vec, has_vec, vote_z)

    def _above_floor(
        self, corpus: Corpus, queries: Sequence[Query], sig: _Signals, picks: list[list[int]]
    ) -> list[list[int]]:
        """The picks that clear the relevance floor, in order (``_floor``)."""
        return above_floor(
            corpus, queries, sig.floor_vec, sig.has_vec, picks, self.weights.relevance_floor
        )

    @staticmethod
    def _add_phrases(corpus: Corpus, queries: Sequence[Query], lex_raw: np.ndarray) -> None:
        """Add each query's phrases' BM25 to its row of ``lex_raw``, phrase by phrase."""
        qs: list[np.ndarray] = []
        rows: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        for qi, q in enumerate(queries):
            for key, weight in q.phrases:
                hit, tf, idf = corpus.lexical.phrase(key)
                if len(hit):
                    qs.append(np.full(len(hit), qi, dtype=np.int64))
                    rows.append(hit)
                    vals.append(np.float32(weight * idf) * tf)  # as weight * idf * tf does
        if qs:
            np.add.at(lex_raw, (np.concatenate(qs), np.concatenate(rows)), np.concatenate(vals))

    @staticmethod
    def _center(corpus: Corpus, vecs: np.ndarray) -> np.ndarray:
        """Unit vectors with the edition's common direction taken out (as for the papers)."""
        return embed.unit(embed.unit(vecs) - embed.unit(corpus.mean[None, :]))

    def _boost(self, corpus: Corpus, queries: Sequence[Query], fused: np.ndarray) -> None:
        """Add the followed authors' boost, then the categories' boost, to each row."""
        w = self.weights
        by_author: list[tuple[int, Sequence[int] | np.ndarray]] = []
        by_category: list[tuple[int, Sequence[int] | np.ndarray]] = []
        for qi, q in enumerate(queries):
            if q.authors and w.author_boost:
                by_author.append((qi, corpus.author_rows(q.authors)))
            if q.categories and w.category_boost and not q.restrict:
                by_category.append((qi, corpus.category_rows(q.categories)))
        for boost, hits in ((w.author_boost, by_author), (w.category_boost, by_category)):
            hits = [(qi, rows) for qi, rows in hits if len(rows)]
            if hits:
                qs = np.repeat([qi for qi, _ in hits], [len(rows) for _, rows in hits])
                fused[qs, np.concatenate([rows for _, rows in hits])] += boost

    def _veto(self, corpus: Corpus, q: Query, allowed: np.ndarray, seen: Collection[str]) -> None:
        """Clear ``allowed`` for papers this profile must never get."""
        if seen or q.liked_ids:
            gone = [corpus.rows[i] for i in (*seen, *q.liked_ids) if i in corpus.rows]
            if gone:
                allowed[gone] = False
        for key in q.liked_title_keys:  # a paper the subscriber already has is no news
            group = corpus.title_index.get(key)
            if group is not None:
                allowed[corpus.title_groups == group] = False
        if q.restrict and q.categories:
            keep = np.zeros(len(allowed), dtype=bool)
            keep[corpus.category_rows(q.categories)] = True
            allowed &= keep
        if q.exclude_categories:
            allowed[corpus.category_rows(sorted(q.exclude_categories))] = False
        for key in q.exclude_terms:
            rows, _, _ = corpus.lexical.phrase(key)
            if len(rows):
                allowed[rows] = False

    # ---- reasons --------------------------------------------------------------------


# ---- helpers -------------------------------------------------------------------------


def _lexical_terms(
    corpus: Corpus, queries: Sequence[Query]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The queries' terms in the edition's vocabulary, query by query in each query's term
    order: (query, term id, weight times idf as float32)."""
    vocab = corpus.lexical.vocab
    stems = [s for q in queries for s in q.terms]
    ids = np.fromiter(map(vocab.get, stems, itertools.repeat(-1)), dtype=np.int64, count=len(stems))
    weights = np.fromiter(
        itertools.chain.from_iterable(q.terms.values() for q in queries),
        dtype=np.float32,
        count=len(stems),
    )
    qs = np.repeat(np.arange(len(queries)), [len(q.terms) for q in queries])
    known = ids >= 0
    ids = ids[known]
    return qs[known], ids, weights[known] * corpus.lexical.idf[ids]


class _Mask(NamedTuple):
    """The papers each query may not pick, and how many it may, for ``_standardize``."""

    barred: np.ndarray  # (Q, n) bool
    n_allowed: np.ndarray  # (Q, 1) papers allowed, at least 1
    partial: np.ndarray  # the rows with some paper barred

    @classmethod
    def of(cls, barred: np.ndarray) -> _Mask:
        count = np.maximum(barred.shape[1] - barred.sum(axis=1, keepdims=True), 1)
        return cls(barred, count, np.flatnonzero(barred.any(axis=1)))

    def rows(self, rows: Sequence[int]) -> _Mask:
        return _Mask.of(self.barred[rows])


def _standardize(x: np.ndarray, mask: _Mask | None = None) -> np.ndarray:
    """Each row in standard deviations above its mean over the entries not barred by
    ``mask`` (papers that can be picked); a constant row gives zeros."""
    if mask is None:
        mean = x.mean(axis=1, keepdims=True)
        std = x.std(axis=1, keepdims=True)
        return ((x - mean) / np.where(std > 1e-9, std, 1.0)).astype(np.float32)
    # Sums over the allowed entries, as np.where(allowed, x, 0).sum(axis=1) gives them;
    # a row with nothing barred is summed as it is.
    partial = mask.partial
    sums = x.sum(axis=1, keepdims=True)
    if len(partial):
        kept = x[partial]
        kept[mask.barred[partial]] = 0.0
        sums[partial] = kept.sum(axis=1, keepdims=True)
    mean = sums / mask.n_allowed
    diff = x - mean
    square = np.square(diff)
    squares = square.sum(axis=1, keepdims=True)
    if len(partial):
        kept = square[partial]
        kept[mask.barred[partial]] = 0.0
        squares[partial] = kept.sum(axis=1, keepdims=True)
    std = np.sqrt(squares / mask.n_allowed)
    diff /= np.where(std > 1e-9, std, 1.0)
    return diff.astype(np.float32)


def _smooth(rel: np.ndarray, nb: np.ndarray, beta: float, mask: _Mask) -> np.ndarray:
    """Each row mixed with its papers' neighbours' mean, (1 - beta) x + beta mean(x[nb]),
    then brought back to the row's own mean and standard deviation over the papers it may
    get: the scale the boosts are added on. ``nb`` (n, k): each paper's neighbours
    (``Corpus.neighbours``, made once per edition)."""
    k = nb.shape[1]
    if k == 0 or not beta:
        return rel
    # The neighbours' sum gathered along the papers of the transposed rows: whole rows
    # copied at a time, twice as fast as gathering columns.
    papers_first = np.ascontiguousarray(rel.T)
    total = papers_first[nb[:, 0]]
    for j in range(1, k):
        total += papers_first[nb[:, j]]
    mixed = np.ascontiguousarray(total.T)
    mixed *= np.float32(beta / k)
    mixed += np.float32(1.0 - beta) * rel
    mean, std = _moments(rel, mask)
    mixed_mean, mixed_std = _moments(mixed, mask)
    mixed -= mixed_mean
    mixed *= std / np.where(mixed_std > 1e-9, mixed_std, np.float32(1.0))
    mixed += mean
    return mixed


def _moments(x: np.ndarray, mask: _Mask) -> tuple[np.ndarray, np.ndarray]:
    """(Q, 1) mean and standard deviation of each row over the entries ``mask`` allows
    (as ``_standardize`` computes them)."""
    partial = mask.partial
    sums = x.sum(axis=1, keepdims=True)
    if len(partial):
        kept = x[partial]
        kept[mask.barred[partial]] = 0.0
        sums[partial] = kept.sum(axis=1, keepdims=True)
    mean = sums / mask.n_allowed
    square = np.square(x - mean)
    squares = square.sum(axis=1, keepdims=True)
    if len(partial):
        kept = square[partial]
        kept[mask.barred[partial]] = 0.0
        squares[partial] = kept.sum(axis=1, keepdims=True)
    return mean.astype(np.float32), np.sqrt(squares / mask.n_allowed).astype(np.float32)

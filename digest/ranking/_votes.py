"""A per-subscriber model learned from votes: the papers a subscriber voted up or down.

Votes come from the database (one per subscriber and paper, +1 or -1) and from the
subscriber's file (``liked`` / ``liked_file`` count as up votes, ``disliked`` /
``disliked_file`` as down votes). The ranker receives the voted papers themselves (title,
abstract, authors, categories), also when they are not in today's edition.

The model has two parts, both linear in the features the ranker already computes (the
edition-centered static embedding, the canonical arXiv categories, the authors):

- **Rocchio**: the interests' vector is moved towards the mean of the papers voted up and
  away from the mean of those voted down *before* the pseudo-relevance feedback and the
  fusion with BM25, so the votes also choose the feedback papers.
- **Ridge**: a kernel ridge regression on the voted papers (labels +1/-1, centered when
  there are both kinds; kernel = embedding cosine + weighted category overlap) gives each
  voted paper a weight ``alpha``; a paper's vote score is ``sum(alpha_i * k(voted_i,
  paper))``, computed as one matrix product (the weights folded into a vector). Its
  standardized value is added to the profile's score with a weight that grows with the
  number of votes (``weight * m / (m + evidence)``). Papers by an author of a voted paper get
  ``author_weight * alpha`` of that paper on top. With ``vote_smooth`` it is added to the
  relevance before the ranker's neighbour smoothing, so a paper among papers the votes
  favour is lifted too (the day's papers as unlabelled data).

By default ``alpha`` is the ridge's large-penalty limit, ``target / (ridge + 1)``: no (m, m)
system to solve, and on the dev week it ranks as well as the exact solve (``vote_exact``,
batched over subscribers, m <= ``vote_max``, the latest votes). The papers voted on are
embedded once per run (a pool shared by all subscribers) and put in each edition's frame
once per edition. With no votes, nothing here runs and the ranking is unchanged.

Every voted paper's share in a pick's score is ``(alpha_i + rocchio_i) * cos(voted_i, pick)``:
the largest names the evidence in the reasons ("like 'X' that you voted up").
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..models import Paper, Profile
from . import _embed as embed
from . import _text as text
from ._corpus import Corpus
from ._query import paper_text, title_key

Vote = tuple[Paper, int]  # a paper and +1 (up) or -1 (down)

VOTED, LIKED, DISLIKED = 0, 1, 2  # where an example comes from, for the reasons
_SOURCE_WORDS = {
    (VOTED, 1): "that you voted up",
    (VOTED, -1): "that you voted down",
    (LIKED, 1): "that you liked",
    (DISLIKED, -1): "that you marked as not for you",
}
LIKE_REASON_Z = 1.5  # a pick this many standard deviations closer than the edition's
# average paper to an up-voted paper names it (as "close to a paper you liked" did)
UNLIKE_REASON_Z = -0.5  # ... and this far (below average) from a down-voted one: "unlike",
UNLIKE_LIFT_Z = 1.0  # only for picks the vote score lifted this far


@dataclass(frozen=True, slots=True)
class Settings:
    """The model's knobs (from ``[ranking]``: vote_*)."""

    toward: float = 1.0  # Rocchio: weight of the up-voted papers' mean direction
    away: float = 0.1  # Rocchio: weight of the down-voted papers' mean direction
    toward_ramp: float = 0.0  # the up weight is toward * ups / (ups + toward_ramp)
    weight: float = 0.5  # weight of the standardized ridge score in the fused score
    evidence: float = 10.0  # the ridge weight is weight * votes / (votes + evidence)
    ridge: float = 3.0  # ridge penalty (in units of a cosine)
    category_weight: float = 0.0  # category overlap's share of the kernel
    author_weight: float = 0.5  # boost per unit of alpha for papers by a voted paper's author
    most: int = 100  # the most recent votes kept per subscriber
    exact: bool = False  # solve the (m, m) ridge system (else its large-penalty limit)


class Pool:
    """The distinct papers voted on (by any subscriber of a run), each embedded once."""

    def __init__(self, embed_texts: Callable[[list[str]], np.ndarray]) -> None:
        self._embed_texts = embed_texts
        self._rows: dict[str, int] = {}
        self.titles: list[str] = []
        self.ids: list[str] = []
        self.categories: list[frozenset[str]] = []
        self.authors: list[tuple[str, ...]] = []  # author keys
        self._raw: list[np.ndarray] = []  # chunks of raw embeddings
        self._stacked: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.titles)

    @staticmethod
    def key(paper: Paper) -> str:
        return paper.id or f"\x00{paper.title}\x00{paper.abstract}"

    def rows(self, papers: Sequence[Paper]) -> list[int]:
        """The pool rows of ``papers``, adding (and embedding) those not yet seen."""
        rows = self._rows
        out = [rows.get(p.id or f"\x00{p.title}\x00{p.abstract}", -1) for p in papers]
        if -1 in out:
            new: dict[str, Paper] = {}
            for p, r in zip(papers, out, strict=True):
                if r < 0:
                    new.setdefault(self.key(p), p)
            self._add(list(new.values()))
            out = [r if r >= 0 else rows[self.key(p)] for p, r in zip(papers, out, strict=True)]
        return out

    def _add(self, papers: list[Paper]) -> None:
        start = len(self.titles)
        self._raw.append(self._embed_texts([paper_text(p) for p in papers]))
        self._stacked = None
        for i, p in enumerate(papers):
            self._rows[self.key(p)] = start + i
            self.titles.append(p.title)
            self.ids.append(p.id)
            self.categories.append(frozenset(text.canonical_category(c) for c in p.categories))
            # as a followed author is found: a full given name finds that person only
            self.authors.append(tuple(k for k in map(text.author_key, p.authors) if k))

    def copies_in(self, row: int, corpus: Corpus) -> np.ndarray:
        """The rows of ``corpus`` holding pool paper ``row`` (same id or same title)."""
        found: set[int] = set()
        pid = self.ids[row]
        if pid and pid in corpus.rows:
            found.add(corpus.rows[pid])
        group = corpus.title_index.get(title_key(self.titles[row]))
        if group is not None:
            found.update(np.flatnonzero(corpus.title_groups == group).tolist())
        return np.array(sorted(found), dtype=np.int64)

    def raw(self) -> np.ndarray:
        if self._stacked is None:
            self._stacked = np.concatenate(self._raw) if self._raw else np.zeros((0, 0))
            self._raw = [self._stacked]
        return self._stacked


@dataclass
class Frame:
    """The pool in one edition's frame: vectors centered like the edition's papers,
    categories over the edition's categories, the edition's papers sharing an author."""

    vectors: np.ndarray  # (P, d) unit, centered on the edition's mean
    cats: np.ndarray  # (P, C) unit-normalized one-hot over the edition's categories
    corpus_cats: np.ndarray  # (n, C)
    category_index: dict[str, int]
    author_rows: list[np.ndarray] = field(default_factory=list)  # per pool row
    has_author: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # Each pool paper's cosine to the edition's papers: mean and standard deviation (for
    # the reasons: how much closer than average a pick is), from the edition's moments.
    cos_mean: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    cos_std: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    corpus_row: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    moments: tuple[np.ndarray, np.ndarray] | None = None


def frame(
    corpus: Corpus, pool: Pool, center: Callable[[np.ndarray], np.ndarray], current: Frame | None
) -> Frame:
    """``current`` grown to the whole pool (or made anew) for the edition ``corpus``."""
    if current is None:
        index = {c: i for i, c in enumerate(sorted(corpus.categories))}
        cc = np.zeros((len(corpus), len(index)), dtype=np.float32)
        for i, codes in enumerate(corpus.paper_categories):
            cols = [index[c] for c in codes if c in index]
            if cols:
                cc[i, cols] = 1.0 / np.sqrt(len(codes))
        current = Frame(
            vectors=np.zeros((0, corpus.vectors.shape[1]), dtype=np.float32),
            cats=np.zeros((0, len(index)), dtype=np.float32),
            corpus_cats=cc,
            category_index=index,
        )
    done, total = len(current.vectors), len(pool)
    if done < total:
        raw = pool.raw()[done:total]
        vecs = center(raw)
        index = current.category_index
        cats = np.zeros((total - done, len(index)), dtype=np.float32)
        rows: list[np.ndarray] = []
        for i in range(done, total):
            mine = pool.categories[i]
            cols = [index[c] for c in mine if c in index]
            if cols:
                cats[i - done, cols] = 1.0 / np.sqrt(len(mine))
            found = {d for a in pool.authors[i] for d, _ in corpus.authors.get(a, ())}
            rows.append(np.array(sorted(found), dtype=np.int64))
        if current.moments is None:
            e = corpus.vectors.astype(np.float64)
            current.moments = (e.mean(axis=0), e.T @ e / max(len(e), 1))
        mean, second = current.moments
        n = len(corpus)
        mu = vecs.astype(np.float64) @ mean
        sq = np.einsum("pd,de,pe->p", vecs.astype(np.float64), second, vecs)
        # The paper itself (or a copy by title) in the edition is never picked: left out.
        for i in range(done, total):
            same = pool.copies_in(i, corpus)
            if len(same) and len(same) < n:
                c = corpus.vectors[same] @ vecs[i - done]
                k = len(same)
                mu[i - done] = (n * mu[i - done] - c.sum()) / (n - k)
                sq[i - done] = (n * sq[i - done] - (c * c).sum()) / (n - k)
        var = sq - mu * mu
        current.cos_mean = np.concatenate([current.cos_mean, mu.astype(np.float32)])
        current.cos_std = np.concatenate(
            [current.cos_std, np.sqrt(np.maximum(var, 1e-12)).astype(np.float32)]
        )
        here = [corpus.rows.get(pool.ids[i], -1) if pool.ids[i] else -1 for i in range(done, total)]
        current.corpus_row = np.concatenate([current.corpus_row, np.array(here, dtype=np.int64)])
        current.vectors = np.concatenate([current.vectors, vecs])
        current.cats = np.concatenate([current.cats, cats])
        current.author_rows.extend(rows)
        current.has_author = np.array([len(r) > 0 for r in current.author_rows], dtype=bool)
    return current


def examples(
    profile: Profile,
    votes: Sequence[Vote],
    liked: Sequence[Paper],
    disliked: Sequence[Paper],
    most: int,
) -> tuple[list[Paper], list[int], list[int]]:
    """A profile's examples, oldest first, each paper once (its last word counts): the
    file's liked and disliked papers, then the votes; at most ``most``, the latest."""
    if not (liked or disliked or profile.liked_texts or profile.disliked_texts):
        # Votes only (the common case, made fast): papers with distinct ids.
        papers = [p for p, v in votes if v]
        values = [1 if v > 0 else -1 for _, v in votes if v]
        if len({p.id for p in papers}) == len(papers) and all(p.id for p in papers):
            if len(papers) > most:
                papers, values = papers[-most:], values[-most:]
            return papers, values, [VOTED] * len(papers)
    papers = []
    values = []
    sources: list[int] = []
    for title, abstract in profile.liked_texts:
        papers.append(Paper(id="", title=title, abstract=abstract))
        values.append(1)
        sources.append(LIKED)
    for title, abstract in profile.disliked_texts:
        papers.append(Paper(id="", title=title, abstract=abstract))
        values.append(-1)
        sources.append(DISLIKED)
    for p in liked:
        papers.append(p)
        values.append(1)
        sources.append(LIKED)
    for p in disliked:
        papers.append(p)
        values.append(-1)
        sources.append(DISLIKED)
    for p, v in votes:
        if v:
            papers.append(p)
            values.append(1 if v > 0 else -1)
            sources.append(VOTED)
    if len(papers) > 1:
        last = {Pool.key(p): i for i, p in enumerate(papers)}
        if len(last) < len(papers):
            keep = sorted(last.values())
            papers = [papers[i] for i in keep]
            values = [values[i] for i in keep]
            sources = [sources[i] for i in keep]
    if len(papers) > most:
        papers, values, sources = papers[-most:], values[-most:], sources[-most:]
    return papers, values, sources


@dataclass
class Fit:
    """The model of the batch's profiles that have examples."""

    rows: np.ndarray  # (V,) their rows in the batch
    idx: np.ndarray  # (V, M) pool rows of their examples (padding: row 0)
    y: np.ndarray  # (V, M) +1 / -1, 0 for padding
    sources: list[list[int]]  # per profile, per example
    shift: np.ndarray  # (V, d) the Rocchio shift of each unit, centered interests vector
    alpha: np.ndarray  # (V, M) the ridge's weights (0 where not fitted)
    share: np.ndarray  # (V, M) each example's weight in a pick's evidence
    fitted: np.ndarray  # (V,) bool: rows scored by the ridge
    strength: np.ndarray  # (V,) the ridge score's weight in the fused score
    frame: Frame
    papers: list[list[Paper]]  # per profile, its examples
    vecs: np.ndarray  # (V, M, d) the examples' vectors

    def veto(self, allowed: np.ndarray) -> None:
        """Clear ``allowed`` (batch rows, edition papers) for the papers of this edition
        that each profile voted on: it has seen them."""
        here = self.frame.corpus_row[self.idx]
        k, j = np.nonzero((here >= 0) & (self.y != 0))
        allowed[self.rows[k], here[k, j]] = False


def fit(
    fr: Frame,
    rows: Sequence[int],
    idx: Sequence[Sequence[int]],
    values: Sequence[Sequence[int]],
    sources: list[list[int]],
    papers: list[list[Paper]],
    s: Settings,
) -> Fit:
    """Fit the model of each profile (``rows`` in the batch) on its examples."""
    nv = len(rows)
    lens = np.fromiter(map(len, idx), dtype=np.int64, count=nv)
    width = int(lens.max())
    total = int(lens.sum())
    at_row = np.repeat(np.arange(nv), lens)
    at_col = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
    pad_idx = np.zeros((nv, width), dtype=np.int64)
    y = np.zeros((nv, width), dtype=np.float64)
    pad_idx[at_row, at_col] = np.fromiter(itertools.chain.from_iterable(idx), np.int64, total)
    y[at_row, at_col] = np.fromiter(itertools.chain.from_iterable(values), np.float64, total)
    up = y > 0
    down = y < 0
    n_up = up.sum(axis=1)
    n_down = down.sum(axis=1)
    vecs = fr.vectors[pad_idx]  # (V, M, d)
    toward = np.where(n_up > 0, s.toward * n_up / np.maximum(n_up + s.toward_ramp, 1e-9), 0.0)
    shift = _rocchio(vecs, up, down, toward, s)
    # Each example's part in the shift, for the reasons.
    rocchio = np.zeros((nv, width), dtype=np.float64)
    if s.toward:
        rocchio += np.where(up, (toward / np.maximum(n_up, 1))[:, None], 0.0)
    if s.away:
        rocchio -= np.where(down, (s.away / np.maximum(n_down, 1))[:, None], 0.0)
    # Ridge on every profile with examples: labels centered when there are both kinds
    # (up against down); with one kind only, against the edition's average paper (the
    # origin of the centered space), so likes alone still lift their neighbours.
    fitted = ((n_up > 0) | (n_down > 0)) & (s.weight > 0)
    both = (n_up > 0) & (n_down > 0)
    alpha = np.zeros((nv, width), dtype=np.float64)
    if fitted.any():
        f = np.flatnonzero(fitted)
        live = (y[f] != 0).astype(np.float64)
        count = live.sum(axis=1, keepdims=True)
        mean = (y[f] * live).sum(axis=1, keepdims=True) / count
        target = (y[f] - np.where(both[f][:, None], mean, 0.0)) * live
        if not s.exact:
            # The ridge's large-penalty limit: alpha = target / (ridge + k(x, x)), the
            # kernel's diagonal (1 + category_weight * |categories in common|) taken as 1:
            # no (m, m) system, the same rankings on the dev week (REPORT.md).
            alpha[f] = target / (s.ridge + 1.0)
        else:
            alpha[f] = _solve(
                vecs[f], fr.cats[pad_idx[f]] if s.category_weight else None, live, target, s
            )
    m = (y != 0).sum(axis=1)
    strength = np.where(fitted, s.weight * m / np.maximum(m + s.evidence, 1e-9), 0.0)
    return Fit(
        rows=np.asarray(rows, dtype=np.int64),
        idx=pad_idx,
        y=y,
        sources=sources,
        shift=shift,
        alpha=alpha,
        share=alpha + rocchio,
        fitted=fitted,
        strength=strength,
        frame=fr,
        papers=papers,
        vecs=vecs,
    )


def _rocchio(
    vecs: np.ndarray, up: np.ndarray, down: np.ndarray, toward: np.ndarray, s: Settings
) -> np.ndarray:
    """(V, d) the Rocchio shift of each profile: ``toward`` times the unit mean direction
    of its ups, less ``away`` times that of its downs (``vecs`` (V, M, d) its examples)."""
    shift = np.zeros((vecs.shape[0], vecs.shape[2]), dtype=np.float32)
    if s.toward:
        mean_up = embed.unit(np.matmul(up.astype(np.float32)[:, None, :], vecs)[:, 0])
        shift += (toward[:, None] * mean_up).astype(np.float32)
    if s.away:
        mean_down = embed.unit(np.matmul(down.astype(np.float32)[:, None, :], vecs)[:, 0])
        shift -= (s.away * mean_down * (down.sum(axis=1) > 0)[:, None]).astype(np.float32)
    return shift


def _solve(
    v: np.ndarray, c: np.ndarray | None, live: np.ndarray, target: np.ndarray, s: Settings
) -> np.ndarray:
    """Kernel ridge regression, exactly: alpha = (K + ridge I)^-1 target for each profile
    (K: embedding cosines plus weighted category overlap; padding has no kernel)."""
    width = v.shape[1]
    kernel = np.matmul(v, v.transpose(0, 2, 1)).astype(np.float64)
    if c is not None:
        kernel += s.category_weight * np.matmul(c, c.transpose(0, 2, 1))
    kernel *= live[:, :, None] * live[:, None, :]  # padding: no kernel, ...
    kernel[:, np.arange(width), np.arange(width)] += s.ridge  # ... alpha 0 (target 0)
    return np.linalg.solve(kernel, target[:, :, None])[:, :, 0]


def scores(model: Fit, corpus_vectors: np.ndarray, s: Settings) -> np.ndarray:
    """The ridge score of every paper for each fitted profile: (F, n), F = fitted rows."""
    fr = model.frame
    f = np.flatnonzero(model.fitted)
    alpha = model.alpha[f].astype(np.float32)
    idx = model.idx[f]
    w = np.matmul(alpha[:, None, :], model.vecs[f])[:, 0]
    out = w @ corpus_vectors.T
    if s.category_weight:
        wc = np.matmul(alpha[:, None, :], fr.cats[idx])[:, 0]
        out += s.category_weight * (wc @ fr.corpus_cats.T)
    if s.author_weight:
        hit = fr.has_author[idx] & (alpha != 0)
        for k, j in zip(*np.nonzero(hit), strict=True):
            out[k, fr.author_rows[idx[k, j]]] += s.author_weight * alpha[k, j]
    return out


def evidence(
    model: Fit, ks: np.ndarray, picks: np.ndarray, corpus_vectors: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For picks ``picks`` of the model's profiles ``ks`` (one of each per pick): the
    example with the largest share in the pick's score (index into the profile's
    examples), that share, and how close the pick is to it (standard deviations above the
    edition's average cosine to it). All picks at once, a few numpy operations."""
    fr = model.frame
    if not len(picks):
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    # The picks of each profile side by side: (profiles, most picks) then one matmul.
    order = np.argsort(ks, kind="stable")
    ks_sorted = ks[order]
    users, first, counts = np.unique(ks_sorted, return_index=True, return_counts=True)
    slot = np.arange(len(ks)) - np.repeat(first, counts)
    grid = np.zeros((len(users), int(counts.max()), corpus_vectors.shape[1]), dtype=np.float32)
    grid[np.searchsorted(users, ks_sorted), slot] = corpus_vectors[picks[order]]
    cos_all = np.matmul(grid, model.vecs[users].transpose(0, 2, 1))  # (U, P, M)
    cos = np.empty((len(ks), cos_all.shape[2]), dtype=np.float32)
    cos[order] = cos_all[np.searchsorted(users, ks_sorted), slot]
    share = cos * model.share[ks].astype(np.float32)
    share[model.y[ks] == 0] = -np.inf  # padding
    best = share.argmax(axis=1)
    at = np.arange(len(ks))
    rows = model.idx[ks, best]
    z = (cos[at, best] - fr.cos_mean[rows]) / fr.cos_std[rows]
    return best, share[at, best], z


def reason(title: str, value: int, source: int) -> str:
    words = _SOURCE_WORDS.get((source, value)) or (
        "that you voted up" if value > 0 else "that you voted down"
    )
    return f"{'like' if value > 0 else 'unlike'} '{title}' {words}"


def settings_of(weights: object) -> Settings:
    """The model's settings from a ``Ranking`` config."""
    g = weights.__getattribute__
    return Settings(
        toward=g("vote_toward"),
        away=g("vote_away"),
        toward_ramp=g("vote_toward_ramp"),
        weight=g("vote_weight"),
        evidence=g("vote_evidence"),
        ridge=g("vote_ridge"),
        category_weight=g("vote_category_weight"),
        author_weight=g("vote_author_weight"),
        most=g("vote_max"),
        exact=g("vote_exact"),
    )


def collect(
    profiles: Sequence[Profile],
    votes: Mapping[str, Sequence[Vote]],
    liked: Mapping[str, Sequence[Paper]],
    disliked: Mapping[str, Sequence[Paper]],
    most: int,
) -> list[tuple[int, list[Paper], list[int], list[int]]]:
    """(row in the batch, papers, values, sources) of each profile with examples."""
    out = []
    for qi, p in enumerate(profiles):
        vs = votes.get(p.email, ())
        lk = liked.get(p.email, ())
        dk = disliked.get(p.email, ())
        if not (vs or lk or dk or p.liked_texts or p.disliked_texts):
            continue
        papers, values, sources = examples(p, vs, lk, dk, most)
        if papers:
            out.append((qi, papers, values, sources))
    return out


def model_of(
    corpus: Corpus,
    pool: Pool,
    center: Callable[[np.ndarray], np.ndarray],
    found: list[tuple[int, list[Paper], list[int], list[int]]],
    s: Settings,
) -> Fit | None:
    """The model of a batch's profiles with examples (``collect``), None when none has:
    their papers added to the run's ``pool``, the pool put in the edition's frame (kept on
    ``corpus``), then ``fit``."""
    if not found:
        return None
    idx = [pool.rows(papers) for _, papers, _, _ in found]
    corpus.vote_frame = frame(corpus, pool, center, corpus.vote_frame)
    return fit(
        corpus.vote_frame,
        [qi for qi, _, _, _ in found],
        idx,
        [values for _, _, values, _ in found],
        [sources for _, _, _, sources in found],
        [papers for _, papers, _, _ in found],
        s,
    )


def reasons(
    model: Fit | None,
    vote_z: np.ndarray | None,
    corpus_vectors: np.ndarray,
    pq: np.ndarray,
    pd: np.ndarray,
) -> list[str]:
    """For each pick (query ``pq``, paper ``pd``): the reason naming the paper voted on
    behind it ("like 'X' that you voted up"), or "". ``vote_z`` (Q, n): the standardized
    vote score, for "unlike" (only named for picks it lifted)."""
    out = [""] * len(pq)
    if model is None:
        return out
    size = max(int(pq.max(initial=-1)), int(model.rows.max(initial=-1))) + 1
    local = np.full(size, -1, dtype=np.int64)
    local[model.rows] = np.arange(len(model.rows))
    at = np.flatnonzero(local[pq] >= 0) if len(pq) else np.zeros(0, dtype=np.int64)
    ks = local[pq[at]]
    best, share, z = evidence(model, ks, pd[at], corpus_vectors)
    value = model.y[ks, best]
    named = (share > 0) & (value > 0) & (z >= LIKE_REASON_Z)
    if vote_z is not None:
        lift = vote_z[pq[at], pd[at]]
        named |= (share > 0) & (value < 0) & (z <= UNLIKE_REASON_Z) & (lift >= UNLIKE_LIFT_Z)
    for i in np.flatnonzero(named).tolist():
        k, b = int(ks[i]), int(best[i])
        out[int(at[i])] = reason(model.papers[k][b].title, int(value[i]), model.sources[k][b])
    return out

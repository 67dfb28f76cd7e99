"""Choosing each subscriber's papers from their scores: the best first, near-duplicates
skipped, similar papers pushed down (maximal marginal relevance over a pool of the best).

The similarities come from the edition's Gram matrix where it is kept, and the few rows
where its rounding could change a choice are done again with the candidates' own vectors,
so the picks are exactly those of the long way (tests/test_rank_select.py).
"""

from __future__ import annotations

import numpy as np

from ._corpus import GRAM_BYTES, Corpus

POOL = 4  # candidates per pick considered by the diversity step
SELECT_BYTES = 64 << 20  # memory for the pairwise similarities of one diversity step
GATHER_BYTES = 8 << 20  # memory for the candidates' vectors gathered at once


def select(
    corpus: Corpus,
    scores: np.ndarray,
    limits: np.ndarray,
    floors: np.ndarray,
    barred: np.ndarray | None = None,
    *,
    diversity: float,
    duplicate_similarity: float,
    gram_bytes: int = GRAM_BYTES,
) -> list[list[int]]:
    """The picks of each row: best first, ties by id, near-duplicates skipped; never a
    paper scored under the row's floor or ``barred``.

    Maximal marginal relevance over a pool of the best candidates: each next pick is
    the best score minus ``diversity`` x (score range) x its similarity to the closest
    paper already picked. A paper as similar as ``duplicate_similarity`` to a pick, or
    with the same title, is never picked.
    """
    nq, n = scores.shape
    cap = int(limits.max(initial=0))
    if cap <= 0 or n == 0:
        return [[] for _ in range(nq)]
    size = min(n, cap * POOL + 10)
    rows = max(1, SELECT_BYTES // (size * size * 4))  # bounds the (rows, pool, pool) array
    if nq > rows:
        return [
            picks
            for lo in range(0, nq, rows)
            for picks in select(
                corpus,
                scores[lo : lo + rows],
                limits[lo : lo + rows],
                floors[lo : lo + rows],
                None if barred is None else barred[lo : lo + rows],
                diversity=diversity,
                duplicate_similarity=duplicate_similarity,
                gram_bytes=gram_bytes,
            )
        ]
    # The scores negated, at +inf where not eligible: the numbers of
    # -np.where(eligible, scores, -inf), in fewer passes.
    neg = np.negative(scores)
    drop = scores < floors[:, None]
    if barred is not None:
        drop |= barred
    neg[drop] = np.inf
    cand = (
        np.argpartition(neg, size - 1, axis=1)[:, :size]
        if size < n
        else np.tile(np.arange(n), (nq, 1))
    )
    cs = -np.take_along_axis(neg, cand, axis=1)
    order = np.lexsort((corpus.id_order[cand], -cs), axis=1)
    cand = np.take_along_axis(cand, order, axis=1)
    cs = np.take_along_axis(cs, order, axis=1).astype(np.float64)
    alive = np.isfinite(cs)
    last = np.maximum(alive.sum(axis=1) - 1, 0)
    finite = np.where(alive, cs, 0.0)
    spread = np.maximum(finite[:, 0] - finite[np.arange(nq), last], 1e-9)
    lam = diversity * spread[:, None]
    gram = corpus.gram(gram_bytes)
    if gram is None:
        return _mmr(corpus, cand, cs, alive, lam, limits, duplicate_similarity)
    out, unsure = _mmr_gram(corpus, gram, cand, cs, alive.copy(), lam, limits, duplicate_similarity)
    redo = np.flatnonzero(unsure)
    if len(redo):
        again = _mmr(
            corpus, cand[redo], cs[redo], alive[redo], lam[redo], limits[redo], duplicate_similarity
        )
        for qi, picks in zip(redo.tolist(), again, strict=True):
            out[qi] = picks
    return out


def _mmr(
    corpus: Corpus,
    cand: np.ndarray,
    cs: np.ndarray,
    alive: np.ndarray,
    lam: np.ndarray,
    limits: np.ndarray,
    dup: float,
) -> list[list[int]]:
    """Maximal marginal relevance over each row's candidates ``cand`` (scores ``cs``,
    best first, ``alive`` where finite), with their vectors' pairwise similarities."""
    nq, size = cand.shape
    out: list[list[int]] = [[] for _ in range(nq)]
    sims = np.empty((nq, size, size), dtype=np.float32)
    step = max(1, GATHER_BYTES // (size * corpus.vectors.shape[1] * 4))
    for lo in range(0, nq, step):  # the candidates' vectors, a few rows at a time
        vecs = corpus.vectors[cand[lo : lo + step]]
        np.matmul(vecs, vecs.transpose(0, 2, 1), out=sims[lo : lo + step])
    groups = corpus.title_groups[cand]
    sims[groups[:, :, None] == groups[:, None, :]] = 1.0
    rows = np.arange(nq)
    penalty = np.zeros_like(cs)
    taken = np.zeros(cs.shape, dtype=bool)
    count = np.zeros(nq, dtype=np.int64)
    for _ in range(size):
        active = (count < limits) & alive.any(axis=1)
        if not active.any():
            break
        mmr = np.where(alive, cs - lam * penalty, -np.inf)
        j = mmr.argmax(axis=1)  # the first maximum: the lower id among equals
        alive[rows[active], j[active]] = False
        sim_j = sims[rows, j]
        take = active & ~(taken & (sim_j >= dup)).any(axis=1)
        for qi in np.flatnonzero(take).tolist():
            out[qi].append(int(cand[qi, j[qi]]))
        taken[rows[take], j[take]] = True
        penalty[take] = np.maximum(penalty[take], np.clip(sim_j[take], 0.0, None))
        count += take
    return out


def _mmr_gram(
    corpus: Corpus,
    gram: np.ndarray,
    cand: np.ndarray,
    cs: np.ndarray,
    alive: np.ndarray,
    lam: np.ndarray,
    limits: np.ndarray,
    duplicate_similarity: float,
) -> tuple[list[list[int]], np.ndarray]:
    """``_mmr`` with the similarities read from the edition's Gram matrix, which
    differ from the candidates' own products by rounding only (``gram_error``).

    A row where a choice could go the other way by that much (a near tie between the
    best two candidates, a similarity that close to ``duplicate_similarity``) is
    marked unsure, to be done again by ``_mmr``; every other row's picks are those
    ``_mmr`` makes."""
    nq, size = cand.shape
    dup = np.float32(duplicate_similarity)  # as ``sim >= dup`` compares
    err = gram_error(corpus.vectors.shape[1])
    margin = np.where(lam > 0, 2 * err * lam + 1e-12, -1.0)[:, 0]
    rows = np.arange(nq)
    base = np.where(alive, cs, -np.inf)  # the scores of the candidates still alive
    left = alive.sum(axis=1)
    penalty = np.zeros_like(cs)
    taken = np.zeros(cs.shape, dtype=bool)
    count = np.zeros(nq, dtype=np.int64)
    unsure = np.zeros(nq, dtype=bool)
    picked = np.full((size, nq), -1, dtype=np.int64)
    steps = 0
    with np.errstate(invalid="ignore"):
        for _ in range(size):
            active = (count < limits) & (left > 0) & ~unsure
            if not active.any():
                break
            mmr = base - lam * penalty  # as np.where(alive, cs - lam * penalty, -inf)
            j = mmr.argmax(axis=1)
            best = mmr[rows, j]
            mmr[rows, j] = -np.inf
            unsure |= active & (best - mmr.max(axis=1) <= margin)
            base[rows[active], j[active]] = -np.inf
            left -= active
            cj = cand[rows, j]
            sim_j = gram[cj[:, None], cand]
            # The most similar pick decides whether this one is a near-duplicate.
            closest = np.where(taken, sim_j, -np.inf).max(axis=1)
            unsure |= active & (np.abs(closest - dup) <= err)
            take = active & ~(closest >= dup)
            picked[steps] = np.where(take, cj, -1)
            steps += 1
            taken[rows, j] |= take
            np.maximum(penalty, sim_j, out=penalty, where=take[:, None])  # sims below 0 count as 0
            count += take
    out = [[d for d in row if d >= 0] for row in picked[:steps].T.tolist()]
    return out, unsure


def gram_error(dim: int) -> float:
    """A bound on the difference between two float32 dot products of the same two unit
    vectors of ``dim`` numbers summed in different orders: each is within
    dim x 2^-24 / (1 - dim x 2^-24) of the true value (and the norms within 1e-6 of 1)."""
    u = dim * 2.0**-24
    return 2.0 * u / (1.0 - u) * 1.01

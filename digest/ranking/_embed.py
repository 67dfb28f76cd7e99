"""The offline embedding model: wordllama's static 256-dim embeddings, shipped in its wheel."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DigestError

log = logging.getLogger(__name__)

_lock = threading.RLock()
_model: Any = None
_plain_tokenizer: Any = None


class ModelError(DigestError):
    """The embedding model could not be loaded."""


def _load() -> Any:
    # wordllama calls logging.basicConfig() when imported; keep the root logger as it was.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import wordllama
        from wordllama import WordLlama
    except ImportError as exc:
        raise ModelError(
            "the wordllama package is not installed; run: pip install 'wordllama>=0.3.9,<0.5'"
        ) from exc
    finally:
        for h in list(root.handlers):
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
    try:
        model = WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    except Exception as exc:  # the loader raises plain exceptions of many kinds
        raise ModelError(
            f"cannot load the wordllama embedding model offline ({exc}); "
            "reinstall the wordllama package"
        ) from exc
    log.debug("loaded wordllama embeddings %s", model.embedding.shape)
    return model


def model() -> Any:
    """The shared model, loaded once per process."""
    global _model
    with _lock:
        if _model is None:
            _model = _load()
            _model.embedding = _compact(_model.embedding)
        return _model


def _compact(table: np.ndarray) -> np.ndarray:
    """The embedding table in float16 when that loses nothing (wordllama ships float16
    weights and widens them): half the memory, and values widened again when gathered, so
    every sum is the same as with the float32 table."""
    half = table.astype(np.float16)
    return half if np.array_equal(half.astype(table.dtype), table) else table


def _tokenizer() -> Any:
    """The model's tokenizer, set to neither pad nor truncate (wordllama pads every batch).

    Set in place rather than copied: a copy (through its JSON form) costs about 40 MB, and
    nothing here uses wordllama's own ``embed``, the only user of its padding."""
    global _plain_tokenizer
    with _lock:
        if _plain_tokenizer is None:
            tok = model().tokenizer
            tok.no_padding()
            tok.no_truncation()
            _plain_tokenizer = tok
        return _plain_tokenizer


_CHUNK_CACHE_LIMIT = 500_000
_chunk_ids: dict[str, list[int]] = {}


def token_ids(text: str) -> list[int]:
    """The model's token ids for ``text``.

    The tokenizer never merges across whitespace, so each whitespace-separated chunk is
    tokenized once and remembered; runs of spaces count as one.
    """
    out: list[int] = []
    cache = _chunk_ids
    for chunk in text.split():
        ids = cache.get(chunk)
        if ids is None:
            if len(cache) >= _CHUNK_CACHE_LIMIT:
                cache.clear()
            ids = list(_tokenizer().encode(chunk, add_special_tokens=False).ids)
            cache[chunk] = ids
        out.extend(ids)
    return out


_GATHER_TOKENS = 8192  # token vectors gathered at once: 8 MB, whatever the texts' length


def token_sums(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sum of token embeddings and number of tokens of each text, in chunks of about
    ``_GATHER_TOKENS`` tokens, so that no large (tokens x 256) array is ever built."""
    table = model().embedding
    out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
    ids = [token_ids(t) for t in texts]
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    if not texts:
        return out, lens
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lens.sum()))
    np.clip(flat, 0, table.shape[0] - 1, out=flat)
    ends = np.cumsum(lens)
    starts = ends - lens
    lo = 0
    while lo < len(ids):
        hi = max(int(np.searchsorted(ends, starts[lo] + _GATHER_TOKENS, side="right")), lo + 1)
        rows = np.flatnonzero(lens[lo:hi]) + lo
        lo = hi
        if not len(rows):
            continue
        base = starts[rows[0]]
        # Widened to float32 and turned (dim, tokens) in one pass, so that each text's
        # sum runs along contiguous rows: the numbers reduceat gives down the columns of
        # (tokens, dim), many times faster.
        gathered = np.asarray(table[flat[base : ends[rows[-1]]]].T, dtype=np.float32, order="C")
        out[rows] = np.add.reduceat(gathered, starts[rows] - base, axis=1).T
    return out, lens


def embed(texts: Sequence[str]) -> np.ndarray:
    """Mean-pooled token embeddings, float32, shape (len(texts), 256), not normalized: the
    vectors of ``WordLlama.embed`` (up to runs of spaces)."""
    sums, lens = token_sums(texts)
    return sums / np.maximum(lens, 1)[:, None]


class PartCache:
    """Embeddings of texts made of parts (interests, keywords), pooled over all their tokens.

    Each part's token sum and count is remembered, so a part shared by many profiles (a
    common keyword, a preset interests text) is tokenized once per run. ``known`` maps
    more texts to their (token sum, count), looked up first: the edition's papers, whose
    texts are the liked papers' texts.
    """

    def __init__(
        self, size: int = 50_000, known: Mapping[str, tuple[np.ndarray, int]] | None = None
    ) -> None:
        self.size = size
        self._parts: dict[str, tuple[np.ndarray, int]] = {}
        self._known: Mapping[str, tuple[np.ndarray, int]] = known if known is not None else {}

    def embed(self, groups: Sequence[Sequence[str]]) -> np.ndarray:
        """One mean-pooled vector per group of parts."""
        parts, known = self._parts, self._known
        todo = list(
            dict.fromkeys(t for g in groups for t in g if t not in parts and t not in known)
        )
        if todo:
            if len(parts) + len(todo) > self.size:
                parts.clear()  # and every part of these groups made again
                todo = list(dict.fromkeys(t for g in groups for t in g if t not in known))
            sums, lens = token_sums(todo)
            parts.update(zip(todo, zip(sums, lens.tolist(), strict=True), strict=True))
        dim = model().embedding.shape[1]
        out = np.zeros((len(groups), dim), dtype=np.float32)
        found = [parts.get(t) or known[t] for g in groups for t in g]
        if not found:
            return out
        # Each group's parts summed one after the other (as np.sum over them does), for
        # all groups at once; then divided by the group's token count, in float32.
        sizes = np.fromiter(map(len, groups), dtype=np.int64, count=len(groups))
        full = np.flatnonzero(sizes)
        sizes = sizes[full]
        starts = np.cumsum(sizes) - sizes
        vecs = np.stack([v for v, _ in found])
        sums = vecs[starts]
        for j in range(1, int(sizes.max())):
            more = np.flatnonzero(sizes > j)
            sums[more] += vecs[starts[more] + j]
        counts = np.add.reduceat(np.fromiter((c for _, c in found), dtype=np.int64), starts)
        out[full] = sums / np.maximum(counts, 1).astype(np.float32)[:, None]
        return out


def unit(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)

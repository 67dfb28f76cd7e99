"""The offline embedding model: wordllama's static 256-dim embeddings, shipped in its wheel."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DigestError

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
        return _model


def _tokenizer() -> Any:
    """The model's tokenizer without padding (wordllama's own copy pads every batch)."""
    global _plain_tokenizer
    with _lock:
        if _plain_tokenizer is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(model().tokenizer.to_str())
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


def embed(texts: Sequence[str], chunk: int = 64) -> np.ndarray:
    """Mean-pooled token embeddings, float32, shape (len(texts), 256), not normalized.

    The vectors of ``WordLlama.embed`` (up to runs of spaces), computed in small chunks so
    that no (texts x tokens x 256) array is ever built.
    """
    table = model().embedding
    out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
    if not texts:
        return out
    ids = [token_ids(t) for t in texts]
    lens = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64, count=int(lens.sum()))
    np.clip(flat, 0, table.shape[0] - 1, out=flat)
    ends = np.cumsum(lens)
    starts = ends - lens
    for lo in range(0, len(ids), chunk):
        hi = min(lo + chunk, len(ids))
        rows = np.flatnonzero(lens[lo:hi]) + lo
        if not len(rows):
            continue
        base = starts[rows[0]]
        gathered = table[flat[base : ends[rows[-1]]]]
        out[rows] = np.add.reduceat(gathered, starts[rows] - base, axis=0)
    out /= np.maximum(lens, 1)[:, None]
    return out


def unit(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)

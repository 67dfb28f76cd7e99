"""The offline embedding model: wordllama's static 256-dim embeddings, shipped in its wheel."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DigestError

log = logging.getLogger(__name__)

_lock = threading.Lock()
_model: Any = None


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


def embed(texts: Sequence[str]) -> np.ndarray:
    """Mean-pooled token embeddings, float32, shape (len(texts), 256), not normalized."""
    if not texts:
        return np.zeros((0, 256), dtype=np.float32)
    out = model().embed(list(texts), norm=False, batch_size=256)
    return np.asarray(out, dtype=np.float32)


def unit(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)

"""Token sums: the same numbers as gathering each text's token vectors as rows and summing
down the columns (the plain way), for real paper texts of every length."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from digest.ranking import _embed as embed

EVAL = Path(__file__).parent / "data" / "eval"


def plain_sums(texts: list[str]) -> np.ndarray:
    table = embed.model().embedding
    out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
    for i, text in enumerate(texts):
        ids = np.clip(np.asarray(embed.token_ids(text), dtype=np.int64), 0, table.shape[0] - 1)
        if len(ids):
            rows = table[ids].astype(np.float32)
            out[i] = np.add.reduceat(rows, [0], axis=0)[0]
    return out


def test_token_sums_equal_the_plain_sums() -> None:
    lines = (EVAL / "papers.jsonl").read_text(encoding="utf-8").splitlines()[:300]
    texts = [json.loads(line)["abstract"] for line in lines]
    texts += ["", "   ", "speech", "a b c", texts[0] * 60]  # empty, short, longer than a chunk
    sums, lens = embed.token_sums(texts)
    assert np.array_equal(sums, plain_sums(texts))
    assert lens.tolist() == [len(embed.token_ids(t)) for t in texts]
    assert lens[-1] > 8192


def test_part_cache_pools_parts_in_order() -> None:
    parts = embed.PartCache()
    groups = [["graph neural networks"], ["speech", "robot learning", "speech"], [], ["x"]]
    got = parts.embed(groups)
    for group, row in zip(groups, got, strict=True):
        if not group:
            assert not row.any()
            continue
        found = [embed.token_sums([t]) for t in group]
        total = np.sum([s[0] for s, _ in found], axis=0)
        count = sum(int(n[0]) for _, n in found)
        assert np.array_equal(row, total / max(count, 1))


def test_part_cache_full_starts_again() -> None:
    parts = embed.PartCache(size=3)
    first = parts.embed([["alpha beta"], ["gamma"]])
    again = parts.embed([["alpha beta"], ["gamma", "delta"], ["epsilon"]])  # over the size
    assert np.array_equal(again[0], first[0])
    assert np.array_equal(
        again, embed.PartCache().embed([["alpha beta"], ["gamma", "delta"], ["epsilon"]])
    )

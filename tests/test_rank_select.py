"""The diversity step reads the papers' similarities from the edition's Gram matrix where it
can; picks, order, scores and reasons must be exactly those made with the candidates' own
similarity products (tests/data/eval: real arXiv papers, plus exact and near copies)."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from digest.config import Ranking
from digest.models import Keyword, Paper, Profile
from digest.ranking import Ranker
from digest.ranking._select import gram_error

EVAL = Path(__file__).parent / "data" / "eval"
NOW = datetime(2025, 7, 5, 7, 0, tzinfo=UTC)


def edition() -> list[Paper]:
    """400 real papers, 30 of them again under another id (same text: equal scores, equal
    vectors) and 30 with another title (near copies that are not the same title)."""
    lines = (EVAL / "papers.jsonl").read_text(encoding="utf-8").splitlines()[:400]
    rows = [json.loads(line) for line in lines]
    papers = [
        Paper(
            id=r["id"], title=r["title"], abstract=r["abstract"], categories=tuple(r["categories"])
        )
        for r in rows
    ]
    rng = random.Random(3)
    copies = [
        dataclasses.replace(p, id=f"url:copy{i}") for i, p in enumerate(rng.sample(papers, 30))
    ]
    retitled = [
        dataclasses.replace(p, id=f"url:retitled{i}", title=f"{p.title} (extended version)")
        for i, p in enumerate(rng.sample(papers, 30))
    ]
    return papers + copies + retitled


def readers(count: int) -> list[Profile]:
    taxonomy = json.loads((EVAL / "taxonomy.json").read_text(encoding="utf-8"))
    codes = sorted(c for c, e in taxonomy.items() if e["description"])
    rng = random.Random(5)
    out = []
    for i in range(count):
        entry = taxonomy[codes[i % len(codes)]]
        words = [taxonomy[c]["name"].split()[0].lower() for c in rng.sample(codes, 2)]
        out.append(
            Profile(
                email=f"r{i}@example.org",
                interests=f"{entry['name']}. {entry['description']}" if i % 7 else "",
                keywords=tuple(Keyword(w) for w in words) if i % 2 else (),
                max_papers=rng.choice((3, 5, 10, 15)),
            )
        )
    return out


def picks(ranker: Ranker, papers: list[Paper], profiles: list[Profile]) -> list[object]:
    corpus = ranker.prepare(papers, NOW)
    return [
        [(s.paper.id, s.score, s.reasons) for s in row]
        for row in ranker.rank_many(corpus, profiles, top=None)
    ]


@pytest.mark.parametrize(
    "weights",
    [Ranking(), Ranking(diversity=0.0), Ranking(diversity=1.0, duplicate_similarity=0.5)],
)
def test_gram_picks_are_the_exact_picks(weights: Ranking) -> None:
    papers, profiles = edition(), readers(300)
    exact = picks(Ranker(weights, gram_bytes=0), papers, profiles)
    assert picks(Ranker(weights), papers, profiles) == exact
    assert any(row for row in exact)


def test_gram_error_bounds_the_difference() -> None:
    ranker = Ranker(Ranking())
    corpus = ranker.prepare(edition(), NOW)
    gram = corpus.gram()
    assert gram is not None
    rng = np.random.default_rng(0)
    err = gram_error(corpus.vectors.shape[1])
    worst = 0.0
    for _ in range(20):
        cand = rng.choice(len(corpus), size=(16, 58), replace=True)
        vecs = corpus.vectors[cand]
        sims = np.matmul(vecs, vecs.transpose(0, 2, 1))
        same = corpus.title_groups[cand][:, :, None] == corpus.title_groups[cand][:, None, :]
        diff = np.abs(np.where(same, 1.0, sims) - gram[cand[:, :, None], cand[:, None, :]])
        worst = max(worst, float(diff.max()))
    assert worst <= err
    assert err < 1e-4


def test_large_editions_have_no_gram() -> None:
    corpus = Ranker(Ranking()).prepare(edition()[:50], NOW)
    assert corpus.gram(limit=50 * 50 * 4 - 1) is None
    gram = corpus.gram()
    assert gram is not None
    assert gram.shape == (50, 50)
    assert np.all(np.diag(gram) == 1.0)

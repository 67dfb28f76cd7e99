"""Ranking many profiles: what a ``Ranker`` keeps between batches and runs (queries, shared
query parts, reasons per query text, the edition's Gram matrix) never changes a pick, a score
or a reason (tests/data/eval: real arXiv papers and the arXiv category descriptions)."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from digest.config import Ranking
from digest.models import Keyword, Paper, Profile
from digest.ranking import Ranker
from digest.ranking import _lexical as lexical
from digest.ranking._text import stems

EVAL = Path(__file__).parent / "data" / "eval"
NOW = datetime(2025, 7, 5, 7, 0, tzinfo=UTC)


def edition() -> list[Paper]:
    lines = (EVAL / "papers.jsonl").read_text(encoding="utf-8").splitlines()[:500]
    rng = random.Random(11)
    out = []
    for line in lines:
        r = json.loads(line)
        out.append(
            Paper(
                id=r["id"],
                title=r["title"],
                abstract=r["abstract"],
                authors=("Ada Lovelace", "Alan Turing")
                if rng.random() < 0.1
                else ("Grace Hopper",),
                categories=tuple(r["categories"]),
                upvotes=rng.choice((None, 1, 7, 300)),
                published=NOW - timedelta(hours=rng.uniform(2, 96)),
            )
        )
    return out


def readers(papers: list[Paper]) -> list[Profile]:
    """Profiles as many subscribers write them, several sharing an interests text."""
    taxonomy = json.loads((EVAL / "taxonomy.json").read_text(encoding="utf-8"))
    codes = sorted(c for c, e in taxonomy.items() if e["description"])[:12]
    rng = random.Random(13)
    out = []
    for i in range(400):
        code = rng.choice(codes)
        entry = taxonomy[code]
        words = [taxonomy[c]["name"].split()[0].lower() for c in rng.sample(codes, 2)]
        out.append(
            Profile(
                email=f"r{i}@example.org",
                interests=f"{entry['name']}. {entry['description']}",
                keywords=tuple(Keyword(w) for w in words) if rng.random() < 0.5 else (),
                authors=("A. Turing",) if rng.random() < 0.2 else (),
                categories=(code,) if rng.random() < 0.3 else (),
                category_mode="restrict" if rng.random() < 0.1 else "boost",
                exclude=("survey", "cs.CV") if rng.random() < 0.1 else (),
                liked=tuple(p.id for p in rng.sample(papers, 2)) if rng.random() < 0.1 else (),
                max_papers=rng.choice((5, 8, 10, 12)),
            )
        )
    return out


def rows(
    ranker: Ranker, papers: list[Paper], profiles: list[Profile]
) -> list[list[tuple[str, float, tuple[str, ...]]]]:
    corpus = ranker.prepare(papers, NOW)
    by_id = {p.id: p for p in papers}
    liked = {p.email: [by_id[i] for i in p.liked if i in by_id] for p in profiles if p.liked}
    seen = {p.email: {papers[i].id for i in range(0, len(papers), 37)} for p in profiles[::5]}
    return [
        [(s.paper.id, s.score, s.reasons) for s in picks]
        for picks in ranker.rank_many(corpus, profiles, seen=seen, liked_papers=liked)
    ]


def test_what_a_ranker_keeps_changes_nothing() -> None:
    papers = edition()
    profiles = readers(papers)
    fresh = rows(Ranker(Ranking()), papers, profiles)
    ranker = Ranker(Ranking())
    assert rows(ranker, papers, profiles) == fresh
    assert rows(ranker, papers, profiles) == fresh  # queries, parts and reasons kept
    # Renamed subscribers share the queries and reasons of the first ones.
    renamed = [dataclasses.replace(p, email=f"x{p.email}", name="X") for p in profiles]
    assert rows(ranker, papers, renamed) == fresh
    exact = rows(Ranker(Ranking(), gram_bytes=0), papers, profiles)
    assert exact == fresh
    assert sum(map(len, fresh)) > 2000  # some left out by the relevance floor
    reasons = {r for row in fresh for _, _, why in row for r in why}
    assert any(r.startswith("matches ") for r in reasons)
    assert any(r.startswith("by ") for r in reasons)
    assert any(r.startswith("in ") for r in reasons)
    assert any(r.endswith("upvotes") for r in reasons)


def test_a_new_edition_gets_its_own_reasons() -> None:
    papers = edition()
    profiles = readers(papers)[:60]
    ranker = Ranker(Ranking())
    rows(ranker, papers[:300], profiles)
    later = rows(ranker, papers[200:], profiles)
    assert later == rows(Ranker(Ranking()), papers[200:], profiles)


def test_reasons_follow_each_query_text() -> None:
    """Two subscribers with the same interests, one with a keyword too, in one batch: each
    gets the "matches" reason of their own words for the same paper."""
    lines = (Path(__file__).parent / "data" / "rank" / "papers.jsonl").read_text().splitlines()
    papers = [
        Paper(id=r["id"], title=r["title"], abstract=r["abstract"]) for r in map(json.loads, lines)
    ]
    whisper = "2506.21576"  # Adapting Whisper for ... code-switching speech recognition
    plain = Profile(email="a@example.org", interests="speech recognition")
    keyed = dataclasses.replace(plain, email="b@example.org", keywords=(Keyword("whisper"),))
    ranker = Ranker(Ranking())
    corpus = ranker.prepare(papers, NOW)
    for order in ([plain, keyed, plain], [keyed, plain, keyed]):
        got = {}
        for profile, picks in zip(order, ranker.rank_many(corpus, order), strict=True):
            why = {s.paper.id: s.reasons for s in picks}
            got[profile.email] = why[whisper][0]
        assert got == {
            "a@example.org": "matches 'speech recognition'",
            "b@example.org": "matches 'whisper', 'speech recognition'",
        }


def test_followed_authors_absent_from_the_edition_in_a_batch() -> None:
    """A batch where one subscriber follows an author of the edition and others follow
    only authors who are not in it ranks as each of them alone would."""
    papers = edition()[:60]
    base = readers(papers)[0]
    profiles = [
        dataclasses.replace(base, email="present@example.org", authors=("A. Turing",)),
        dataclasses.replace(base, email="absent@example.org", authors=("Nobody Here",)),
        dataclasses.replace(base, email="both@example.org", authors=("N. Here", "G. Hopper")),
        dataclasses.replace(base, email="none@example.org", authors=()),
    ]
    ranker = Ranker(Ranking())
    corpus = ranker.prepare(papers, NOW)
    together = [
        [(s.paper.id, s.score, s.reasons) for s in picks]
        for picks in ranker.rank_many(corpus, profiles)
    ]
    alone = [
        [(s.paper.id, s.score, s.reasons) for s in Ranker(Ranking()).rank(corpus, p)]
        for p in profiles
    ]
    assert together == alone
    assert any(r.startswith("by ") for _, _, why in together[0] for r in why)
    assert not any(r.startswith("by ") for _, _, why in together[1] for r in why)


def test_rows_kept_per_edition_are_bounded() -> None:
    papers = edition()[:80]
    base = readers(papers)[0]
    ranker = Ranker(Ranking())
    corpus = ranker.prepare(papers, NOW)
    codes = sorted({c for p in papers for c in p.categories})
    profiles = [
        dataclasses.replace(
            base,
            email=f"r{i}@example.org",
            authors=("Grace Hopper", f"Author {i}"),
            categories=(codes[i % len(codes)], f"x.{i}"),
        )
        for i in range(5000)
    ]
    for i in range(0, len(profiles), 500):
        list(ranker.rank_many(corpus, profiles[i : i + 500]))
    assert 0 < len(corpus._author_rows) <= 4096
    assert 0 < len(corpus._category_rows) <= 4096


def test_phrases_kept_per_edition_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    papers = edition()[:120]
    docs = [(p.title, p.abstract) for p in papers]
    pairs = [s for p in papers for s in zip(stems(p.title), stems(p.title)[1:], strict=False)]
    keys = list(dict.fromkeys(f"{a} {b}" for a, b in pairs))[:40]
    expected = lexical.LexicalIndex.build(docs)
    want = {k: expected.phrase(k) for k in keys}
    monkeypatch.setattr(lexical, "_PHRASES_KEPT", 8)
    index = lexical.LexicalIndex.build(docs)
    for k in keys * 2:
        rows, tf, idf = index.phrase(k)
        assert np.array_equal(rows, want[k][0]) and np.array_equal(tf, want[k][1])
        assert idf == want[k][2]
        assert all(index.matches(k, d) for d in rows.tolist())
        assert len(index._phrases) <= 8 and len(index._phrase_docs) <= 8
    assert sum(len(want[k][0]) for k in keys) >= 40  # the phrases are found

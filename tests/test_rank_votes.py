"""The vote model: votes, liked and disliked papers move the ranking, reasons name the
voted paper behind a pick, no votes rank as before, and the relevance floor."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from digest.config import Ranking
from digest.models import Keyword, Paper, Profile
from digest.ranking import Ranker, _ranker
from digest.ranking._votes import Pool, examples
from digest.subscribers import load_profile

from .test_rank import BY_ID, DATA, NOW, PAPERS, SPEECH_TOKENS, TTS, WHISPER, ids, position

SEGMENTATION = "semantic segmentation of images"
MODEL = Ranking(relevance_floor=0.0)  # the vote model on its own (the floor: below)


def profile(**kw: object) -> Profile:
    return dataclasses.replace(Profile(email="reader@example.org"), **kw)


def outside(paper: Paper) -> Paper:
    """The same paper as if from an earlier edition (not in today's)."""
    return dataclasses.replace(paper, id=f"old-{paper.id}")


def test_no_votes_rank_as_before() -> None:
    new, old = Ranker(MODEL), Ranker(MODEL.model_copy(update={"vote_model": False}))
    corpus_new, corpus_old = new.prepare(PAPERS, NOW), old.prepare(PAPERS, NOW)
    prof = profile(interests=SEGMENTATION, max_papers=20)
    a = new.rank(corpus_new, prof, votes=[])
    b = old.rank(corpus_old, prof)
    assert [(s.paper.id, s.score, s.reasons) for s in a] == [
        (s.paper.id, s.score, s.reasons) for s in b
    ]


def test_up_votes_pull_neighbours_up_and_are_named() -> None:
    ranker = Ranker(MODEL)
    corpus = ranker.prepare(PAPERS, NOW)
    prof = profile(interests=SEGMENTATION)
    everything = len(PAPERS)
    before = ranker.rank(corpus, prof, top=everything)
    tts = outside(BY_ID[TTS])
    after = ranker.rank(corpus, prof, top=everything, votes=[(tts, 1)])
    assert position(after, SPEECH_TOKENS) < position(before, SPEECH_TOKENS)
    named = [s for s in after if f"like '{tts.title}' that you voted up" in s.reasons]
    assert named
    # Up and down votes together fit the ridge part; the voted-down side sinks.
    seg = [s.paper for s in before[:3]]
    votes = [(tts, 1), (outside(BY_ID[WHISPER]), 1)] + [(outside(p), -1) for p in seg]
    mixed = ranker.rank(corpus, prof, top=everything, votes=votes)
    assert position(mixed, SPEECH_TOKENS) < position(before, SPEECH_TOKENS)
    assert sum(position(mixed, p.id) for p in seg) > sum(position(before, p.id) for p in seg)


def test_a_paper_voted_on_is_not_sent() -> None:
    ranker = Ranker(MODEL)
    corpus = ranker.prepare(PAPERS, NOW)
    prof = profile(interests="speech recognition")
    picks = ranker.rank(corpus, prof, top=len(PAPERS), votes=[(BY_ID[WHISPER], 1)])
    assert WHISPER not in ids(picks)


def test_rank_many_takes_votes_by_email() -> None:
    ranker = Ranker(MODEL)
    corpus = ranker.prepare(PAPERS, NOW)
    a = profile(email="a@example.org", interests=SEGMENTATION)
    b = profile(email="b@example.org", interests=SEGMENTATION)
    votes = {"a@example.org": [(outside(BY_ID[TTS]), 1), (outside(PAPERS[0]), -1)]}
    got = list(ranker.rank_many(corpus, [a, b], votes=votes, top=10))
    assert got[1] == ranker.rank(corpus, b, top=10)
    assert got[0] == ranker.rank(corpus, a, top=10, votes=votes["a@example.org"])
    assert ids(got[0]) != ids(got[1])


def test_liked_and_disliked_files_are_votes(tmp_path: Path) -> None:
    bib = (DATA / "liked.bib").read_text(encoding="utf-8")
    (tmp_path / "liked.bib").write_text(bib, encoding="utf-8")
    (tmp_path / "disliked.bib").write_text(bib, encoding="utf-8")
    path = tmp_path / "reader.toml"
    path.write_text(
        f'email = "reader@example.org"\ninterests = "{SEGMENTATION}"\nliked_file = "liked.bib"\n',
        encoding="utf-8",
    )
    liked = load_profile(path)
    path.write_text(
        'email = "reader@example.org"\n'
        f'interests = "{SEGMENTATION}"\n'
        'disliked_file = "disliked.bib"\n'
        'disliked = ["2506.21576"]\n',
        encoding="utf-8",
    )
    disliked = load_profile(path)
    assert disliked.disliked_texts == liked.liked_texts and disliked.disliked == (WHISPER,)
    ranker = Ranker(MODEL)
    corpus = ranker.prepare(PAPERS, NOW)
    everything = len(PAPERS)
    plain = ranker.rank(corpus, dataclasses.replace(liked, liked_texts=()), top=everything)
    up = ranker.rank(corpus, liked, top=everything)
    down = ranker.rank(corpus, disliked, top=everything, disliked_papers=[BY_ID[WHISPER]])
    near = SPEECH_TOKENS  # a speech paper, close to the papers of the .bib file
    assert position(up, near) < position(plain, near)
    assert near not in ids(down) or position(down, near) >= position(plain, near)
    pick = up[position(up, near)]
    assert any(r.startswith("like '") and r.endswith("that you liked") for r in pick.reasons)
    assert WHISPER not in ids(down)


def test_examples_keep_the_last_word_and_the_latest() -> None:
    a, b, c = PAPERS[:3]
    prof = profile(liked_texts=(("T", "A"),))
    papers, values, sources = examples(prof, [(a, 1), (b, -1), (a, -1), (c, 1)], [], [], 3)
    assert [Pool.key(p) for p in papers] == [b.id, a.id, c.id]
    assert values == [-1, -1, 1]
    assert len(sources) == 3


FLOOR = Ranking(relevance_floor_papers=len(PAPERS))  # the shipped floor, on this edition too


def test_relevance_floor_sends_fewer_on_a_quiet_day() -> None:
    ranker = Ranker(FLOOR)
    corpus = ranker.prepare(PAPERS, NOW)
    plain = Ranker(MODEL)
    corpus_plain = plain.prepare(PAPERS, NOW)
    # Nothing in this edition is about proteins: ten papers without the floor, few with it.
    prof = profile(interests="protein folding and molecular dynamics", max_papers=10)
    assert len(plain.rank(corpus_plain, prof)) == 10
    quiet = ranker.rank(corpus, prof)
    assert len(quiet) <= 3
    # A followed author's paper, or one that matches a keyword, always clears it.
    followed = dataclasses.replace(prof, authors=("Sébastien Müller",))
    assert "2506.21835" in ids(ranker.rank(corpus, followed))
    keyword = dataclasses.replace(prof, keywords=(Keyword("semantic segmentation"),))
    matched = [s for s in ranker.rank(corpus, keyword) if "semantic segmentation" in s.reasons[0]]
    assert len(matched) >= 3
    # Above the floor, the order and the scores are the same; a busy topic loses little.
    full = plain.rank(corpus_plain, profile(interests="speech recognition", max_papers=10))
    kept = ranker.rank(corpus, profile(interests="speech recognition", max_papers=10))
    assert 5 <= len(kept) < len(full)
    assert kept == [s for s in full if s.paper.id in ids(kept)]


def test_a_small_edition_is_sent_without_the_floor() -> None:
    prof = profile(interests="protein folding and molecular dynamics", max_papers=10)
    small = Ranker(Ranking(relevance_floor_papers=len(PAPERS) + 1))
    assert len(small.rank(small.prepare(PAPERS, NOW), prof)) == 10
    floor = Ranker(FLOOR)
    assert len(floor.rank(floor.prepare(PAPERS, NOW), prof)) < 10


def test_a_profile_with_votes_and_no_pick() -> None:
    ranker = Ranker(FLOOR.model_copy(update={"relevance_floor": 0.99}))
    corpus = ranker.prepare(PAPERS, NOW)
    a = profile(email="a@example.org", interests=SEGMENTATION)
    b = profile(email="b@example.org", interests="protein folding")
    votes = {p.email: [(outside(BY_ID[TTS]), 1)] for p in (a, b)}
    assert list(ranker.rank_many(corpus, [a, b], votes=votes)) == [[], []]


def test_papers_voted_on_beyond_the_embedding_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache of papers' embeddings that fills up while the voted papers are embedded
    (some of them in the edition, some not) gives the same ranking as a large one."""
    votes = [(p, 1 if i % 3 else -1) for i, p in enumerate(PAPERS[::4])]
    votes += [
        (dataclasses.replace(outside(p), title=f"{p.title}, extended"), 1) for p in PAPERS[1:12:2]
    ]
    prof = profile(interests=SEGMENTATION)
    large = Ranker(MODEL)
    expected = large.rank(large.prepare(PAPERS, NOW), prof, votes=votes)
    monkeypatch.setattr(_ranker, "_PAPER_CACHE_SIZE", len(PAPERS) + 3)
    small = Ranker(MODEL)
    assert small.rank(small.prepare(PAPERS, NOW), prof, votes=votes) == expected

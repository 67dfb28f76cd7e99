"""Ranking behaviour on a small set of real arXiv papers (tests/data/rank/papers.jsonl)."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest.config import Ranking
from digest.models import Keyword, Paper, Profile, Scored
from digest.ranking import Corpus, Ranker
from digest.ranking._text import author_key, author_keys, phrase_key, stems
from digest.subscribers import load_profile

DATA = Path(__file__).parent / "data" / "rank"
NOW = datetime(2025, 7, 5, 7, 0, tzinfo=UTC)

WHISPER = "2506.21576"  # Adapting Whisper for ... code-switching speech recognition
WHISPER_COPY = "url:5c1e2a9d0b7f4e31"  # the same paper as a second source carries it
PROSAM = "2506.21835"  # a segmentation paper by Sébastien Müller
TTS = "2506.22023"  # autoregressive speech synthesis
SPEECH_TOKENS = "2506.22362"  # DiffSoundStream: speech tokenization via diffusion decoding


def load_papers() -> list[Paper]:
    papers = []
    for line in (DATA / "papers.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        papers.append(
            Paper(
                id=rec["id"],
                title=rec["title"],
                abstract=rec["abstract"],
                authors=tuple(rec["authors"]),
                categories=tuple(rec["categories"]),
                upvotes=rec.get("upvotes"),
            )
        )
    return papers


PAPERS = load_papers()
BY_ID = {p.id: p for p in PAPERS}


@pytest.fixture(scope="module")
def ranker() -> Ranker:
    # The ranking itself, every paper in order (the relevance floor: test_rank_votes.py).
    return Ranker(Ranking(relevance_floor=0.0))


@pytest.fixture(scope="module")
def corpus(ranker: Ranker) -> Corpus:
    return ranker.prepare(PAPERS, NOW)


def profile(**kw: object) -> Profile:
    return dataclasses.replace(Profile(email="reader@example.org"), **kw)


def ids(picks: list[Scored]) -> list[str]:
    return [s.paper.id for s in picks]


def position(picks: list[Scored], pid: str) -> int:
    return ids(picks).index(pid) if pid in ids(picks) else len(picks)


def paper_text(p: Paper) -> str:
    return " " + " ".join(stems(f"{p.title} {p.abstract}")) + " "


def test_reasons_name_what_matched(ranker: Ranker, corpus: Corpus) -> None:
    prof = profile(
        interests="Multilingual speech recognition for code-switching",
        keywords=(Keyword("Whisper", 2.0), Keyword("speech enhancement")),
    )
    picks = ranker.rank(corpus, prof, top=6)
    assert WHISPER in ids(picks)[:2]
    whisper = picks[position(picks, WHISPER)]
    # The keyword first, then the interests' most telling words or phrases.
    assert whisper.reasons[0] == "matches 'Whisper', 'code-switching', 'speech recognition'"
    for s in picks:
        assert s.reasons, f"{s.paper.id} picked without a reason"
        for reason in s.reasons:
            if reason.startswith("matches "):
                # Every quoted term really occurs in the paper (stemmed, as a phrase).
                for term in re.findall(r"'([^']+)'", reason):
                    assert f" {phrase_key(term)} " in paper_text(s.paper), (term, s.paper.id)
            elif reason.endswith("upvotes") or reason.endswith("upvote"):
                assert reason.split()[0] == str(s.paper.upvotes)
    # The phrase is honoured: 'speech enhancement' is named only where the words are adjacent.
    enhancement = [s for s in picks if "'speech enhancement'" in " ".join(s.reasons)]
    assert enhancement and all(" speech enhanc " in paper_text(s.paper) for s in enhancement)


def test_upvotes_are_a_reason_and_a_bounded_boost(ranker: Ranker, corpus: Corpus) -> None:
    popular = BY_ID["2506.21951"]  # speech quality, 212 upvotes
    picks = ranker.rank(corpus, profile(interests="semantic segmentation of images"), top=5)
    assert popular.id not in ids(picks)  # popularity alone does not make a paper relevant
    picks = ranker.rank(corpus, profile(interests="speech quality assessment"), top=3)
    assert picks[0].paper.id == popular.id
    assert "212 upvotes" in picks[0].reasons


def test_excluded_term_vetoes(ranker: Ranker, corpus: Corpus) -> None:
    prof = profile(interests="image generation and restoration", max_papers=15)
    before = ranker.rank(corpus, prof)
    assert any(" diffus " in paper_text(s.paper) for s in before)
    after = ranker.rank(corpus, dataclasses.replace(prof, exclude=("Diffusion",)))
    assert after
    assert not any(" diffus " in paper_text(s.paper) for s in after)
    # A phrase vetoes only where its words are adjacent.
    phrase = ranker.rank(corpus, dataclasses.replace(prof, exclude=("federated learning",)))
    assert "2506.21735" not in ids(phrase)  # "Equitable Federated Learning with NCA"
    assert not any(" feder learn " in paper_text(s.paper) for s in phrase)


def test_excluded_category_vetoes(ranker: Ranker, corpus: Corpus) -> None:
    prof = profile(interests="attacks on large language models, jailbreaks", max_papers=10)
    assert any("cs.CL" in s.paper.categories for s in ranker.rank(corpus, prof))
    after = ranker.rank(corpus, dataclasses.replace(prof, exclude=("cs.CL",)))
    assert after
    assert not any("cs.CL" in s.paper.categories for s in after)


def test_followed_author_is_boosted_and_named(ranker: Ranker, corpus: Corpus) -> None:
    prof = profile(interests="speech recognition and speech synthesis", max_papers=5)
    assert PROSAM not in ids(ranker.rank(corpus, prof))
    for spelling in ("Sebastien Muller", "Müller, Sébastien", "S. Müller"):
        picks = ranker.rank(corpus, dataclasses.replace(prof, authors=(spelling,)))
        assert PROSAM in ids(picks), spelling
        pick = picks[ids(picks).index(PROSAM)]
        assert "by Sébastien Müller (followed)" in pick.reasons
    other = ranker.rank(corpus, dataclasses.replace(prof, authors=("Sébastien Martin",)))
    assert PROSAM not in ids(other)


def test_author_names_are_normalized() -> None:
    key = author_key("Yann LeCun")
    assert key == author_key("LeCun, Yann") == author_key("yann lecun") == author_key("LECUN, Yann")
    assert author_key("José Álvarez") == author_key("Jose Alvarez")
    assert author_key("Yann LeCun") != author_key("Ann LeCun")
    # a full given name is that name; an initial ("Y.", "JP", "J.-P.") is an initial
    assert key in author_keys("Yann LeCun") and key not in author_keys("Y. LeCun")
    assert author_key("Y. LeCun") in author_keys("Yann LeCun") == author_keys("LeCun, Yann")
    assert author_key("Xiao-Qian Wu") == author_key("Xiaoqian Wu")
    assert author_key("JP Dupont") == author_key("J.-P. Dupont") == author_key("J. Dupont")
    assert author_key("Jean-Pierre Dupont") not in author_keys("Jean Dupont")
    assert author_keys("Martin Luther King Jr.") == author_keys("King, Martin")
    assert author_keys("Madonna") == (author_key("Madonna"),) == ("madonna",)


def follow(ranker: Ranker, authors: tuple[str, ...], *names: str) -> dict[str, list[str]]:
    """Each paper by one of ``names`` (papers of this edition otherwise) with its
    "followed" reasons, for a subscriber following ``authors``."""
    mine = [
        dataclasses.replace(p, id=f"26{i:02d}.00001", authors=(name, "Someone Else"))
        for i, (p, name) in enumerate(zip(PAPERS, names, strict=False))
    ]
    prof = profile(interests="speech recognition", authors=authors, max_papers=100, min_score=0)
    picks = ranker.rank(ranker.prepare([*mine, *PAPERS[len(mine) :]], NOW), prof)
    return {
        s.paper.authors[0]: [r for r in s.reasons if r.endswith("(followed)")]
        for s in picks
        if s.paper in mine
    }


def test_a_full_given_name_follows_that_person_only(ranker: Ranker) -> None:
    names = ("Xiaoqian Wu", "Xiangyu Wu", "Xintao Wu", "X. Wu", "Wu, Xiaoqian", "Xiao-Qian Wu")
    got = follow(ranker, ("Xiaoqian Wu",), *names)
    followed = {name for name, why in got.items() if why}
    assert followed == {"Xiaoqian Wu", "Wu, Xiaoqian", "Xiao-Qian Wu"}
    assert got["Wu, Xiaoqian"] == ["by Wu, Xiaoqian (followed)"]
    # written with an initial, every given name it starts is followed, once per paper
    got = follow(ranker, ("X. Wu", "Xiaoqian Wu"), *names)
    assert {name for name, why in got.items() if why} == set(names)
    assert all(len(why) == 1 for why in got.values() if why)


def test_liked_paper_pulls_its_neighbours_up(ranker: Ranker, corpus: Corpus) -> None:
    prof = profile(interests="semantic segmentation of images")
    everything = len(PAPERS)
    before = ranker.rank(corpus, prof, top=everything)
    liked = dataclasses.replace(prof, liked=(TTS,))
    after = ranker.rank(corpus, liked, liked_papers=[BY_ID[TTS]], top=everything)
    assert TTS not in ids(after)  # the liked paper itself is not sent again
    assert position(after, SPEECH_TOKENS) < position(before, SPEECH_TOKENS)
    lifted = [s for s in after if f"like '{BY_ID[TTS].title}' that you liked" in s.reasons]
    assert lifted
    assert all(BY_ID[TTS].title in " ".join(s.reasons) for s in lifted)
    # The interests' best matches stay at the top.
    assert set(ids(before)[:2]) <= set(ids(after)[:3])


def test_liked_file_from_bibtex(ranker: Ranker, corpus: Corpus, tmp_path: Path) -> None:
    shutil.copy(DATA / "liked.bib", tmp_path / "library.bib")
    path = tmp_path / "reader.toml"
    path.write_text(
        'email = "reader@example.org"\n'
        'interests = "semantic segmentation of images"\n'
        'liked_file = "library.bib"\n',
        encoding="utf-8",
    )
    prof = load_profile(path)
    titles = [t for t, _ in prof.liked_texts]
    assert len(titles) == 2
    assert titles[0].startswith("IndexTTS2: A Breakthrough")
    everything = len(PAPERS)
    before = ranker.rank(corpus, dataclasses.replace(prof, liked_texts=()), top=everything)
    after = ranker.rank(corpus, prof, top=everything)
    # Liked papers are up votes for the vote model: their neighbours move up, named.
    assert position(after, SPEECH_TOKENS) < position(before, SPEECH_TOKENS)
    pick = after[position(after, SPEECH_TOKENS)]
    assert any(r.startswith("like '") and r.endswith("that you liked") for r in pick.reasons)
    assert any(t in r for r in pick.reasons for t in titles)


def test_liked_only_profile(ranker: Ranker, corpus: Corpus) -> None:
    prof = profile(liked=(WHISPER,))
    picks = ranker.rank(corpus, prof, liked_papers=[BY_ID[WHISPER]], top=3)
    assert WHISPER not in ids(picks)
    assert WHISPER_COPY not in ids(picks)  # same title: the reader has it already
    # The closest neighbour: code-switching speech recognition with Whisper.
    assert picks[0].paper.id == "2506.22143"
    assert f"like '{BY_ID[WHISPER].title}' that you liked" in picks[0].reasons


def test_seen_papers_are_never_picked(ranker: Ranker, corpus: Corpus) -> None:
    prof = profile(interests="speech", max_papers=5)
    first = ids(ranker.rank(corpus, prof))
    second = ids(ranker.rank(corpus, prof, seen=set(first)))
    assert second and not set(first) & set(second)
    assert ranker.rank(corpus, prof, seen={p.id for p in PAPERS}) == []


def test_ties_are_broken_by_id_whatever_the_input_order() -> None:
    lexical_only = Ranker(
        Ranking(semantic_weight=0.0, feedback=0.0, diversity=0.0, popularity_weight=0.0)
    )
    papers = [
        Paper(id=f"2401.0000{i}", title=f"Study {name}", abstract="Zebra stripes and heat.")
        for i, name in zip((3, 1, 4, 2), ("alpha", "gamma", "delta", "omega"), strict=True)
    ]
    papers.append(Paper(id="2401.00009", title="Unrelated", abstract="Ocean tides and moons."))
    prof = profile(keywords=(Keyword("zebra"),), max_papers=10)
    orders = []
    for seed in range(4):
        shuffled = papers[:]
        random.Random(seed).shuffle(shuffled)
        picks = lexical_only.rank(lexical_only.prepare(shuffled, NOW), prof)
        assert len({s.score for s in picks[:4]}) == 1  # a real four-way tie
        orders.append(ids(picks))
    assert all(o == orders[0] for o in orders)
    assert orders[0][:4] == ["2401.00001", "2401.00002", "2401.00003", "2401.00004"]


def test_restrict_mode_keeps_only_those_categories(ranker: Ranker, corpus: Corpus) -> None:
    prof = profile(interests="semantic segmentation", categories=("cs.RO",), max_papers=10)
    boosted = ranker.rank(corpus, prof)
    assert any("cs.RO" not in s.paper.categories for s in boosted)
    assert any("in cs.RO" in s.reasons for s in boosted)
    restricted = ranker.rank(corpus, dataclasses.replace(prof, category_mode="restrict"))
    assert restricted
    assert all("cs.RO" in s.paper.categories for s in restricted)
    assert restricted[0].paper.id == "2506.21630"  # off-road pathway segmentation
    # An alias counts as its canonical category.
    alias = ranker.rank(
        corpus, dataclasses.replace(prof, categories=("cs.SY",), category_mode="restrict")
    )
    assert alias and all("eess.SY" in s.paper.categories for s in alias)


def test_min_score_threshold(ranker: Ranker, corpus: Corpus) -> None:
    prof = profile(interests="speech recognition", max_papers=20)
    everything = ranker.rank(corpus, prof)
    floor = everything[len(everything) // 3].score
    kept = ranker.rank(corpus, dataclasses.replace(prof, min_score=floor))
    assert 0 < len(kept) < len(everything)
    assert all(s.score >= floor for s in kept)
    assert ranker.rank(corpus, dataclasses.replace(prof, min_score=1000.0)) == []


def test_near_duplicates_are_not_both_picked(corpus: Corpus) -> None:
    prof = profile(interests="Whisper code-switching speech recognition", max_papers=10)
    for diversity in (0.0, 0.15):
        ranker = Ranker(Ranking(diversity=diversity))
        picks = ids(ranker.rank(ranker.prepare(PAPERS, NOW), prof))
        assert (WHISPER in picks) != (WHISPER_COPY in picks)
    # With a different title the embeddings still see the copy.
    retitled = [
        dataclasses.replace(p, title="Soft prompts for code-switched ASR")
        if p.id == WHISPER_COPY
        else p
        for p in PAPERS
    ]
    ranker = Ranker(Ranking(diversity=0.0))
    picks = ids(ranker.rank(ranker.prepare(retitled, NOW), prof))
    assert (WHISPER in picks) != (WHISPER_COPY in picks)


def test_picks_are_best_first_and_limited(ranker: Ranker, corpus: Corpus) -> None:
    prof = profile(interests="robot manipulation", max_papers=4)
    picks = ranker.rank(corpus, prof)
    assert len(picks) == 4
    assert [s.score for s in picks] == sorted((s.score for s in picks), reverse=True)
    assert len(ranker.rank(corpus, prof, top=7)) == 7


def test_rank_many_agrees_with_rank(ranker: Ranker, corpus: Corpus) -> None:
    profiles = [
        profile(email="a@example.org", interests="speech synthesis"),
        profile(email="b@example.org", interests="jailbreak attacks", exclude=("cs.CV",)),
        profile(email="c@example.org", keywords=(Keyword("segmentation"),), max_papers=3),
    ]
    seen = {"a@example.org": {TTS}}
    many = list(ranker.rank_many(corpus, profiles, seen=seen, batch=2))
    one = [ranker.rank(corpus, p, seen=seen.get(p.email, ())) for p in profiles]
    assert [ids(x) for x in many] == [ids(x) for x in one]
    assert [[s.reasons for s in x] for x in many] == [[s.reasons for s in x] for x in one]
    assert TTS not in ids(many[0])


def test_freshness_prefers_the_newer_of_equals() -> None:
    ranker = Ranker(Ranking(semantic_weight=0.0, feedback=0.0, diversity=0.0))
    old, new = (
        Paper(
            id=pid,
            title=f"Zebra {word}",
            abstract="Zebra stripes.",
            published=NOW - timedelta(days=age),
        )
        for pid, word, age in (("2401.00001", "study", 9), ("2401.00002", "notes", 0))
    )
    picks = ranker.rank(ranker.prepare([old, new], NOW), profile(keywords=(Keyword("zebra"),)))
    assert ids(picks) == ["2401.00002", "2401.00001"]


def test_empty_edition(ranker: Ranker) -> None:
    empty = ranker.prepare([], NOW)
    assert ranker.rank(empty, profile(interests="anything")) == []

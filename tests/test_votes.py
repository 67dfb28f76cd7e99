"""Votes end to end: recorded in the database (``Store.set_vote``, ``digest vote``), kept in
the subscriber file (``liked`` / ``disliked`` and the BibTeX files), read by a run
(``Picker``) with the voted papers' text from the store, learned from by the ranking, and
listed by ``digest subscribers --show``."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from digest.cli import main
from digest.config import Ranking, load
from digest.models import Profile
from digest.ranking import Picker, Ranker
from digest.store import Store
from digest.subscribers import load_profile, subscriber_votes
from digest.subscribers._roster import _flat, _profile

from .conftest import ROOT, write_config
from .test_rank import BY_ID, NOW, PAPERS, SPEECH_TOKENS, TTS, WHISPER, ids, position

EDITION = date(2025, 6, 30)
EARLIER = [p for p in PAPERS if p.id in (TTS, WHISPER)]  # papers of an earlier edition
TODAY = [p for p in PAPERS if p not in EARLIER and not p.id.startswith("url:")]
SEGMENTATION = "semantic segmentation of images"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    s.upsert_papers(EARLIER, NOW - timedelta(days=3))
    s.upsert_papers(TODAY, NOW)
    yield s
    s.close()


def test_a_run_reads_the_votes_from_the_store(store: Store) -> None:
    ranker = Ranker(Ranking(relevance_floor=0.0))
    picker = Picker(ranker, store, EDITION, TODAY, NOW)
    reader = Profile(email="Reader@Example.org", interests=SEGMENTATION, max_papers=40)
    other = Profile(email="other@example.org", interests=SEGMENTATION, max_papers=40)
    before = picker.pick(reader)
    # Votes are kept by lower-cased address; papers voted on need not be in the edition.
    store.set_vote("reader@example.org", TTS, 1, NOW - timedelta(days=2), source="web")
    store.set_vote("reader@example.org", "2401.99999", -1, NOW, source="web")  # not stored
    many = picker.pick_many([reader, other])
    assert many[1] == before  # the other reader has no votes
    after = picker.pick(reader)
    assert after == many[0]
    assert position(after, SPEECH_TOKENS) < position(before, SPEECH_TOKENS)
    named = f"like '{BY_ID[TTS].title}' that you voted up"
    assert any(named in s.reasons for s in after)
    # The same as the ranker given the votes directly: the store adds nothing else.
    direct = ranker.rank(picker.corpus, reader, votes=[(BY_ID[TTS], 1)])
    assert direct == after
    # A vote on a paper of this edition: that paper is not sent (the reader has seen it).
    voted = after[0].paper.id
    store.set_vote("reader@example.org", voted, 1, NOW)
    assert voted not in ids(picker.pick(reader))
    # Cleared, the ranking is as it was.
    for pid in (TTS, "2401.99999", voted):
        store.set_vote("reader@example.org", pid, 0, NOW)
    assert picker.pick(reader) == before


def test_file_votes_need_no_database_and_off_means_ignored(store: Store) -> None:
    reader = Profile(
        email="reader@example.org",
        interests=SEGMENTATION,
        liked=(TTS,),  # not in this edition: read from the store
        disliked=(TODAY[0].id,),  # in it: never sent
        max_papers=40,
    )
    picker = Picker(Ranker(Ranking(relevance_floor=0.0)), store, EDITION, TODAY, NOW)
    picks = picker.pick(reader)
    assert TODAY[0].id not in ids(picks)
    assert any(f"like '{BY_ID[TTS].title}' that you liked" in s.reasons for s in picks)
    store.set_vote("reader@example.org", WHISPER, 1, NOW)
    off = Picker(Ranker(Ranking(relevance_floor=0.0, vote_model=False)), store, EDITION, TODAY, NOW)
    plain = dataclasses.replace(reader, disliked=())
    assert off.pick(reader) == off.pick(plain)  # votes and disliked papers ignored


def test_the_roster_keeps_every_path(tmp_path: Path) -> None:
    p = Profile(
        email="a@example.org",
        liked_file=tmp_path / "a.bib",
        disliked_file=tmp_path / "b.bib",
        disliked=("2401.00001",),
        path=tmp_path / "a.toml",
    )
    assert _profile(_flat(p)) == p


@pytest.fixture
def project(tmp_path: Path) -> Path:
    cfg = write_config(tmp_path)
    for path in (ROOT / "demo" / "subscribers").glob("*.toml"):
        shutil.copy(path, tmp_path / "subscribers" / path.name)
    bib = (ROOT / "tests" / "data" / "rank" / "liked.bib").read_text(encoding="utf-8")
    (tmp_path / "subscribers" / "not-for-me.bib").write_text(bib, encoding="utf-8")
    chloe = tmp_path / "subscribers" / "chloe-speech-audio.toml"
    chloe.write_text(
        chloe.read_text(encoding="utf-8")
        + f'liked = ["{TTS}"]\ndisliked = ["2401.00002"]\ndisliked_file = "not-for-me.bib"\n',
        encoding="utf-8",
    )
    store = Store(load(cfg).database_url)
    store.upsert_papers(PAPERS, NOW)
    store.close()
    return cfg


def test_digest_vote_and_subscribers_show(project: Path) -> None:
    c = ("--config", str(project))
    out = cli("vote", "Chloe@Example.org", f"https://arxiv.org/abs/{WHISPER}v2", "up", *c)
    assert out.exit_code == 0, out.output
    assert f"chloe@example.org: voted up: {WHISPER} ({BY_ID[WHISPER].title})" in out.output
    assert cli("vote", "chloe@example.org", "2401.00001", "down", *c).exit_code == 0
    out = cli("vote", "chloe@example.org", "2401.00003", "down", *c)
    assert "2401.00003 is not in the database yet" in out.output  # kept: counts once fetched
    assert cli("vote", "chloe@example.org", "2401.00003", "clear", *c).exit_code == 0
    bad = cli("vote", "chloe@example.org", WHISPER, "sideways", *c)
    assert bad.exit_code == 2

    store = Store(load(project).database_url)
    try:
        assert {k: v for k, (v, _) in store.votes("chloe@example.org").items()} == {
            WHISPER: 1,
            "2401.00001": -1,
        }
        profile = load_profile(project.parent / "subscribers" / "chloe-speech-audio.toml")
        listed = [(v.value, v.paper_id, v.where) for v in subscriber_votes(profile, store)]
    finally:
        store.close()
    assert listed[:2] == [(1, TTS, "liked"), (-1, "2401.00002", "disliked")]
    assert [w for _, _, w in listed[2:-2]] == ["disliked_file"] * (len(listed) - 4)
    assert listed[-2:] == [(1, WHISPER, "database"), (-1, "2401.00001", "database")]

    out = cli("subscribers", "--show", "chloe@example.org", *c)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0] == "chloe@example.org (Chloé)"
    assert f"votes: 2 up, {len(listed) - 2} down" in out.output
    assert any(line.split()[:3] == ["up", "vote", WHISPER] for line in lines)
    assert any(line.split()[:3] == ["up", "liked", TTS] for line in lines)
    assert any(line.split()[:2] == ["down", "disliked_file"] for line in lines)
    data = json.loads(cli("subscribers", "--show", "chloe@example.org", "--json", *c).output)
    assert data["votes"][-1] == {
        "vote": "down",
        "id": "2401.00001",
        "title": None,
        "from": "database",
        "at": data["votes"][-1]["at"],
    }
    assert data["votes"][0]["title"] == BY_ID[TTS].title

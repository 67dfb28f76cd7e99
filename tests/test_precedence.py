"""Which feed's value a paper keeps when several feeds carry it: arXiv for its text, the
Hugging Face API for its popularity and code, each feed's `trust` for the rest, whatever
order the feeds come in. Feeds served by a real HTTP server on loopback, fetched by the real
fetch_all into a real database."""

from __future__ import annotations

import itertools
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from digest.config import Feed, load
from digest.models import Paper
from digest.sources import fetch_all
from digest.sources._precedence import official_for
from digest.store import Precedence, Store

from .conftest import DATA, FEEDS

T0 = datetime(2024, 10, 15, 6, 0, tzinfo=UTC)
PID = "2410.09732"
ARXIV = (DATA / "arxiv-api-handmade-2410.09732.atom").read_bytes()


def hf_feed(github: str | None) -> bytes:
    """The Hugging Face snapshot of that day, the paper's code link set (or not)."""
    doc: list[dict[str, Any]] = json.loads(
        (FEEDS / "hf-daily-papers-2024-10-15.json").read_text(encoding="utf-8")
    )
    for entry in doc:
        if entry["paper"]["id"] == PID:
            entry["paper"]["githubRepo"] = github
    return json.dumps(doc).encode()


STRANGER = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "papers, improved",
        "items": [
            {
                "id": f"https://arxiv.org/abs/{PID}",
                "url": f"https://arxiv.org/abs/{PID}",
                "title": "A better title, says a stranger",
                "content_text": "Authors: A. Stranger, B. Stranger Upvotes: 987654 Summary: "
                + "A replacement abstract, much longer than the real one. " * 40
                + "Code: https://github.com/stranger/not-the-code",
                "tags": ["cs.FAKE"],
                "image": "https://stranger.example/thumb.png",
            }
        ],
    }
).encode()

FEED_TABLES = {
    "arxiv": 'official = "arxiv"\n',  # a loopback url: say what it stands for
    "hf": 'official = "huggingface"\n',
    "stranger": "",  # nobody's official source, default trust
}


def project(tmp_path: Path, server: HTTPServer, order: tuple[str, ...]) -> Path:
    text = '[sender]\naddress = "digest@example.org"\n[http]\nretries = 0\n'
    for name in order:
        text += f'\n[[feeds]]\nname = "{name}"\nurl = "{server.url_for("/" + name)}"\n'
        text += FEED_TABLES[name]
    (tmp_path / "subscribers").mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def fetched(config: Path, when: datetime = T0) -> Paper:
    cfg = load(config)
    store = Store(cfg.database_url)
    try:
        summary = fetch_all(cfg, store, lambda: when)
        assert not summary.errors, summary.errors
        [paper] = store.get_papers([PID])
        return paper
    finally:
        store.close()


@pytest.mark.parametrize("order", list(itertools.permutations(["arxiv", "hf", "stranger"])))
def test_a_feed_nobody_trusts_cannot_overwrite_the_paper(
    httpserver: HTTPServer, tmp_path: Path, order: tuple[str, ...]
) -> None:
    """A third-party feed reusing an arXiv id used to replace the abstract, set upvotes to
    987654 and put its own code link in, depending on the order the feeds came in."""
    httpserver.expect_request("/arxiv").respond_with_data(ARXIV)
    httpserver.expect_request("/hf").respond_with_data(
        hf_feed("https://github.com/opendatalab/LOKI")
    )
    httpserver.expect_request("/stranger").respond_with_data(STRANGER)
    paper = fetched(project(tmp_path, httpserver, order))
    assert paper.title.startswith("LOKI: A Comprehensive Synthetic Data Detection Benchmark")
    assert paper.abstract.startswith("With the rapid development of AI-generated content")
    assert len(paper.authors) == 15 and "A. Stranger" not in paper.authors
    assert paper.categories == ("cs.CV", "cs.AI")  # arXiv's own, no cs.FAKE
    assert paper.upvotes == 44 and paper.comments == 1  # the Hugging Face API's
    assert paper.code_url == "https://github.com/opendatalab/LOKI"
    assert paper.published == datetime(2024, 10, 13, 5, 26, 36, tzinfo=UTC)
    assert paper.sources == ("arxiv", "hf", "stranger")
    # fetched again later, the stranger still changes nothing the others hold
    again = fetched(project(tmp_path, httpserver, ("stranger",)), T0 + timedelta(hours=6))
    assert (again.abstract, again.upvotes, again.code_url) == (
        paper.abstract,
        paper.upvotes,
        paper.code_url,
    )


@pytest.mark.parametrize("stranger_first", [True, False])
def test_the_official_source_saying_none_is_not_overruled(
    httpserver: HTTPServer, tmp_path: Path, stranger_first: bool
) -> None:
    """The Hugging Face API lists the paper without a code link: a stranger's link is not
    kept, whichever came first."""
    httpserver.expect_request("/hf").respond_with_data(hf_feed(None))
    httpserver.expect_request("/stranger").respond_with_data(STRANGER)
    order = ("stranger", "hf") if stranger_first else ("hf", "stranger")
    paper = fetched(project(tmp_path, httpserver, order))
    assert paper.code_url is None and paper.upvotes == 44
    # without an official source for them, the stranger's values fill what is empty
    assert paper.thumbnail is not None


def test_trust_decides_between_feeds_no_official_source_speaks_for(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    low, high = Precedence(trust=10), Precedence(trust=90)

    def paper(who: str) -> Paper:
        return Paper(
            id="url:0123456789abcdef",
            title=f"Title from {who}",
            abstract=f"Abstract from {who}, " + "x" * (100 if who == "low" else 10),
            thumbnail=f"https://{who}.example/t.png",
            ai_summary=f"Summary from {who}",
            upvotes=1 if who == "low" else 2,
            sources=(who,),
        )

    try:
        for first, second in ((low, high), (high, low)):
            store.upsert_papers([paper("low" if first is low else "high")], T0, first)
            store.upsert_papers([paper("low" if second is low else "high")], T0, second)
            [p] = store.get_papers(["url:0123456789abcdef"])
            assert p.title == "Title from high" and p.abstract.startswith("Abstract from high")
            assert p.thumbnail == "https://high.example/t.png" and p.upvotes == 2
            assert p.ai_summary == "Summary from high"
            with sqlite3.connect(tmp_path / "digest.db") as conn:
                conn.execute("DELETE FROM paper")
    finally:
        store.close()


def test_between_equals_the_old_rules_hold(tmp_path: Path) -> None:
    """Same standing: the latest upvotes, the longer abstract, every category, the first
    title; and a row stored before ranks were kept ranks as a feed of the default trust."""
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    pid = "2406.00001"
    try:
        store.upsert_papers(
            [Paper(id=pid, title="First", abstract="short", categories=("cs.CL",), upvotes=3)],
            T0,
        )
        store.upsert_papers(
            [Paper(id=pid, title="Second", abstract="a longer one", categories=("cs.AI",))],
            T0 + timedelta(hours=1),
        )
        store.upsert_papers([Paper(id=pid, title="Third", upvotes=40)], T0 + timedelta(hours=2))
        [p] = store.get_papers([pid])
        assert (p.title, p.abstract, p.categories, p.upvotes) == (
            "First",
            "a longer one",
            ("cs.CL", "cs.AI"),
            40,
        )
        with sqlite3.connect(tmp_path / "digest.db") as conn:  # as a database made before
            conn.execute("UPDATE paper SET field_ranks = NULL")
        store.upsert_papers([Paper(id=pid, title="T", abstract="low")], T0, Precedence(trust=40))
        assert store.get_papers([pid])[0].abstract == "a longer one"
        store.upsert_papers([Paper(id=pid, title="T", abstract="high")], T0, Precedence(trust=60))
        assert store.get_papers([pid])[0].abstract == "high"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "official", "kind"),
    [
        ("https://rss.arxiv.org/rss/cs.LG", "auto", "arxiv"),
        ("https://export.arxiv.org/api/query?id_list=1", "auto", "arxiv"),
        ("http://arxiv.org/a/x", "auto", "arxiv"),
        ("https://huggingface.co/api/daily_papers", "auto", "huggingface"),
        ("https://huggingface.co/papers", "auto", ""),  # a page, not the API
        ("https://arxiv.org.evil.example/rss", "auto", ""),
        ("https://mirror.example/hf.json", "auto", ""),
        ("/srv/feeds/arxiv.xml", "auto", ""),
        ("/srv/feeds/arxiv.xml", "arxiv", "arxiv"),
        ("https://rss.arxiv.org/rss/cs.LG", "none", ""),
    ],
)
def test_which_feeds_are_official(url: str, official: str, kind: str) -> None:
    assert official_for(Feed(name="f", url=url, official=official)) == kind  # type: ignore[arg-type]

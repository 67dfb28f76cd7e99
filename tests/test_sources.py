"""Parsing every fixture into papers (checked against tests/data/expected/), normalization,
and the merge of one paper seen in a Hugging Face feed and in an arXiv feed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from digest.errors import FeedError
from digest.models import Paper
from digest.sources import arxiv_id, paper_json, parse, url_id
from digest.sources._text import clean, github_url, html_text
from digest.store import Store

DATA = Path(__file__).parent / "data"
FEEDS = DATA / "feeds"
EXPECTED = DATA / "expected"
HANDMADE = DATA / "arxiv-api-handmade-2410.09732.atom"
FIXTURES = [*sorted(p for p in FEEDS.iterdir() if p.name != "SOURCES.md"), HANDMADE]
CANONICAL = re.compile(r"^(?:\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)?/\d{7}|url:[0-9a-f]{16})$")


def _parse(path: Path, **kw: Any) -> list[Paper]:
    return parse(path.read_bytes(), "test", **kw)


def _expected(path: Path) -> dict[str, Any]:
    exp = EXPECTED / f"{path.name}.json"
    assert exp.exists(), f"{path.name} has no expected values in {exp}"
    data: dict[str, Any] = json.loads(exp.read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_fixture_parses_as_expected(path: Path) -> None:
    exp = _expected(path)
    opts = exp.get("options", {})
    if "error" in exp:
        with pytest.raises(FeedError) as err:
            _parse(path, **opts)
        assert str(err.value) == exp["error"].format(source="'test'")
        return
    papers = _parse(path, **opts)
    assert len(papers) == exp["count"]
    assert [p.id for p in papers] == exp["ids"]
    assert [p.title for p in papers] == exp["titles"]
    if "announce_types" in exp:
        types: dict[str, int] = {}
        for p in papers:
            types[p.announce_type or ""] = types.get(p.announce_type or "", 0) + 1
        assert types == exp["announce_types"]
        assert len(_parse(path, skip_replacements=True, **opts)) == exp["count_skip_replacements"]
    by_id = {p.id: p for p in papers}
    for pid, want in exp["papers"].items():
        got = paper_json(by_id[pid])
        for key, value in want.items():
            if key == "abstract_start":
                assert got["abstract"].startswith(value), pid
            elif key == "abstract_end":
                assert got["abstract"].endswith(value), pid
            elif key == "abstract_chars":
                assert len(got["abstract"]) == value, pid
            elif key == "abstract_contains":
                assert all(v in got["abstract"] for v in value), (pid, value)
            else:
                assert got[key] == value, (pid, key)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_every_parsed_paper_is_normalized(path: Path) -> None:
    try:
        papers = parse(path.read_bytes(), "feed-x")
    except FeedError as exc:
        assert "feed-x" in str(exc) and "\n" not in str(exc)
        return
    for p in papers:
        assert CANONICAL.match(p.id), p.id
        assert p.title and p.title == " ".join(p.title.split()) and "<" not in p.title
        assert p.abstract == " ".join(p.abstract.split())
        assert not re.search(r"<(?:script|a|p|b|img)\b", p.abstract)
        assert p.published is None or p.published.utcoffset() == timedelta(0)
        assert p.sources == ("feed-x",)
        assert all(a == " ".join(a.split()) and "\\" not in a for a in p.authors)
        if p.arxiv_id:
            assert p.url == f"https://arxiv.org/abs/{p.id}"
            assert p.pdf_url == f"https://arxiv.org/pdf/{p.id}"
        json.dumps(paper_json(p))


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("https://arxiv.org/abs/2406.01234v2", "2406.01234"),
        ("http://arxiv.org/pdf/2406.01234v1.pdf", "2406.01234"),
        ("oai:arXiv.org:2411.17702v1", "2411.17702"),
        ("arXiv:0704.0001", "0704.0001"),
        ("http://arxiv.org/abs/hep-th/9901001v3", "hep-th/9901001"),
        ("oai:arXiv.org:math/0502287v1", "math/0502287"),
        ("arXiv:math.DG/0211159", "math/0211159"),
        ("https://export.arxiv.org/abs/cond-mat.str-el/0501001", "cond-mat/0501001"),
        ("https://huggingface.co/papers/2410.09732", "2410.09732"),
        ("https://tldr.takara.ai/p/2604.26238", "2604.26238"),
        ("2606.00467", "2606.00467"),
        ("https://example.org/blog/2406.01234", None),
        ("https://example.org/post?id=12", None),
        ("1234.5678", None),  # month 34: not an arXiv id
        ("", None),
    ],
)
def test_arxiv_id(text: str, want: str | None) -> None:
    assert arxiv_id(text) == want


def test_url_id_is_stable_and_short() -> None:
    assert url_id("https://example.org/a") == url_id(" https://example.org/a ")
    assert re.fullmatch(r"url:[0-9a-f]{16}", url_id("https://example.org/a"))
    assert url_id("https://example.org/a") != url_id("https://example.org/b")


def test_html_reduced_to_safe_text() -> None:
    raw = (
        '<p>Hello <b>bold</b> &amp; <a href="x" onclick="evil()">link</a></p>'
        "<script>alert(1)</script><style>p{}</style><br/>next&nbsp;line &lt;tag&gt;"
    )
    assert html_text(raw) == "Hello bold & link next line"
    assert clean("  many\n\n  lines\tand   spaces ") == "many lines and spaces"
    assert clean("x < y and y > z") == "x < y and y > z"  # not markup: kept


def test_github_links() -> None:
    assert github_url("code: github.com/sftekin/h3fusion.") == "https://github.com/sftekin/h3fusion"
    assert github_url("at https://github.com/a/b.git") == "https://github.com/a/b"
    assert github_url("see https://gist.github.com/a/b and x.github.io/y") is None


def test_dates_are_utc() -> None:
    rss = (FEEDS / "arxiv-rss-new-format-2024-11-28-trimmed.xml").read_bytes()
    first = parse(rss, "a")[0]  # pubDate: Thu, 28 Nov 2024 00:00:00 -0500
    assert first.published == datetime(2024, 11, 28, 5, 0, tzinfo=UTC)
    hf = parse((FEEDS / "hf-daily-papers-2024-10-15.json").read_bytes(), "hf")[0]
    assert hf.published == datetime(2024, 10, 13, 5, 26, 36, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<!DOCTYPE html>\n<html><body>Sign in</body></html>", "got an HTML page, not a feed"),
        (b"  <html lang='en'><head></head></html>", "got an HTML page, not a feed"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), "got binary data"),
        (b"", "the response is empty"),
        (b"{not json", "looks like JSON but does not parse"),
        (b'{"error": "Invalid date"}', "the server answered with an error: Invalid date"),
        (b'[{"name": "x"}]', "not Hugging Face papers"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', "without an 'items' list"),
        (b"hello, world", "not an RSS, Atom or JSON feed"),
    ],
)
def test_unusable_input_is_a_one_line_feed_error(body: bytes, words: str) -> None:
    with pytest.raises(FeedError) as err:
        parse(body, "my-feed")
    msg = str(err.value)
    assert msg.startswith("feed 'my-feed': ") and words in msg and "\n" not in msg


def test_json_feed_and_minimal_hf_shapes() -> None:
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [
            {
                "id": "1",
                "url": "https://example.org/p/1",
                "title": "A <i>post</i>",
                "content_html": "<p>Body</p>",
                "date_published": "2024-01-02T03:04:05+02:00",
                "authors": [{"name": "Ann"}],
                "tags": ["ml"],
            },
            {"id": "2", "url": "https://arxiv.org/abs/2401.00001v2", "title": "Paper"},
        ],
    }
    a, b = parse(json.dumps(feed).encode(), "jf")
    assert a.id == url_id("https://example.org/p/1") and a.title == "A post"
    assert a.abstract == "Body" and a.authors == ("Ann",) and a.categories == ("ml",)
    assert a.published == datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert b.id == "2401.00001" and b.url == "https://arxiv.org/abs/2401.00001"
    # a single /api/papers/<id> object, with an upvote count
    one = parse(b'{"id": "2410.09732", "title": "LOKI", "upvotes": 3}', "hf")
    assert [(p.id, p.upvotes, p.hf_url) for p in one] == [
        ("2410.09732", 3, "https://huggingface.co/papers/2410.09732")
    ]


def test_a_feed_cut_short_keeps_what_was_recovered() -> None:
    rss = (FEEDS / "arxiv-rss-new-format-2024-11-28-trimmed.xml").read_bytes()
    half = parse(rss[: len(rss) // 2], "cut")
    assert 20 < len(half) < 68
    assert [p.id for p in half[:-1]] == [p.id for p in parse(rss, "cut")][: len(half) - 1]


def test_fields_packed_into_descriptions_are_read_but_real_text_is_kept() -> None:
    rss = b"""<rss version="2.0"><channel>
    <item><title>A</title><link>https://example.org/a</link><description>&lt;p&gt;&lt;b&gt;Authors:
      &lt;/b&gt; Ann Lee, Bo Chen&lt;/p&gt;&lt;p&gt;&lt;b&gt;Upvotes:&lt;/b&gt; 12&lt;/p&gt;
      &lt;p&gt;&lt;b&gt;Summary:&lt;/b&gt; We study X.&lt;/p&gt;</description></item>
    <item><title>B</title><link>https://example.org/b</link><description>Abstract Short AI summary
      of the paper.  Generated by some-org/some-model We study Y.</description></item>
    <item><title>C</title><link>https://example.org/c</link>
      <description>Abstract Meaning Representation (AMR) is a graph.</description></item>
    </channel></rss>"""
    a, b, c = parse(rss, "x")
    assert (a.authors, a.upvotes, a.abstract) == (("Ann Lee", "Bo Chen"), 12, "We study X.")
    assert (b.ai_summary, b.abstract) == ("Short AI summary of the paper.", "We study Y.")
    assert c.abstract == "Abstract Meaning Representation (AMR) is a graph."


def test_third_party_hugging_face_feeds_link_each_paper_to_its_page() -> None:
    papers = _parse(FEEDS / "thirdparty-hf-papers-rss-huangboming-feedgen-2026-08-08.xml")
    assert papers and all(p.hf_url == f"https://huggingface.co/papers/{p.id}" for p in papers)
    # each signal alone: the feed's own link is Hugging Face's papers page, or the paper
    # carries a Hugging Face paper thumbnail; a feed with neither gets no such link
    item = (
        "<item><title>T</title><link>https://arxiv.org/abs/2608.00001</link>"
        "<description>{img}Words.</description></item>"
    )
    thumb = (
        '&lt;img src="https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/'
        '2608.00001.png"&gt;'
    )
    for link, img, want in (
        ("https://huggingface.co/papers", "", "https://huggingface.co/papers/2608.00001"),
        ("https://example.org/", thumb, "https://huggingface.co/papers/2608.00001"),
        ("https://example.org/", "", None),
    ):
        rss = (
            f"<rss version='2.0'><channel><link>{link}</link>{item.format(img=img)}</channel></rss>"
        )
        (paper,) = parse(rss.encode(), "x")
        assert paper.hf_url == want, (link, img)


def test_skip_replacements() -> None:
    rss = FEEDS / "arxiv-rss-new-format-2024-11-28-trimmed.xml"
    kept = _parse(rss, skip_replacements=True)
    assert {p.announce_type for p in kept} == {"new", "cross"}
    assert len(kept) == 39


def test_paper_json_shape() -> None:
    out = paper_json(_parse(FEEDS / "hf-daily-papers-2024-10-15.json")[0])
    for key in (
        "id",
        "title",
        "abstract",
        "authors",
        "url",
        "categories",
        "published",
        "upvotes",
        "sources",
        "pdf_url",
        "code_url",
        "hf_url",
        "ai_summary",
    ):
        assert key in out
    assert out["published"] == "2024-10-13T05:26:36Z"
    assert out["upvotes"] == 44 and out["sources"] == ["test"]
    assert paper_json(_parse(FEEDS / "arxiv-api-query-2026-06-14.atom")[0])["upvotes"] is None


@pytest.mark.parametrize("hf_first", [True, False])
def test_same_paper_from_hf_and_arxiv_is_one_record(tmp_path: Path, hf_first: bool) -> None:
    hf_bytes = (FEEDS / "hf-daily-papers-2024-10-15.json").read_bytes()
    hf = parse(hf_bytes, "hf-daily")
    arxiv = parse(HANDMADE.read_bytes(), "arxiv-cs")
    day1 = datetime(2024, 10, 15, 6, 0, tzinfo=UTC)
    store = Store(f"sqlite:///{tmp_path / 'digest.db'}")
    try:
        for batch in [hf, arxiv] if hf_first else [arxiv, hf]:
            store.upsert_papers(batch, day1)
        assert store.count_papers() == 19  # the arXiv paper is one of the 19 HF papers
        (loki,) = store.get_papers(["2410.09732"])
        assert loki.sources == ("arxiv-cs", "hf-daily")
        assert loki.upvotes == 44 and loki.comments == 1
        assert loki.categories == ("cs.CV", "cs.AI")
        assert loki.hf_url == "https://huggingface.co/papers/2410.09732"
        assert loki.pdf_url == "https://arxiv.org/pdf/2410.09732"
        assert loki.title.startswith("LOKI: A Comprehensive Synthetic Data Detection")
        assert len(loki.authors) == 15
        assert loki.first_seen == day1
        # later that day the paper is trending: a new fetch updates its popularity only
        doc = json.loads(hf_bytes)
        doc[0]["paper"]["upvotes"], doc[0]["numComments"] = 97, 6
        store.upsert_papers(parse(json.dumps(doc).encode(), "hf-daily"), day1 + timedelta(hours=6))
        (later,) = store.get_papers(["2410.09732"])
        assert (later.upvotes, later.comments) == (97, 6)
        assert later.first_seen == day1
        assert later.sources == ("arxiv-cs", "hf-daily")
        # an arXiv sighting (no popularity) does not erase it
        store.upsert_papers(arxiv, day1 + timedelta(hours=7))
        assert store.get_papers(["2410.09732"])[0].upvotes == 97
    finally:
        store.close()

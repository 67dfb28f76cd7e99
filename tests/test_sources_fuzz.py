"""Property-based tests of the sources and the store: whatever bytes a feed sends (arbitrary
JSON, JSON shaped like the formats we read with values of any type, arbitrary XML, RSS and
Atom with arbitrary elements, attributes and text) and whatever headers a server answers,
parsing gives papers within their limits or a one-line ``FeedError``, and storing those
papers never fails.

Bounded to run in a few seconds in ``make test`` and to be the same examples on every run
(``derandomize``); ``HYPOTHESIS_PROFILE=explore`` tries many more, at random.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.config import Feed, Http
from digest.errors import FeedError
from digest.models import Paper
from digest.sources import Fetcher, parse
from digest.store import Store

settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "explore",
    max_examples=2_000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

T0 = datetime(2026, 6, 12, 7, 0, tzinfo=UTC)

# ------------------------------------------------------------------------ what a paper holds


def check_paper(p: Paper) -> None:
    """Every value of the right type and within the caps, whatever the feed said."""
    assert isinstance(p.id, str) and p.id and len(p.id) <= 300
    for text, cap in ((p.title, 500), (p.abstract, 5_000), (p.url, 2_000)):
        assert isinstance(text, str) and len(text) <= cap
    assert p.title  # a title or, failing that, the link or id
    for link in (p.pdf_url, p.code_url, p.hf_url, p.project_url, p.thumbnail):
        assert link is None or (isinstance(link, str) and 0 < len(link) <= 2_000)
    assert p.ai_summary is None or (isinstance(p.ai_summary, str) and len(p.ai_summary) <= 2_000)
    for values, count, cap in (
        (p.authors, 500, 200),
        (p.categories, 50, 64),
        (p.ai_keywords, 50, 100),
    ):
        assert isinstance(values, tuple) and len(values) <= count
        assert all(isinstance(v, str) and v and len(v) <= cap for v in values)
        assert len(set(values)) == len(values)
    for n in (p.upvotes, p.comments, p.github_stars):
        assert n is None or (type(n) is int and 0 <= n < 2**31)
    if p.published is not None:
        assert p.published.tzinfo is not None
        assert datetime(1900, 1, 1, tzinfo=UTC) <= p.published < datetime(2100, 1, 1, tzinfo=UTC)
    assert p.announce_type is None or len(p.announce_type) <= 64
    assert isinstance(p.sources, tuple) and p.sources


def parsed(data: bytes) -> list[Paper]:
    """``parse`` either gives papers within their limits or raises a one-line FeedError."""
    try:
        papers = parse(data, "fuzz", base_url="http://feeds.example.org/feed")
    except FeedError as exc:
        assert "\n" not in str(exc) and "'fuzz'" in str(exc)
        return []
    for p in papers:
        check_paper(p)
    return papers


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'digest.db'}")
    yield s
    s.close()


def stored(store: Store, papers: list[Paper]) -> None:
    """Storing any papers works, twice (the second time merges), and reads back."""
    store.upsert_papers(papers, T0)
    store.upsert_papers(papers, T0)
    ids = list(dict.fromkeys(p.id for p in papers))
    assert [p.id for p in store.get_papers(ids)] == ids


# ------------------------------------------------------------------------ JSON

# Text with what makes parsers stumble: markup, entities, LaTeX, control characters,
# surrogates are excluded (JSON text must be valid UTF-8).
text = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from(list("<>&;$\\{}\"'\x00\r\n")),
    max_size=40,
)
numbers = (
    st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -1, 2**31, 2**63, 10**30, 1e308, -0.0])
)
dates = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-23:59",
            "0001-01-01T00:00:00+23:59",
            "2024-10-15T00:49:53.656Z",
            "2024-13-45",
            "",
            "Z",
        ]
    ),
    text,
)
scalars = st.none() | st.booleans() | numbers | text | dates
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
ids = st.sampled_from(["2406.01234", "2406.01234v2", "hep-th/9901001", "2410.09732"]) | text
links = (
    st.sampled_from(
        [
            "https://arxiv.org/abs/2406.01234",
            "https://huggingface.co/papers/2406.01234",
            "https://github.com/a/b",
            "javascript:alert(1)",
            "https://example.org/" + "x" * 3_000,
        ]
    )
    | text
)
anything = json_values | ids | links


def shaped(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(required, optional=optional)


hf_inner = shaped(
    {"id": ids, "title": anything},
    {
        "authors": st.lists(shaped({}, {"name": anything, "hidden": anything}) | anything)
        | anything,
        "ai_keywords": st.lists(anything, max_size=5) | anything,
        "upvotes": numbers | anything,
        "githubStars": numbers | anything,
        "publishedAt": dates | anything,
        "summary": anything,
        "ai_summary": anything,
        "githubRepo": links | anything,
        "projectPage": links | anything,
    },
)
hf_entry = shaped(
    {"paper": hf_inner},
    {
        "title": anything,
        "numComments": numbers | anything,
        "thumbnail": links | anything,
        "publishedAt": dates,
    },
)
json_feed_item = shaped(
    {},
    {
        "id": ids | links,
        "url": links,
        "external_url": links,
        "title": anything,
        "content_text": anything,
        "content_html": anything,
        "summary": anything,
        "tags": st.lists(anything, max_size=4) | anything,
        "authors": st.lists(shaped({}, {"name": anything}) | anything, max_size=4) | anything,
        "author": shaped({}, {"name": anything}) | anything,
        "date_published": dates,
        "image": links | anything,
    },
)
json_feed = shaped(
    {"version": st.just("https://jsonfeed.org/version/1.1")},
    {"items": st.lists(json_feed_item | anything, max_size=4) | anything},
)
documents = (
    json_values
    | st.lists(hf_entry | hf_inner, max_size=4)
    | hf_entry
    | hf_inner
    | json_feed
    | shaped({"error": anything}, {})
)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


@given(documents)
def test_any_json_parses_to_sane_papers_that_store(store: Store, doc: Any) -> None:
    stored(store, parsed(dumps(doc)))


@given(st.integers(min_value=1, max_value=5_000), st.sampled_from(["[", '{"a":']))
def test_json_nested_any_depth_is_a_feed_error_or_nothing(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    assert parsed((opener * depth + "1" + closer * depth).encode()) == []


@given(st.integers(min_value=10, max_value=20_000))
def test_integers_of_any_length(digits: int) -> None:
    entry = {"paper": {"id": "2406.01234", "title": "t", "upvotes": "UP"}, "numComments": 1}
    doc = dumps([entry]).replace(b'"UP"', b"7" * digits)
    # up to 4,300 digits: read, out of range, dropped; more: Python's int() refuses, and
    # the feed is a one-line FeedError
    assert all(p.upvotes is None for p in parsed(doc))


# ------------------------------------------------------------------------ XML

TAGS = [
    "rss",
    "channel",
    "item",
    "feed",
    "entry",
    "title",
    "link",
    "description",
    "summary",
    "content",
    "author",
    "name",
    "dc:creator",
    "category",
    "guid",
    "id",
    "pubDate",
    "published",
    "updated",
    "arxiv:announce_type",
    "arxiv:comment",
    "content:encoded",
    "img",
    "x",
]
NAMESPACES = (
    ' xmlns="http://www.w3.org/2005/Atom" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    ' xmlns:arxiv="http://arxiv.org/schemas/atom"'
    ' xmlns:content="http://purl.org/rss/1.0/modules/content/"'
)
attr_names = st.sampled_from(["href", "rel", "type", "term", "scheme", "src", "version", "a"])
xml_text = text | links | dates | st.sampled_from(["arXiv:2406.01234v1 Announce Type: new"])


@st.composite
def xml_element(draw: Any, depth: int = 0) -> str:
    tag = draw(st.sampled_from(TAGS))
    attrs = draw(st.dictionaries(attr_names, xml_text, max_size=3))
    attr_text = "".join(f" {k}={quoteattr(v)}" for k, v in attrs.items())
    parts = []
    for _ in range(draw(st.integers(0, 3 if depth < 4 else 0))):
        if draw(st.booleans()):
            parts.append(draw(xml_element(depth + 1)))
        else:
            value = draw(xml_text)
            parts.append(
                f"<![CDATA[{value.replace(']]>', '')}]]>" if draw(st.booleans()) else escape(value)
            )
    return f"<{tag}{attr_text}>{''.join(parts)}</{tag}>"


@st.composite
def xml_documents(draw: Any) -> bytes:
    root = draw(st.sampled_from(["rss", "feed", "rdf:RDF"]))
    body = "".join(draw(st.lists(xml_element(), max_size=4)))
    doc = (
        f'<?xml version="1.0" encoding="utf-8"?><{root} version="2.0"{NAMESPACES}>'
        f"<channel><title>t</title>{body}</channel></{root}>"
    )
    if draw(st.booleans()):  # not well-formed: cut anywhere, feedparser's loose parser
        doc = doc[: draw(st.integers(0, len(doc)))]
    return doc.encode("utf-8", "surrogatepass")


@given(xml_documents())
def test_any_rss_or_atom_parses_to_sane_papers_that_store(store: Store, data: bytes) -> None:
    stored(store, parsed(data))


@given(st.binary(max_size=300))
def test_any_bytes_parse_to_sane_papers_or_a_feed_error(data: bytes) -> None:
    parsed(data)
    parsed(b"<" + data)
    parsed(b"[" + data)


# ------------------------------------------------------------------------ the store


counts = st.none() | st.integers(min_value=-(2**70), max_value=2**70)
any_paper = st.builds(
    Paper,
    id=st.text(min_size=1, max_size=30),
    title=st.text(max_size=30),
    abstract=st.text(max_size=50),
    authors=st.lists(st.text(max_size=10), max_size=3).map(tuple),
    categories=st.lists(st.text(max_size=10), max_size=3).map(tuple),
    sources=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=2).map(tuple),
    upvotes=counts,
    comments=counts,
    github_stars=counts,
    published=st.none() | st.datetimes(timezones=st.just(UTC)),
)


@given(st.lists(any_paper, max_size=5))
def test_the_store_takes_any_paper_value(store: Store, papers: list[Paper]) -> None:
    stored(store, papers)
    for p in store.get_papers([p.id for p in papers]):
        for n in (p.upvotes, p.comments, p.github_stars):
            assert n is None or 0 <= n < 2**63


# ------------------------------------------------------------------------ headers


class RawServer:
    """An HTTP server that answers every request with the status line and header bytes it
    is given, and a small feed: any bytes a server may send, not only what a framework
    lets through. It records the request headers it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/feed"
        self.headers = b""
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        body = json.dumps([{"paper": {"id": "2406.01234", "title": "A paper"}}]).encode()
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.requests.append(data)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + self.headers
                    + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                    + body
                )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def raw_server() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


header_bytes = st.binary(min_size=1, max_size=60).filter(
    lambda b: b"\r" not in b and b"\n" not in b and b.strip() != b""
) | st.text(min_size=1, max_size=30).map(lambda t: t.encode("utf-8", "surrogatepass")).filter(
    lambda b: b"\r" not in b and b"\n" not in b
)


@settings(max_examples=25)
@given(etag=header_bytes, modified=header_bytes)
def test_any_etag_and_last_modified_are_stored_and_the_next_request_works(
    raw_server: RawServer, store: Store, etag: bytes, modified: bytes
) -> None:
    raw_server.headers = b"ETag: " + etag + b"\r\nLast-Modified: " + modified + b"\r\n"
    feed = Feed(name="raw", url=raw_server.url)
    http = Http(connect_timeout=2, read_timeout=2, retries=0)
    with Fetcher(http, "ops@example.org") as fetcher:
        for _ in range(2):  # the second request sends back what the first stored
            try:
                result = fetcher.fetch(feed, store.feed_state("raw"))
            except FeedError:  # a header httpx itself refuses to read: the feed's failure
                store.record_feed("raw", raw_server.url, T0, error="refused")
                continue
            store.record_feed(
                "raw", raw_server.url, T0, etag=result.etag, last_modified=result.last_modified
            )
            state = store.feed_state("raw")
            for value in (state.etag, state.last_modified):
                assert value is None or (value.isascii() and value.isprintable())
                if value is not None:
                    httpx.Request("GET", raw_server.url, headers={"If-None-Match": value})


def test_fuzz_helpers_can_fail() -> None:
    """The invariants are real: a paper out of its limits fails them."""
    with pytest.raises(AssertionError):
        check_paper(Paper(id="x", title="t", upvotes=-1, sources=("s",)))
    with pytest.raises(AssertionError):
        check_paper(Paper(id="x", title="t" * 501, sources=("s",)))
    assert math.isnan(float("nan"))


def test_storage_helper_round_trips(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        stored(s, [Paper(id="1", title="t", sources=("s",), upvotes=10**30)])
        assert s.get_papers(["1"])[0].upvotes is None
    finally:
        s.close()
